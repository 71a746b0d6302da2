"""Evaluation (API, `natpg eval`, video), observation normalisation, and the help text of every command."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from typer.testing import CliRunner

from natpg import make_config
from natpg.cli import app
from natpg.config import ConfigError
from natpg.evaluation import EVAL_SEED_OFFSET, evaluate, evaluate_run, load_policy
from natpg.normalization import ObsNormalizeWrapper
from natpg.trainer import Trainer, train

runner = CliRunner()


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    train(make_config("CartPole-v1", "smac", 0, {"total_steps": 2000, "normalize_obs": True}), run)
    return run


def test_evaluate_run_is_reproducible_and_separately_seeded(cartpole_run):
    a = evaluate_run(cartpole_run, n_episodes=3)
    b = evaluate_run(cartpole_run, n_episodes=3)
    assert a == b and len(a.returns) == 3 and all(r > 0 for r in a.returns)
    assert a.lengths == tuple(int(r) for r in a.returns)  # CartPole pays 1 per step
    other = evaluate_run(cartpole_run, n_episodes=3, seed=123)
    assert other != a
    assert evaluate_run(cartpole_run, n_episodes=3, seed=EVAL_SEED_OFFSET) == a  # default seed = run seed + offset


def test_loaded_policy_carries_the_normaliser_statistics(cartpole_run):
    loaded = load_policy(cartpole_run)
    assert loaded.normalizer is not None and loaded.global_step == 2000
    assert loaded.normalizer.rms.count > 2000  # every observation seen in training (plus resets)
    assert not np.allclose(loaded.normalizer.rms.mean, 0.0)


def test_eval_cli_prints_mean_and_std(cartpole_run):
    result = runner.invoke(app, ["eval", str(cartpole_run), "--episodes", "4", "--deterministic"])
    assert result.exit_code == 0, result.output
    m = re.search(r"return (\S+) ± (\S+) over 4 episodes", result.stdout)
    expected = evaluate_run(cartpole_run, 4, deterministic=True)
    assert m and float(m.group(1)) == pytest.approx(expected.mean_return, abs=0.01)
    assert float(m.group(2)) == pytest.approx(expected.std_return, abs=0.01)


def test_video_of_the_first_episode(cartpole_run, tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    path = tmp_path / "cartpole.gif"
    result = evaluate_run(cartpole_run, n_episodes=1, deterministic=True, video=path)
    frames = imageio.mimread(path)
    # one frame per step plus the last; the GIF encoder may merge identical consecutive frames
    assert 1 < len(frames) <= result.lengths[0] + 1 and frames[0].shape[2] == 3
    assert not np.array_equal(frames[0], frames[-1])


@pytest.mark.parametrize("args,message", [
    (["--video", "x.avi"], "must end in .gif or .mp4"),
    (["--episodes", "0"], "episodes=0 must be an integer >= 1"),
])
def test_eval_cli_bad_input_is_one_line(cartpole_run, tmp_path, args, message):
    result = runner.invoke(app, ["eval", str(cartpole_run), *args])
    assert result.exit_code == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_env_that_cannot_render_gets_a_clear_message(tmp_path):
    trainer = Trainer(make_config("natpg-test/Count-v0", "smac", 0, {"total_steps": 1000, "n_steps": 10}))
    try:
        path = tmp_path / "count.gif"
        with pytest.raises(ConfigError, match="cannot render offscreen"):
            evaluate(trainer.actor, "natpg-test/Count-v0", 1, seed=0, video=path)
        assert not path.exists()
    finally:
        trainer.close()


def test_periodic_evaluation_logs_its_own_csv_and_leaves_training_unchanged(tmp_path):
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 3000})
    plain = train(cfg, tmp_path / "plain")
    with_eval = train(cfg.override(eval_every=1, eval_episodes=2), tmp_path / "eval")
    assert plain.returns == with_eval.returns  # evaluation does not touch the training RNG or envs
    with open(tmp_path / "eval" / "eval.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["global_step"]) for r in rows] == [1000, 2000, 3000]
    assert all(int(r["eval/episodes"]) == 2 and float(r["eval/mean_return"]) > 0 for r in rows)
    assert not (tmp_path / "plain" / "eval.csv").exists()


def test_normaliser_scales_the_final_observation_too():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("natpg-test/Count-v0")], autoreset_mode=AutoresetMode.SAME_STEP)
    wrapped = ObsNormalizeWrapper(envs)
    wrapped.reset(seed=0)
    for _ in range(6):
        wrapped.step(np.array([0]))
    wrapped.normalizer.frozen = True  # from here on, obs = (raw − μ) / √(σ² + ε) with fixed μ, σ
    mean, var = wrapped.normalizer.rms.mean.copy(), wrapped.normalizer.rms.var.copy()
    obs, _, _, trunc, info = wrapped.step(np.array([0]))  # step 7: the TimeLimit cuts the episode
    assert trunc[0]
    np.testing.assert_allclose(info["final_obs"][0], (7.0 - mean) / np.sqrt(var + 1e-8), rtol=1e-6)
    np.testing.assert_allclose(obs[0], (0.0 - mean) / np.sqrt(var + 1e-8), rtol=1e-6)  # the next episode's first
    wrapped.close()


@pytest.mark.parametrize("command", ["train", "eval", "plot", "presets"])
def test_every_option_of_every_command_shows_its_default(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    options = [ln for ln in result.stdout.splitlines() if re.match(r"^│\s+(\*\s+)?--", ln)]
    for line in options:
        if "--help" in line:
            continue
        assert "[default:" in line or "[required]" in line, line


def test_tensorboard_without_the_package_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--tensorboard", "--quiet",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "pip install 'natpg[tensorboard]'" in result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_video_prints_nothing_about_a_missing_display(cartpole_run, tmp_path):
    """SDL's complaint about XDG_RUNTIME_DIR came on every video; offscreen frames need no display."""
    pytest.importorskip("imageio.v2")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "SDL_VIDEODRIVER", "DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "natpg.cli", "eval", str(cartpole_run), "--episodes", "1",
                           "--video", str(tmp_path / "v.gif")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "" and (tmp_path / "v.gif").is_file()
