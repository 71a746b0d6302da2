"""Short real training runs: learning beats random, determinism, continuous control, logs."""

from __future__ import annotations

import csv
import json
import math

import gymnasium as gym
import numpy as np
import pytest

from natpg import make_config, train
from natpg.runlog import EPISODE_COLUMNS, ITERATION_COLUMNS

pytestmark = pytest.mark.slow


def random_policy_mean_return(env_id: str, episodes: int = 200, seed: int = 0) -> float:
    env = gym.make(env_id, max_episode_steps=1000)
    env.action_space.seed(seed)
    rets = []
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            total += r
            done = term or trunc
        rets.append(total)
    env.close()
    return float(np.mean(rets))


@pytest.fixture(scope="module")
def cartpole_random() -> float:
    return random_policy_mean_return("CartPole-v1")


# 40k steps (40 iterations of T = 1000). The paper's step sizes are tuned for 500k steps; for this short budget
# each rule gets a larger η (stated here). Margin: the mean return of the last 50 training episodes must reach
# 2 × a uniformly random policy's mean return (22.7, so 45.4). A learning curve is not a fixed number across CPUs
# (floating-point results differ), so the margin is set from ten seeds: every one must clear it widely.
# Seeds 0–9, measured on an AMD EPYC (2 cores, OMP_NUM_THREADS=1, torch 2.13.0):
#   smac      115.8 118.1 141.4 101.9 150.5 130.6 162.8 138.8 128.4 162.4   (min 101.9 = 2.2 × the margin)
#   woodbury  150.1 115.2 129.5 133.1 114.9 144.5 165.5 127.9 161.9 155.3   (min 114.9)
#   ac-cg     240.7 198.9 213.5 213.6 219.2 144.8 245.3 137.5 205.0 185.2   (min 137.5)
#   ac-sgd    101.9 124.2 127.2 133.6 150.1 121.3 169.5 127.0 180.5  98.1   (min  98.1 = 2.2 × the margin)
#   ac-adam   264.0 197.2 233.5 126.8 179.0 214.1 239.6 145.0 186.4 238.0   (min 126.8)
# The test runs seed 0 of each rule.
MARGIN = 2.0
LEARNING_CASES = {
    "smac": {"actor_lr": 2e-2},
    "woodbury": {"actor_lr": 2e-2},
    "ac-cg": {},                      # the paper's η = 8e-2
    "ac-sgd": {"actor_lr": 0.2},
    "ac-adam": {"actor_lr": 3e-3},
}


@pytest.mark.parametrize("algo", sorted(LEARNING_CASES))
def test_short_cartpole_run_beats_random_policy(algo, cartpole_random):
    result = train(make_config("CartPole-v1", algo, 0, {"total_steps": 40_000, **LEARNING_CASES[algo]}))
    learned = float(np.mean(result.returns[-50:]))
    assert 15 < cartpole_random < 30  # sanity of the baseline itself
    assert learned >= MARGIN * cartpole_random, f"{algo}: {learned:.1f} vs random {cartpole_random:.1f}"


def test_same_seed_same_episode_returns_bit_for_bit():
    cfg = make_config("CartPole-v1", "smac", 7, {"total_steps": 5000, "n_envs": 2})
    a, b = train(cfg), train(cfg)
    assert a.returns == b.returns and len(a.returns) > 50
    assert [e.global_step for e in a.episodes] == [e.global_step for e in b.episodes]
    c = train(cfg.override(seed=8))
    assert c.returns != a.returns


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_run_folder(run_dir, cfg, n_iterations):
    assert json.loads((run_dir / "config.json").read_text()) == cfg.to_dict()
    system = json.loads((run_dir / "system.json").read_text())
    assert {"torch", "gymnasium", "python", "platform"} <= set(system)
    iters = read_csv(run_dir / "iterations.csv")
    header = list(iters[0])
    assert header[:len(ITERATION_COLUMNS)] == list(ITERATION_COLUMNS)  # the known columns first,
    assert all(k.startswith("train/") for k in header[len(ITERATION_COLUMNS):])  # then the rule's extras
    assert [int(r["iteration"]) for r in iters] == list(range(1, n_iterations + 1))
    assert [int(r["global_step"]) for r in iters] == [cfg.n_steps * (i + 1) for i in range(n_iterations)]
    for r in iters:
        for key in ("rollout/mean_logprob", "train/actor_loss", "train/critic_loss", "train/update_norm", "train/kl",
                    "time/rollout_s", "time/update_s"):
            assert math.isfinite(float(r[key])), key
        assert float(r["train/kl"]) >= 0 and float(r["train/update_norm"]) > 0
    eps = read_csv(run_dir / "episodes.csv")
    assert eps and list(eps[0]) == list(EPISODE_COLUMNS)
    steps = [int(e["global_step"]) for e in eps]
    assert steps == sorted(steps) and steps[-1] <= cfg.n_steps * n_iterations
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == cfg.n_steps * n_iterations and summary["episodes"] == len(eps)
    return iters, eps


def test_ac_cg_extras_reach_iterations_csv_and_tensorboard(tmp_path):
    """CG's residual and iterations and the line search's outcome are logged as ``train/…`` every iteration."""
    cfg = make_config("CartPole-v1", "ac-cg", 0, {"total_steps": 3000, "backtrack_iters": 10, "step_rule": "kl",
                                                  "tensorboard": True})
    train(cfg, tmp_path / "run")
    iters, _ = check_run_folder(tmp_path / "run", cfg, 3)
    extras = ("train/cg_residual", "train/cg_iterations", "train/cg_nonpositive_curvature",
              "train/line_search_steps", "train/line_search_failed")
    for r in iters:
        assert all(math.isfinite(float(r[k])) for k in extras), r
        assert 1 <= float(r["train/cg_iterations"]) <= cfg.algo_settings.cg_iters
        assert float(r["train/line_search_failed"]) in (0.0, 1.0)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    acc.Reload()
    for key in extras:
        assert [e.step for e in acc.Scalars(key)] == [1000, 2000, 3000], key
    assert [e.value for e in acc.Scalars("train/cg_residual")] == pytest.approx(
        [float(r["train/cg_residual"]) for r in iters], rel=1e-6)  # TensorBoard stores float32


@pytest.mark.parametrize("algo", ["smac", "ac-cg"])
def test_pendulum_continuous_run_completes_and_logs(tmp_path, algo):
    cfg = make_config("Pendulum-v1", algo, 0, {"total_steps": 3000})
    result = train(cfg, tmp_path / "run")
    _, eps = check_run_folder(tmp_path / "run", cfg, 3)
    # The 1000-step cap overrides Pendulum's registered 200: three full episodes, all truncations.
    assert [int(e["length"]) for e in eps] == [1000, 1000, 1000]
    assert [e["terminated"] for e in eps] == ["0", "0", "0"]
    assert result.global_step == 3000


def test_mujoco_run_completes_and_logs(tmp_path):
    cfg = make_config("HalfCheetah-v5", "smac", 0, {"total_steps": 2000, "n_envs": 2})
    result = train(cfg, tmp_path / "run")
    iters, eps = check_run_folder(tmp_path / "run", cfg, 2)
    # two copies × 1000 steps: each copy finishes one capped episode in the 2nd iteration
    assert len(eps) == 2 and all(int(e["length"]) == 1000 for e in eps)
    assert [int(e["global_step"]) for e in eps] == [1999, 2000]
    assert all(math.isfinite(r) for r in result.returns)


def test_smac_single_sample_form_trains(tmp_path):
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 2000, "batch_size": 1})
    train(cfg, tmp_path / "run")
    check_run_folder(tmp_path / "run", cfg, 2)


def test_run_folder_is_not_overwritten_without_permission(tmp_path):
    from natpg.config import ConfigError

    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="already holds files"):
        train(make_config("CartPole-v1", "smac", 0, {"total_steps": 1000}), run)
    assert (run / "keep.txt").read_text() == "precious"
