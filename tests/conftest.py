"""Shared fixtures: tiny policies and batches for exact checks."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from natpg.policies import Actor  # noqa: E402
from natpg.updates import ActorBatch  # noqa: E402

torch.set_num_threads(1)


def tiny_actor(discrete: bool, seed: int = 0, obs_dim: int = 3, hidden=(5,), dtype=torch.float64) -> Actor:
    """A small actor (d ≈ 40) in float64, so exact references are cheap and tight."""
    torch.manual_seed(seed)
    space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    actor = Actor(obs_dim, space, hidden)
    # Break the near-zero output init so per-sample scores differ noticeably.
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return actor.to(dtype)


def tiny_batch(actor: Actor, n: int, seed: int = 1, obs_dim: int = 3, dtype=torch.float64) -> ActorBatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, obs_dim, generator=g, dtype=dtype)
    with torch.no_grad():
        torch.manual_seed(seed)
        actions = actor.distribution(obs).sample()
    adv = torch.randn(n, generator=g, dtype=dtype)
    return ActorBatch(obs, actions, adv)


@pytest.fixture(params=[True, False], ids=["categorical", "gaussian"])
def discrete(request) -> bool:
    return request.param


# ----------------------------------------------------------------------------- toy environments

class CountEnv(gym.Env):
    """Deterministic toy task: the observation is the step count within the episode, reward 1 per step.

    It terminates when the count reaches ``terminate_at`` (if given) and is otherwise cut by the
    TimeLimit wrapper, so the *real* next observation of every step is ``obs + 1``: any transition
    that crossed an episode boundary would break that. ``last_action`` records what the env got.
    """

    def __init__(self, terminate_at: int | None = None, continuous: bool = False):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
        self.action_space = (gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32) if continuous
                             else gym.spaces.Discrete(2))
        self.terminate_at = terminate_at
        self.count = 0
        self.last_action = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.last_action = np.array(action, copy=True)
        self.count += 1
        terminated = self.terminate_at is not None and self.count >= self.terminate_at
        return np.array([float(self.count)], dtype=np.float32), 1.0, terminated, False, {}


class MultiDiscreteEnv(CountEnv):
    """Same task with an action space natpg does not support."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.MultiDiscrete([2, 3])


for _id, _kwargs in [("natpg-test/Count-v0", {}), ("natpg-test/CountTerm-v0", {"terminate_at": 3}),
                     ("natpg-test/CountBox-v0", {"continuous": True})]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=CountEnv, kwargs=_kwargs, max_episode_steps=7)
if "natpg-test/MultiDiscrete-v0" not in gym.registry:
    gym.register("natpg-test/MultiDiscrete-v0", entry_point=MultiDiscreteEnv, max_episode_steps=7)


class FaultyCartPole(gym.Wrapper):
    """CartPole that injects a bad value at given step counts of its lifetime (counted over episodes)."""

    def __init__(self, reward_at=(), obs_at=(), reward_value=float("nan"), obs_value=float("inf")):
        super().__init__(gym.make("CartPole-v1", max_episode_steps=1000))
        self.reward_at, self.obs_at = set(reward_at), set(obs_at)
        self.reward_value, self.obs_value = reward_value, obs_value
        self.t = 0

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.t += 1
        if self.t in self.reward_at:
            r = self.reward_value
        if self.t in self.obs_at:
            obs = np.full_like(obs, self.obs_value)
        return obs, r, term, trunc, info


_FAULTY = {
    "natpg-test/NaNReward-v0": {"reward_at": (1500,)},
    "natpg-test/InfReward-v0": {"reward_at": (1500,), "reward_value": float("inf")},
    "natpg-test/HugeReward-v0": {"reward_at": range(1000, 1100), "reward_value": 1e30},
    "natpg-test/InfObs-v0": {"obs_at": (2500,)},
    "natpg-test/NaNObs-v0": {"obs_at": (2500,), "obs_value": float("nan")},
    "natpg-test/AlwaysNaN-v0": {"reward_at": range(1, 100_000)},
}
for _id, _kwargs in _FAULTY.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=FaultyCartPole, kwargs=_kwargs)
