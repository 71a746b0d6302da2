"""One table of bad inputs, wherever a user types something (issue: reliability).

Each row runs the real command line in-process and asserts: exit code 2, exactly one line on
stderr that starts with ``natpg: error:`` and contains the expected text (the bad value and what
is allowed), no traceback, and no file that existed before changed or removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from natpg.checkpoint import load_checkpoint, save_checkpoint
from natpg.cli import app
from natpg.runfolder import LOCK_FILE

runner = CliRunner()


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder holding one finished run, damaged copies of it, a foreign folder and a file."""
    root = tmp_path_factory.mktemp("bad_inputs")
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--quiet",
                                 "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    run = root / "run"
    damaged = _copy_run(run, root / "damaged")
    ckpt = (run / "checkpoints" / "latest.pt").read_bytes()
    (damaged / "checkpoints" / "latest.pt").write_bytes(ckpt[: len(ckpt) // 3])  # a truncated checkpoint
    (_copy_run(run, root / "bad_config") / "config.json").write_text('{"env_id": "CartPole-v1", "al')
    (_copy_run(run, root / "bad_summary") / "summary.json").write_text("{not json")
    (_copy_run(run, root / "bad_csv") / "episodes.csv").write_bytes(b"\x00\xff\xfe garbage\n\x81\x82,\n")
    (_copy_run(run, root / "bad_header") / "iterations.csv").write_text("it,step\n1,1000\n")
    shutil.rmtree(_copy_run(run, root / "no_checkpoint") / "checkpoints")
    state = load_checkpoint(run)
    no_key = _copy_run(run, root / "no_key")
    save_checkpoint(no_key, {k: v for k, v in state.items() if k not in ("format", "actor", "critic")})
    diverged = _copy_run(run, root / "diverged")  # stopped by the skip limit before its budget
    config = {**state["config"], "total_steps": 5000}
    save_checkpoint(diverged, {**{k: v for k, v in state.items() if k != "format"}, "config": config,
                               "skips": {"consecutive": 10, "total": 10, "last_reason": "non-finite reward"}})
    (diverged / "config.json").write_text(json.dumps(config))
    (diverged / "summary.json").unlink()
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("not a run\n")
    (root / "a_file.txt").write_text("a file, not a folder\n")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` and its hash (natpg's empty lock file, which a resume may leave in a
    run folder it tried, is not content)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


T = ["train", "--quiet", "--out", "{ws}/new_run"]          # a fresh output folder for train rows
CP = ["--env", "CartPole-v1"]

BAD = [
    # --- train: environment, algorithm, spaces
    (T + ["--env", "CartPoel-v1"], "unknown env id 'CartPoel-v1'; did you mean 'CartPole-v1'"),
    (T + ["--env", "NoSuchEnv-v9"], "unknown env id 'NoSuchEnv-v9'"),
    (T + CP + ["--algo", "ppo"], "unknown algorithm 'ppo'; allowed: smac, ac-sgd, ac-adam, ac-cg, woodbury"),
    (T + ["--env", "natpg-test/MultiDiscrete-v0"], "action space MultiDiscrete([2 3]) is not supported"),
    # --- train: hyper-parameters (negative, zero, NaN, wrong type, out of range)
    (T + CP + ["--set", "actor_lr=0"], "actor_lr=0.0 must be a finite number > 0"),
    (T + CP + ["--set", "actor_lr=-0.1"], "actor_lr=-0.1 must be a finite number > 0"),
    (T + CP + ["--set", "actor_lr=nan"], "actor_lr=nan must be a finite number > 0"),
    (T + CP + ["--set", "actor_lr=fast"], "actor_lr='fast' is not a number"),
    (T + CP + ["--set", "critic_lr=inf"], "critic_lr=inf must be a finite number > 0"),
    (T + CP + ["--set", "damping=0"], "damping=0.0 must be a finite number > 0"),
    (T + CP + ["--algo", "ac-cg", "--set", "cg_damping=-1"], "cg_damping=-1.0 must be a finite number > 0"),
    (T + CP + ["--set", "gamma=1.5"], "gamma=1.5 must be in [0, 1]"),
    (T + CP + ["--set", "gae_lambda=nan"], "gae_lambda=nan must be in [0, 1]"),
    (T + CP + ["--set", "seed=-3"], "seed=-3 must be an integer >= 0"),
    (T + CP + ["--seed", "4294967296"], "seed=4294967296 must be an integer >= 0 and <= 4294967295"),
    (T + CP + ["--set", "seed=18446744073709551616"], "must be an integer >= 0 and <= 4294967295"),
    (T + CP + ["--algo", "woodbury", "--set", "rank=0"], "rank=0 must be an integer >= 1"),
    (T + CP + ["--algo", "ac-cg", "--set", "cg_iters=2.5"], "cg_iters=2.5 must be an integer"),
    (T + CP + ["--set", "hidden_sizes=64,x"], "hidden_sizes='64,x' must be a comma-separated list of integers"),
    (T + CP + ["--set", "normalize_advantages=maybe"], "normalize_advantages='maybe' is not a boolean"),
    (T + CP + ["--set", "batch_size=7"], "batch_size (B) = 7 must divide n_steps (T) = 1000"),
    (T + CP + ["--n-envs", "3"], "n_steps (T) = 1000 is not divisible by n_envs = 3"),
    (T + CP + ["--steps", "0"], "total_steps=0 must be an integer >= 1"),
    (T + CP + ["--set", "vectorization=threads"], "vectorization='threads' is not allowed; allowed: sync, async"),
    (T + CP + ["--set", "env_backend=jax"], "env_backend='jax' is not allowed"),
    (T + CP + ["--set", "max_episode_steps=0"], "max_episode_steps=0 must be an integer >= 1 or None"),
    (T + CP + ["--algo", "ac-cg", "--set", "cg_max_kl=0.01"], "cg_max_kl no longer exists; use step_rule=kl"),
    (T + CP + ["--algo", "ac-cg", "--set", "target_kl=-1"], "target_kl=-1.0 must be a finite number > 0"),
    (T + CP + ["--algo", "smac", "--set", "step_rule=trpo"], "step_rule='trpo' is not allowed; allowed: fixed, kl"),
    # --- train: a setting of another algorithm, named (issue 12)
    (T + CP + ["--algo", "smac", "--set", "rank=32"],
     "rank is a woodbury setting; algo=smac does not read it (its settings: damping, step_rule"),
    (T + CP + ["--algo", "ac-sgd", "--set", "damping=0.3"],
     "damping is a smac and woodbury setting; algo=ac-sgd does not read it (its settings: step_rule"),
    (T + CP + ["--algo", "woodbury", "--set", "n_steps=4"], "rank=8 must be <= the actor's mini-batch size"),
    (T + CP + ["--set", "checkpoint_every=-1"], "checkpoint_every=-1 must be an integer >= 0"),
    # --- train: --set typos and syntax
    (T + CP + ["--set", "dampng=1"], "unknown setting 'dampng'; did you mean 'damping'?"),
    (T + CP + ["--set", "actor-lrr=1"], "unknown setting 'actor_lrr'; did you mean 'actor_lr'?"),
    (T + CP + ["--set", "damping"], "--set expects key=value, got 'damping'"),
    # --- train: output folders
    (["train", "--quiet"] + CP + ["--out", "{ws}/a_file.txt"], "exists and is not a folder"),
    (["train", "--quiet"] + CP + ["--out", "{ws}/run"], "already holds files"),
    (["train", "--quiet"] + CP + ["--out", "{ws}/a_file.txt/run"], "which is a file, not a folder"),
    # --- --overwrite deletes only a natpg run folder (the user's files are checked unchanged below)
    (["train", "--quiet"] + CP + ["--out", "{ws}/foreign", "--overwrite"], "'{ws}/foreign' is not a natpg run folder"),
    (["train", "--quiet"] + CP + ["--out", "{ws}", "--overwrite"], "'{ws}' is not a natpg run folder"),
    (["train", "--quiet"] + CP + ["--out", "{ws}/bad_config", "--overwrite"], "config.json' is damaged"),
    # --- resume
    (["train", "--resume", "{ws}/nosuch"], "run folder '{ws}/nosuch' does not exist"),
    (["train", "--resume", "{ws}/foreign"], "has no checkpoint (checkpoints/latest.pt)"),
    (["train", "--resume", "{ws}/damaged"], "cannot read checkpoint"),
    (["train", "--resume", "{ws}/run", "--env", "Hopper-v5"], "--env cannot be given with it"),
    (["train", "--resume", "{ws}/run", "--steps", "10"], "--steps 10 is below the 1000 steps"),
    (["train", "--resume", "{ws}/bad_config"], "'{ws}/bad_config/config.json' is damaged"),
    (["train", "--resume", "{ws}/bad_csv"], "'{ws}/bad_csv/episodes.csv' is damaged"),
    (["train", "--resume", "{ws}/bad_header"], "'{ws}/bad_header/iterations.csv' is damaged: its header has no"),
    (["train", "--resume", "{ws}/no_key"], "is damaged: it lacks 'actor', 'critic'"),
    (["train", "--resume", "{ws}/diverged"], "stopped because training diverged"),
    (["train", "--resume", "{ws}/no_checkpoint"], "has logs (iterations.csv, episodes.csv, summary.json) but no "
                                                  "checkpoint"),
    # --- eval
    (["eval", "{ws}/foreign"], "has no checkpoint"),
    (["eval", "{ws}/damaged"], "cannot read checkpoint"),
    (["eval", "{ws}/run", "--episodes", "0"], "episodes=0 must be an integer >= 1"),
    (["eval", "{ws}/run", "--video", "{ws}/clip.avi"], "must end in .gif or .mp4"),
    (["eval", "{ws}/run", "--video", "{ws}/no/such/dir/clip.gif"], "does not exist"),
    (["eval", "{ws}/run", "--seed", "-1"], "seed=-1 must be an integer >= 0"),
    (["eval", "{ws}/no_key"], "is damaged: it lacks 'actor'"),
    # --- plot
    (["plot", "{ws}/foreign"], "is not a natpg run folder"),
    (["plot", "{ws}/bad_csv"], "'{ws}/bad_csv/episodes.csv' is damaged"),
    (["plot", "{ws}/bad_config"], "'{ws}/bad_config/config.json' is damaged"),
    (["plot", "{ws}/run", "--out", "{ws}/a_file.txt/curve.png"], "which is a file, not a folder"),
    # --- report
    (["report", "{ws}/bad_summary", "--out", "{ws}/new_run"], "'{ws}/bad_summary/summary.json' is damaged"),
    (["report", "{ws}/bad_csv", "--out", "{ws}/new_run"], "'{ws}/bad_csv/episodes.csv' is damaged"),
    (["report", "{ws}/bad_config", "--out", "{ws}/new_run"], "'{ws}/bad_config/config.json' is damaged"),
    (["report", "{ws}/run", "--out", "{ws}/new_run", "--notes", "{ws}/run/checkpoints/latest.pt"],
     "is not a UTF-8 text (Markdown) file"),
    # --- bench: seeds, --out
    (["bench", "--out", "{ws}/new_run"] + ["--envs", "CartPole-v1", "--seeds", "0-99999999999"], "is too large"),
    (["bench", "--out", "{ws}/new_run"] + ["--envs", "CartPole-v1", "--seeds", "0-20000"], "at most 10000"),
    (["bench", "--out", "{ws}/a_file.txt/grid", "--envs", "CartPole-v1", "--seeds", "0", "--steps", "1000"],
     "which is a file, not a folder"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_bad_input_is_one_clear_line_and_nothing_written_changes(workspace, args, message):
    ws = str(workspace)
    argv = [a.replace("{ws}", ws) for a in args]
    before = tree_digest(workspace)
    result = runner.invoke(app, argv)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2, (argv, result.output)
    assert len(lines) == 1 and lines[0].startswith("natpg: error: "), result.stderr
    assert message.replace("{ws}", ws) in lines[0]
    assert "Traceback" not in result.output
    assert tree_digest(workspace) == before
    assert not (workspace / "new_run").exists()


def test_table_is_big_enough():
    assert len(BAD) >= 30
