"""natpg's sync vector env, side by side with ``gymnasium.vector.SyncVectorEnv`` in SAME_STEP mode.

Both step the same ``gym.make`` copies with the same seeds and the same pre-drawn
actions; every observation, reward, flag and final observation must be exactly
equal at every step. Only the per-copy info dicts differ: natpg's env drops them.
"""

from __future__ import annotations

import pickle
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from natpg.config import TrainConfig
from natpg.envs import SameStepSyncVectorEnv, make_env, make_vector_env

#: short episode caps, so that both truncations and (with random actions) terminations happen
CAPS = {"CartPole-v1": 20, "Hopper-v5": 20}


def pair(env_id: str, n_envs: int) -> tuple[SameStepSyncVectorEnv, gym.vector.SyncVectorEnv]:
    fns = [partial(make_env, env_id, CAPS[env_id]) for _ in range(n_envs)]
    return SameStepSyncVectorEnv(fns), gym.vector.SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


def draw_actions(space: gym.Space, n: int, seed: int) -> list:
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def assert_same_arrays(ours, ref) -> None:
    assert type(ours) is np.ndarray and ours.dtype == ref.dtype
    np.testing.assert_array_equal(ours, ref)


def assert_same_reset_info(info: dict, ref_info: dict) -> None:
    """Reset infos are merged as Gymnasium merges them (Hopper's hold arrays, CartPole's are empty)."""
    assert info.keys() == ref_info.keys()
    for key, value in ref_info.items():
        assert_same_arrays(info[key], value)


def assert_same_step(ours: tuple, ref: tuple) -> None:
    """One ``step`` result of each: equal arrays and dtypes; ``final_obs`` and its mask equal too."""
    for a, b in zip(ours[:4], ref[:4]):
        assert_same_arrays(a, b)
    info, ref_info = ours[4], ref[4]
    if "final_obs" not in ref_info:
        assert info == {}
        return
    assert set(info) == {"final_obs", "_final_obs"}
    assert_same_arrays(info["_final_obs"], ref_info["_final_obs"])
    np.testing.assert_array_equal(info["_final_obs"], ours[2] | ours[3])
    assert info["final_obs"].dtype == object and info["final_obs"].shape == ref_info["final_obs"].shape
    for got, want in zip(info["final_obs"], ref_info["final_obs"]):
        if want is None:
            assert got is None
        else:
            assert_same_arrays(got, want)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5"])
@pytest.mark.parametrize("n_envs", [1, 3])
def test_steps_equal_gymnasiums_sync_vector_env(env_id, n_envs):
    ours, ref = pair(env_id, n_envs)
    try:
        obs, info = ours.reset(seed=7)
        ref_obs, ref_info = ref.reset(seed=7)
        assert_same_arrays(obs, ref_obs)
        assert_same_reset_info(info, ref_info)
        terminations = truncations = 0
        for t, action in enumerate(draw_actions(ref.action_space, 300, seed=n_envs)):
            if t == 200:  # a reset with a new seed in the middle of episodes
                obs, _ = ours.reset(seed=11)
                assert_same_arrays(obs, ref.reset(seed=11)[0])
            step = ours.step(action)
            assert_same_step(step, ref.step(action))
            terminations += int(step[2].sum())
            truncations += int(step[3].sum())
        assert terminations > 0 and truncations > 0  # both ways an episode ends were exercised
    finally:
        ours.close()
        ref.close()


def test_reset_seed_lists_options_and_masks_as_gymnasium():
    ours, ref = pair("CartPole-v1", 3)
    try:
        assert_same_arrays(ours.reset(seed=[4, 9, 2])[0], ref.reset(seed=[4, 9, 2])[0])
        opts = {"low": -0.2, "high": 0.2}  # CartPole's reset options: the range of the initial state
        assert_same_arrays(ours.reset(seed=5, options=opts)[0], ref.reset(seed=5, options=opts)[0])
        for action in draw_actions(ref.action_space, 30, seed=0):
            assert_same_step(ours.step(action), ref.step(action))
        mask = np.array([True, False, True])
        # only copies 0 and 2 are reset; copy 1 keeps its observation (Gymnasium pops the mask from options)
        obs, _ = ours.reset(seed=[1, 2, 3], options={"reset_mask": mask.copy()})
        assert_same_arrays(obs, ref.reset(seed=[1, 2, 3], options={"reset_mask": mask.copy()})[0])
        for action in draw_actions(ref.action_space, 30, seed=1):
            assert_same_step(ours.step(action), ref.step(action))
        with pytest.raises(ValueError, match="seeds for 3 copies"):
            ours.reset(seed=[1, 2])
        with pytest.raises(TypeError, match="reset_mask"):
            ours.reset(options={"reset_mask": [True, False, True]})
        with pytest.raises(ValueError, match="reset_mask"):
            ours.reset(options={"reset_mask": np.zeros(3, dtype=bool)})
        with pytest.raises(ValueError, match="2 actions for 3 copies"):
            ours.step(np.zeros(2, dtype=np.int64))
    finally:
        ours.close()
        ref.close()


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5"])
def test_spaces_and_metadata_equal_gymnasiums(env_id):
    ours, ref = pair(env_id, 3)
    try:
        assert ours.num_envs == ref.num_envs == 3
        assert ours.single_observation_space == ref.single_observation_space
        assert ours.single_action_space == ref.single_action_space
        assert ours.observation_space == ref.observation_space
        assert ours.action_space == ref.action_space
        assert ours.metadata == ref.metadata
        assert ours.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
        assert ours.render_mode == ref.render_mode
        assert len(ours.envs) == 3 and all(isinstance(e, gym.Env) for e in ours.envs)
    finally:
        ours.close()
        ref.close()
    assert ours.closed


def test_each_step_returns_a_fresh_observation_array():
    ours, _ = pair("CartPole-v1", 1)
    first, _ = ours.reset(seed=0)
    second = ours.step(np.array([0]))[0]
    kept = second.copy()
    first[...] = np.nan  # a caller may keep or overwrite what it got
    third = ours.step(np.array([1]))[0]
    assert not np.shares_memory(second, third)
    np.testing.assert_array_equal(second, kept)
    assert np.isfinite(third).all()
    ours.close()


def test_a_pickle_round_trip_continues_identically():
    """Classic-control copies pickle with their state: the trainer's checkpoints restore them this way."""
    ours, ref = pair("CartPole-v1", 3)
    ours.reset(seed=3)
    ref.reset(seed=3)
    actions = draw_actions(ref.action_space, 200, seed=5)
    for action in actions[:37]:
        ours.step(action)
        ref.step(action)
    restored = pickle.loads(pickle.dumps(ours))
    ref_restored = pickle.loads(pickle.dumps(ref))
    for action in actions[37:]:
        step = restored.step(action)
        assert_same_step(step, ours.step(action))
        assert_same_step(step, ref_restored.step(action))
    for envs in (ours, ref, restored, ref_restored):
        envs.close()


def test_make_vector_env_picks_it_for_sync_and_gymnasiums_async_otherwise():
    envs = make_vector_env(TrainConfig(env_id="CartPole-v1", n_envs=2, n_steps=10))
    assert type(envs) is SameStepSyncVectorEnv
    envs.close()
    envs = make_vector_env(TrainConfig(env_id="CartPole-v1", n_envs=2, n_steps=10, vectorization="async"))
    try:
        assert isinstance(envs, gym.vector.AsyncVectorEnv)
        assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    finally:
        envs.close()
