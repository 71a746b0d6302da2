"""The command line: a real training run, and one clear error line for each bad input."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from natpg.cli import app

runner = CliRunner()

# (arguments, text that the single error line must contain)
BAD_INPUTS = [
    (["--env", "CartPoel-v1"], "unknown env id 'CartPoel-v1'; did you mean 'CartPole-v1'"),
    (["--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    (["--env", "CartPole-v1", "--algo", "ppo"], "unknown algorithm 'ppo'; allowed: smac, ac-sgd, ac-adam, ac-cg, woodbury"),
    (["--env", "CartPole-v1", "--set", "actor_lr=0"], "actor_lr=0.0 must be a finite number > 0"),
    (["--env", "CartPole-v1", "--set", "actor_lr=-0.1"], "actor_lr=-0.1 must be a finite number > 0"),
    (["--env", "CartPole-v1", "--set", "damping=0"], "damping=0.0 must be a finite number > 0"),
    (["--env", "CartPole-v1", "--n-envs", "3"], "n_steps (T) = 1000 is not divisible by n_envs = 3"),
    (["--env", "CartPole-v1", "--set", "batch_size=7"], "batch_size (B) = 7 must divide n_steps (T) = 1000"),
    (["--env", "natpg-test/MultiDiscrete-v0"], "action space MultiDiscrete([2 3]) is not supported; allowed: Discrete(n) or a 1-D Box"),
    (["--env", "CartPole-v1", "--set", "dampng=1"], "unknown setting 'dampng'; did you mean 'damping'?"),
    (["--env", "CartPole-v1", "--set", "damping"], "--set expects key=value, got 'damping'"),
    (["--env", "CartPole-v1", "--steps", "0"], "total_steps=0 must be an integer >= 1"),
    (["--env", "CartPole-v1", "--preset", "paperr"], "unknown preset 'paperr'; allowed: paper, paper-inferred"),
    (["--env", "CartPole-v1", "--set", "critic_batch_size=7"], "critic_batch_size = 7 must divide n_steps (T) = 1000"),
    (["--env", "CartPole-v1", "--set", "actor_epochs=0"], "actor_epochs=0 must be an integer >= 1"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_clear_error_line_and_builds_nothing(tmp_path, monkeypatch, args, message):
    import natpg.trainer as trainer_mod

    built = []
    monkeypatch.setattr(trainer_mod, "make_vector_env", lambda cfg: built.append(cfg))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", *args, "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("natpg: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not built, "a vector environment was built before the input was validated"
    assert not out.exists()


def test_overwrite_with_bad_input_keeps_the_old_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "episodes.csv").write_text("precious\n")
    result = runner.invoke(app, ["train", "--env", "natpg-test/MultiDiscrete-v0", "--out", str(out), "--overwrite"])
    assert result.exit_code == 2
    assert (out / "episodes.csv").read_text() == "precious\n"


def test_existing_run_folder_is_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "episodes.csv").write_text("precious\n")
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--out", str(out)])
    assert result.exit_code == 2 and "already holds files" in result.stderr
    assert (out / "episodes.csv").read_text() == "precious\n"


def test_train_and_plot_through_the_installed_command(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "natpg.cli", "train", "--env", "CartPole", "--algo", "ac-sgd", "--seed", "1",
         "--steps", "2000", "--out", str(out), "--set", "actor_lr=0.05"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ac-sgd on CartPole-v1 seed 1: 2000 steps" in proc.stdout and "final return" in proc.stdout
    with open(out / "iterations.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 2
    result = runner.invoke(app, ["plot", str(out)])
    assert result.exit_code == 0 and (out / "learning_curve.png").stat().st_size > 1000


def test_plot_of_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2 and "is not a natpg run folder" in result.stderr


def test_help_lists_every_train_option():
    result = runner.invoke(app, ["train", "--help"])
    for opt in ("--env", "--algo", "--seed", "--steps", "--set", "--out", "--n-envs"):
        assert opt in result.output


@pytest.mark.parametrize("preset,reading", [("paper", "critic_epochs=1, critic_batch_size=none"),
                                            ("paper-inferred", "critic_epochs=10, critic_batch_size=100")])
def test_presets_lists_every_hyper_parameter_and_the_episode_cap(preset, reading):
    from natpg.config import TrainConfig
    from natpg.presets import RUN_OPTIONS

    result = runner.invoke(app, ["presets", "--preset", preset])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith(f"preset set {preset!r}: every episode capped at 1,000 steps (max_episode_steps=1000; "
                           "overrides each env's registered limit)")
    flat = " ".join(text.split())  # long lines wrap
    assert "gae_lambda=0.9" in flat and "n_steps=1000" in flat and reading in flat
    assert "ac-cg: cg_damping=0.1, cg_iters=10" in flat and "woodbury: rank=8" in flat
    for algo in ("smac", "ac-sgd", "ac-adam", "ac-cg", "woodbury"):  # every setting of every algorithm is named
        per_env = flat.split("per env (")[1].split(")")[0]  # the table's title names the settings it holds
        for name in TrainConfig.from_dict({"algo": algo}).to_dict():
            assert name in RUN_OPTIONS or f"{name}=" in flat or name in per_env, (algo, name)
    cartpole = next(line for line in text.splitlines() if "CartPole-v1" in line)
    for value in ("500,000", "0.001", "0.005", "0.1", "0.007", "7e-05", "0.08"):  # budget, α, η and λ of Table 2
        assert value in cartpole, value


def test_train_records_the_preset_set_in_the_run_config(tmp_path):
    import json

    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--quiet", "--preset", "paper",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["preset"] == "paper"


def test_the_plot_of_a_run_names_its_episode_cap(tmp_path, monkeypatch):
    import matplotlib.figure

    titles = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: titles.append(fig.axes[0].get_title()))
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--quiet", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert titles == ["smac on CartPole-v1 (seed 0)\nepisodes capped at 1,000 steps"]


def test_help_shows_no_value_for_flags():
    for command in ("train", "bench", "ablation", "eval", "report", "plot", "presets"):
        result = runner.invoke(app, [command, "--help"])
        flags = [line for line in result.output.splitlines() if "<bool>" in line and "--help" not in line]
        assert result.exit_code == 0 and not flags, (command, flags)


def test_a_budget_that_is_not_whole_iterations_is_announced_once(tmp_path):
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1500", "--quiet", "--out",
                                 str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("natpg: note:")]
    assert notes == ["natpg: note: total_steps=1,500 is not a multiple of n_steps (T) = 1,000; training runs whole "
                     "iterations, so 2,000 steps"]
    import json

    assert json.loads((tmp_path / "run" / "summary.json").read_text())["global_step"] == 2000


def test_the_command_line_starts_without_importing_torch():
    """`natpg --help` must not pay torch's import (benchmarks/startup.py measures the time)."""
    code = "import sys, natpg.cli; print('torch' in sys.modules, 'gymnasium' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
    code = "import natpg; print(natpg.make_config('CartPole-v1', 'smac').actor_lr, callable(natpg.train))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() \
        == ["0.005", "True"]


@pytest.mark.parametrize("algo", ["smac", "ac-adam", "ac-sgd", "ac-cg"])
def test_a_batch_smaller_than_the_default_rank_is_fine_for_rules_that_do_not_read_rank(tmp_path, algo):
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--algo", algo, "--steps", "8", "--set", "n_steps=4",
                                 "--quiet", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("algo,own", [("smac", {"damping": 0.3}), ("woodbury", {"damping": 0.3, "rank": 8}),
                                      ("ac-sgd", {})])
def test_config_json_holds_only_the_algorithms_own_settings(tmp_path, algo, own):
    import json

    extra = ["--set", "damping=0.3"] if own else []
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--algo", algo, "--steps", "1000", "--quiet",
                                 *extra, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    section = {k: saved[k] for k in ("damping", "rank", "cg_damping", "cg_iters") if k in saved}
    assert section == own


def test_a_grid_budget_that_is_not_whole_iterations_is_announced_once(tmp_path):
    result = runner.invoke(app, ["bench", "--envs", "CartPole-v1", "--algos", "smac", "--seeds", "0,1", "--steps", "150",
                                 "--set", "n_steps=100", "--workers", "1", "--quiet", "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("natpg: note:")]
    assert notes == ["natpg: note: total_steps=150 is not a multiple of n_steps (T) = 100; training runs whole "
                     "iterations, so 200 steps"]


def test_a_resumed_budget_that_is_not_whole_iterations_is_announced(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--quiet", "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", str(out), "--steps", "1500", "--quiet"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("natpg: note:")]
    assert notes == ["natpg: note: total_steps=1,500 is not a multiple of n_steps (T) = 1,000; training runs whole "
                     "iterations, so 2,000 steps"]
