"""The envpool backend, side by side with Gymnasium: same spaces, same episode cap, same accounting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from natpg.config import ConfigError, EnvBackend, TrainConfig
from natpg.envs import make_vector_env
from natpg.policies import Actor
from natpg.rollout import RolloutCollector

pytest.importorskip("envpool")
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered:UserWarning")


def collector(env_id: str, backend: str, n_envs: int = 1, cap: int | None = 1000, seed: int = 0):
    cfg = TrainConfig(env_id=env_id, n_envs=n_envs, n_steps=10 * n_envs, max_episode_steps=cap,
                      env_backend=backend, seed=seed)
    envs = make_vector_env(cfg)
    torch.manual_seed(seed)
    actor = Actor(envs.single_observation_space.shape[0], envs.single_action_space, (8,))
    return RolloutCollector(envs, seed), actor


@pytest.mark.parametrize("env_id", ["CartPole-v1", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5"])
def test_spaces_are_gymnasiums(env_id):
    gym_envs = make_vector_env(TrainConfig(env_id=env_id))
    pool = make_vector_env(TrainConfig(env_id=env_id, env_backend="envpool"))
    try:
        assert pool.single_observation_space == gym_envs.single_observation_space
        assert pool.single_action_space == gym_envs.single_action_space
        assert pool.metadata["autoreset_mode"] == gym_envs.metadata["autoreset_mode"]
        obs, _ = pool.reset(seed=0)
        assert obs.shape == (1,) + gym_envs.single_observation_space.shape
        assert obs.dtype == gym_envs.single_observation_space.dtype
    finally:
        gym_envs.close()
        pool.close()


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_the_episode_cap_is_a_truncation_at_exactly_the_cap(backend):
    # HalfCheetah never terminates: every episode is cut at the cap, here 50 steps.
    col, actor = collector("HalfCheetah-v5", backend, cap=50)
    ro = col.collect(actor, 120)
    assert [e.length for e in ro.episodes] == [50, 50]
    assert not any(e.terminated for e in ro.episodes)
    assert np.flatnonzero(ro.truncated[:, 0]).tolist() == [49, 99]
    assert not ro.terminated.any()
    assert [e.global_step for e in ro.episodes] == [50, 100]
    col.envs.close()


def test_default_cap_is_1000_steps_like_gymnasium():
    col, actor = collector("HalfCheetah-v5", "envpool", cap=1000)
    ro = col.collect(actor, 1001)
    assert [(e.length, e.terminated) for e in ro.episodes] == [(1000, False)]
    assert ro.truncated[999, 0] and not ro.truncated[1000, 0]
    col.envs.close()


@pytest.mark.parametrize("n_envs", [1, 3])
def test_terminations_final_observations_and_resets_match_gymnasium_semantics(n_envs):
    """CartPole ends by termination; the final observation is the failed state, the next obs a fresh reset."""
    results = {}
    for backend in ("gymnasium", "envpool"):
        col, actor = collector("CartPole-v1", backend, n_envs=n_envs)
        episodes, steps = [], 0
        for _ in range(3):
            ro = col.collect(actor, 200)
            steps += ro.n_transitions
            episodes += ro.episodes
            done = ro.terminated | ro.truncated
            t, e = np.nonzero(done)
            # the stored next observation of a terminating step is the failed state (pole or cart out of bounds)
            final = ro.next_obs[t, e]
            assert np.all((np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 0.2094))  # |x| > 2.4 or |angle| > 12°
            # the observation after it is a fresh reset: every entry in [-0.05, 0.05]
            keep = t < len(ro.obs) - 1
            assert np.all(np.abs(ro.obs[t[keep] + 1, e[keep]]) <= 0.05)
            # every transition that did not end an episode continues it (the next obs is the next step's obs)
            tt, ee = np.nonzero(~done[:-1])
            np.testing.assert_array_equal(ro.next_obs[tt, ee], ro.obs[tt + 1, ee])
        # episode accounting: finished lengths plus the ones still running add up to the steps taken
        assert sum(ep.length for ep in episodes) + int(col.ep_length.sum()) == steps
        assert all(ep.terminated for ep in episodes)
        assert [ep.ret for ep in episodes] == [float(ep.length) for ep in episodes]  # reward 1 per step
        results[backend] = np.mean([ep.length for ep in episodes])
        col.envs.close()
    # same task, same random policy: mean episode lengths agree within the spread of a short run
    assert results["envpool"] == pytest.approx(results["gymnasium"], rel=0.5)


def test_same_seed_same_rollout_and_reset_seed_rebuilds_the_pool():
    a, actor_a = collector("HalfCheetah-v5", "envpool", seed=3)
    b, actor_b = collector("HalfCheetah-v5", "envpool", seed=3)
    c, actor_c = collector("HalfCheetah-v5", "envpool", seed=4)
    torch.manual_seed(1)
    ra = a.collect(actor_a, 30)
    torch.manual_seed(1)
    rb = b.collect(actor_b, 30)
    np.testing.assert_array_equal(ra.obs, rb.obs)
    assert not np.array_equal(ra.obs[0], c.obs)  # seed 4 starts elsewhere
    for col in (a, b, c):
        col.envs.close()


def test_a_task_envpool_lacks_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"does not provide 'natpg-test/Count-v0'.*env_backend=gymnasium"):
        make_vector_env(TrainConfig(env_id="natpg-test/Count-v0", env_backend=EnvBackend.ENVPOOL))


def test_async_vectorization_is_rejected_with_envpool():
    with pytest.raises(ConfigError, match="vectorization='async'"):
        TrainConfig(env_backend="envpool", vectorization="async")


def test_cli_trains_on_envpool_and_rejects_a_bad_backend(tmp_path):
    from typer.testing import CliRunner

    from natpg.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "2000", "--env-backend", "envpool",
                              "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert '"env_backend": "envpool"' in (tmp_path / "run" / "config.json").read_text()
    res = runner.invoke(app, ["train", "--env", "CartPole-v1", "--env-backend", "envpol",
                              "--out", str(tmp_path / "bad"), "--quiet"])
    assert res.exit_code == 2
    assert "env_backend='envpol' is not allowed; allowed: gymnasium, envpool" in res.output
    assert not (tmp_path / "bad").exists()
