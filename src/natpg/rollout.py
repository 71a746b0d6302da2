"""Collect T transitions from a vector environment into a batch.

The collector keeps the state that lives across iterations (the current
observation and each copy's running episode return and length), so an episode
that spans two rollouts is counted once, with its full return, when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from natpg.policies import Actor


@dataclass(frozen=True)
class Episode:
    """One finished episode: its return, its length, and the global step at which it ended."""

    global_step: int
    ret: float
    length: int
    terminated: bool


@dataclass
class Rollout:
    """``n_steps_per_env × n_envs`` transitions, time-major.

    ``next_obs[t]`` is the real next observation of step ``t``: the final
    observation when that step ended an episode, never the next episode's first.
    ``actions`` are as sampled (unclipped); the env received them clipped to its bounds.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    next_obs: np.ndarray
    episodes: list[Episode] = field(default_factory=list)

    @property
    def n_transitions(self) -> int:
        """Number of transitions (``n_steps_per_env × n_envs``)."""
        return int(self.rewards.size)


class RolloutCollector:
    """Steps a SAME_STEP-autoreset vector env with an actor.

    Args:
        envs: vector env created with ``AutoresetMode.SAME_STEP``.
        seed: passed to the first ``reset`` (copy ``i`` gets ``seed + i``).
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int) -> None:
        mode = envs.metadata.get("autoreset_mode")
        if mode is not None and mode != gym.vector.AutoresetMode.SAME_STEP:
            raise ValueError(f"RolloutCollector needs AutoresetMode.SAME_STEP, got {mode}")
        self.envs = envs
        self.n_envs = envs.num_envs
        obs, _ = envs.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32).reshape(self.n_envs, -1)
        self.ep_return = np.zeros(self.n_envs, dtype=np.float64)
        self.ep_length = np.zeros(self.n_envs, dtype=np.int64)
        self.global_step = 0
        space = envs.single_action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete:
            assert isinstance(space, gym.spaces.Box)  # the trainer accepts Discrete and Box actions only
            self.low = np.asarray(space.low, dtype=np.float32)
            self.high = np.asarray(space.high, dtype=np.float32)
        self.action_shape = () if self.discrete else tuple(space.shape or ())

    def collect(self, actor: Actor, n_steps_per_env: int) -> Rollout:
        """Take ``n_steps_per_env`` steps in every copy with actions sampled from ``actor``."""
        n, e = n_steps_per_env, self.n_envs
        obs_dim = self.obs.shape[1]
        obs_buf = np.empty((n, e, obs_dim), dtype=np.float32)
        next_buf = np.empty((n, e, obs_dim), dtype=np.float32)
        act_buf = np.empty((n, e) + self.action_shape, dtype=np.int64 if self.discrete else np.float32)
        rew_buf = np.empty((n, e), dtype=np.float64)
        term_buf = np.empty((n, e), dtype=bool)
        trunc_buf = np.empty((n, e), dtype=bool)
        episodes: list[Episode] = []

        fast = actor.numpy_policy(np.float32)  # one tiny forward pass per step: NumPy, no Distribution objects
        act = fast.sampler(n, e) if fast is not None else actor.act_numpy
        step = self.envs.step
        discrete, low, high = self.discrete, getattr(self, "low", np.float32(0)), getattr(self, "high", np.float32(0))
        ep_return, ep_length = self.ep_return, self.ep_length
        obs_buf[0] = self.obs
        for t in range(n):
            o = obs_buf[t]
            total = float(o.sum())  # NaN or ±inf (or a float32 overflow) iff total - total is not 0
            if total - total != 0.0 and not np.isfinite(o).all():
                # A non-finite observation must not crash the rollout: act on zeros in its place
                # (the trainer then skips this iteration's update, see natpg.guards).
                o = np.nan_to_num(o, nan=0.0, posinf=0.0, neginf=0.0)
            action = act(o)
            act_buf[t] = action
            next_obs, reward, term, trunc, info = step(action if discrete else np.minimum(np.maximum(action, low), high))
            nxt = next_buf[t]
            nxt[...] = next_obs.reshape(e, -1)  # cast to float32 in place
            if t + 1 < n:
                obs_buf[t + 1] = nxt  # the next step's observation (a reset one where an episode just ended)
            else:
                self.obs = nxt.copy()
            rew_buf[t] = reward
            term_buf[t] = term
            trunc_buf[t] = trunc
            ep_return += reward
            ep_length += 1
            done = term | trunc
            if done.any():
                final_obs = info["final_obs"]
                for i in np.flatnonzero(done):
                    nxt[i] = np.asarray(final_obs[i], dtype=np.float32).reshape(-1)
                    episodes.append(Episode(self.global_step + t * e + int(i) + 1,
                                            float(ep_return[i]), int(ep_length[i]), bool(term[i])))
                    ep_return[i] = 0.0
                    ep_length[i] = 0
        self.global_step += n * e
        return Rollout(obs_buf, act_buf, rew_buf, term_buf, trunc_buf, next_buf, episodes)
