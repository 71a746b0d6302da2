"""Rollout collection under Gymnasium 1.x SAME_STEP autoreset: boundaries, bootstrapping, episode accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from natpg.config import TrainConfig
from natpg.envs import make_vector_env
from natpg.policies import Actor
from natpg.rollout import RolloutCollector


def collector(env_id: str, n_envs: int, seed: int = 0):
    cfg = TrainConfig(env_id=env_id, n_envs=n_envs, n_steps=10 * n_envs, max_episode_steps=7)
    envs = make_vector_env(cfg)
    torch.manual_seed(seed)
    actor = Actor(envs.single_observation_space.shape[0], envs.single_action_space, (8,))
    return RolloutCollector(envs, seed), actor


@pytest.mark.parametrize("env_id", ["natpg-test/Count-v0", "natpg-test/CountTerm-v0"])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_no_transition_crosses_an_episode_boundary(env_id, n_envs):
    col, actor = collector(env_id, n_envs)
    for _ in range(4):
        ro = col.collect(actor, 10)
        # The real next observation is always the count + 1, also on the last step of an episode.
        np.testing.assert_array_equal(ro.next_obs, ro.obs + 1)
        done = ro.terminated | ro.truncated
        # after a done step the next observation stored in obs is a fresh reset (0)
        t, e = np.nonzero(done[:-1])
        np.testing.assert_array_equal(ro.obs[t + 1, e, 0], 0.0)


def test_time_limit_is_truncation_and_termination_is_termination():
    col, actor = collector("natpg-test/Count-v0", 1)
    ro = col.collect(actor, 14)
    assert ro.truncated[:, 0].tolist() == [False] * 6 + [True] + [False] * 6 + [True]
    assert not ro.terminated.any()
    col, actor = collector("natpg-test/CountTerm-v0", 1)
    ro = col.collect(actor, 6)
    assert ro.terminated[:, 0].tolist() == [False, False, True] * 2
    assert not ro.truncated.any()


def test_every_episode_is_counted_once_with_its_full_return_across_rollouts():
    col, actor = collector("natpg-test/Count-v0", 3)
    episodes = []
    for _ in range(5):  # 10 steps per env per rollout; episodes of 7 span rollout boundaries
        episodes += col.collect(actor, 10).episodes
    assert [e.ret for e in episodes] == [7.0] * len(episodes)
    assert [e.length for e in episodes] == [7] * len(episodes)
    # 50 steps per env → 7 finished episodes per env, 1 step left in progress
    assert len(episodes) == 3 * 7
    assert col.ep_length.tolist() == [1, 1, 1]
    # global steps: copies step in lockstep; copy i's step t is global step 3t + i + 1
    ends = sorted(e.global_step for e in episodes)
    assert ends[:3] == [3 * 6 + 1, 3 * 6 + 2, 3 * 6 + 3]
    assert col.global_step == 150


def test_continuous_actions_are_stored_raw_and_sent_clipped():
    col, actor = collector("natpg-test/CountBox-v0", 1)
    with torch.no_grad():
        actor.log_std.fill_(3.0)  # σ ≈ 20: almost every sample is outside [-1, 1]
    ro = col.collect(actor, 20)
    assert np.abs(ro.actions).max() > 1.0
    env = col.envs.envs[0].unwrapped
    np.testing.assert_array_equal(env.last_action, np.clip(ro.actions[-1, 0], -1.0, 1.0))


def test_same_seed_same_rollout():
    a, actor_a = collector("CartPole-v1", 2, seed=5)
    b, actor_b = collector("CartPole-v1", 2, seed=5)
    torch.manual_seed(1)
    ra = a.collect(actor_a, 50)
    torch.manual_seed(1)
    rb = b.collect(actor_b, 50)
    np.testing.assert_array_equal(ra.obs, rb.obs)
    np.testing.assert_array_equal(ra.actions, rb.actions)
