"""One table of bad inputs, wherever a user types something (issue: reliability).

Each row runs the real command line in-process and asserts: exit code 2, exactly one line on
stderr that starts with ``natpg: error:`` and contains the expected text (the bad value and what
is allowed), no traceback, and no file that existed before changed or removed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from natpg.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder holding one finished run, a damaged copy of it, a foreign folder and a file."""
    root = tmp_path_factory.mktemp("bad_inputs")
    result = runner.invoke(app, ["train", "--env", "CartPole-v1", "--steps", "1000", "--quiet",
                                 "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    damaged = root / "damaged"
    damaged.mkdir()
    for f in (root / "run").iterdir():
        if f.is_file():
            (damaged / f.name).write_bytes(f.read_bytes())
    (damaged / "checkpoints").mkdir()
    ckpt = (root / "run" / "checkpoints" / "latest.pt").read_bytes()
    (damaged / "checkpoints" / "latest.pt").write_bytes(ckpt[: len(ckpt) // 3])  # a truncated checkpoint
    (root / "foreign").mkdir()
    (root / "foreign" / "notes.txt").write_text("not a run\n")
    (root / "a_file.txt").write_text("a file, not a folder\n")
    return root


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


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
    (T + CP + ["--set", "cg_damping=-1"], "cg_damping=-1.0 must be a finite number > 0"),
    (T + CP + ["--set", "gamma=1.5"], "gamma=1.5 must be in [0, 1]"),
    (T + CP + ["--set", "gae_lambda=nan"], "gae_lambda=nan must be in [0, 1]"),
    (T + CP + ["--set", "seed=-3"], "seed=-3 must be an integer >= 0"),
    (T + CP + ["--set", "rank=0"], "rank=0 must be an integer >= 1"),
    (T + CP + ["--set", "cg_iters=2.5"], "cg_iters=2.5 must be an integer"),
    (T + CP + ["--set", "hidden_sizes=64,x"], "hidden_sizes='64,x' must be a comma-separated list of integers"),
    (T + CP + ["--set", "normalize_advantages=maybe"], "normalize_advantages='maybe' is not a boolean"),
    (T + CP + ["--set", "batch_size=7"], "batch_size (B) = 7 must divide n_steps (T) = 1000"),
    (T + CP + ["--n-envs", "3"], "n_steps (T) = 1000 is not divisible by n_envs = 3"),
    (T + CP + ["--steps", "0"], "total_steps=0 must be an integer >= 1"),
    (T + CP + ["--set", "vectorization=threads"], "vectorization='threads' is not allowed; allowed: sync, async"),
    (T + CP + ["--set", "env_backend=jax"], "env_backend='jax' is not allowed"),
    (T + CP + ["--set", "max_episode_steps=0"], "max_episode_steps=0 must be an integer >= 1 or None"),
    (T + CP + ["--set", "cg_max_kl=-1"], "cg_max_kl=-1.0 must be > 0 or None"),
    (T + CP + ["--set", "checkpoint_every=-1"], "checkpoint_every=-1 must be an integer >= 0"),
    # --- train: --set typos and syntax
    (T + CP + ["--set", "dampng=1"], "unknown setting 'dampng'; did you mean 'damping'?"),
    (T + CP + ["--set", "actor-lrr=1"], "unknown setting 'actor_lrr'; did you mean 'actor_lr'?"),
    (T + CP + ["--set", "damping"], "--set expects key=value, got 'damping'"),
    # --- train: output folders
    (["train", "--quiet"] + CP + ["--out", "{ws}/a_file.txt"], "exists and is not a folder"),
    (["train", "--quiet"] + CP + ["--out", "{ws}/run"], "already holds files"),
    # --- resume
    (["train", "--resume", "{ws}/nosuch"], "run folder '{ws}/nosuch' does not exist"),
    (["train", "--resume", "{ws}/foreign"], "has no checkpoint (checkpoints/latest.pt)"),
    (["train", "--resume", "{ws}/damaged"], "cannot read checkpoint"),
    (["train", "--resume", "{ws}/run", "--env", "Hopper-v5"], "--env cannot be given with it"),
    # --- eval
    (["eval", "{ws}/foreign"], "has no checkpoint"),
    (["eval", "{ws}/damaged"], "cannot read checkpoint"),
    (["eval", "{ws}/run", "--episodes", "0"], "episodes=0 must be an integer >= 1"),
    (["eval", "{ws}/run", "--video", "{ws}/clip.avi"], "must end in .gif or .mp4"),
    (["eval", "{ws}/run", "--video", "{ws}/no/such/dir/clip.gif"], "does not exist"),
    # --- plot
    (["plot", "{ws}/foreign"], "is not a natpg run folder"),
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
