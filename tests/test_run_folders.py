"""Run folders never lose a user's data (issue 10, sections 1 and 3).

* ``--overwrite`` deletes only natpg's own files, and only in a recognisable run folder;
* one process per run folder: an OS lock held by ``natpg train`` and by each ``natpg bench``
  worker; a second ``train`` is refused, a second ``bench`` skips the run and says so;
* "finished" means finished at the config asked for (``--resume --steps``, grid reruns);
* SIGINT/SIGTERM save a checkpoint, print one line and exit 130/143 (``train`` and ``bench``);
* a read-only folder or a full disk is one line, and what was written stays usable;
* ``bench --set vectorization=async`` works (workers may start processes).
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import natpg.trainer
from natpg import make_config, resume, train
from natpg.checkpoint import load_checkpoint
from natpg.cli import app
from natpg.experiments.grid import plan_grid, run_grid
from natpg.experiments.store import find_runs, is_finished, read_run
from natpg.runfolder import LOCK_FILE, RunLock

pytestmark = pytest.mark.slow

runner = CliRunner()
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
LONG = str(10_000_000)  # a budget no test waits for: these runs are stopped by a signal


def natpg_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "natpg.cli", *args]


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def rows(path: Path) -> int:
    """Data rows of a CSV log (0 if it does not exist yet)."""
    try:
        return max(len(path.read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def wait_for_rows(paths: list[Path], n: int, procs: list[subprocess.Popen], timeout: float = 240.0) -> None:
    """Wait until every CSV in ``paths`` has ``n`` rows (failing if a process ends first)."""
    deadline = time.monotonic() + timeout
    while not all(rows(p) >= n for p in paths):
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run did not log in time"
        time.sleep(0.2)


def one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("natpg: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def train_cli(*args: str):
    return runner.invoke(app, ["train", "--env", "CartPole-v1", "--quiet", *args])


# --------------------------------------------------------------------------- --overwrite

def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("three years of work\n")
    (user / "episodes.csv").write_text("my own data, named like natpg's\n")
    before = digest(user)
    line = one_error_line(train_cli("--steps", "1000", "--out", str(user), "--overwrite"))
    assert "is not a natpg run folder" in line
    monkeypatch.chdir(user)  # the audit's case: --out . --overwrite deleted the current folder
    result = train_cli("--steps", "1000", "--out", ".", "--overwrite")
    assert result.exit_code == 2 and "'.' is not a natpg run folder" in one_error_line(result)
    assert digest(user) == before


def test_overwrite_deletes_only_the_files_natpg_wrote(tmp_path):
    run = tmp_path / "run"
    assert train_cli("--steps", "1000", "--out", str(run)).exit_code == 0
    (run / "my_notes.txt").write_text("keep me\n")
    (run / "checkpoints" / "my_model.pt").write_bytes(b"mine")
    result = train_cli("--steps", "2000", "--out", str(run), "--overwrite")
    assert result.exit_code == 0, result.output
    assert (run / "my_notes.txt").read_text() == "keep me\n"
    assert (run / "checkpoints" / "my_model.pt").read_bytes() == b"mine"
    assert json.loads((run / "summary.json").read_text())["global_step"] == 2000
    assert rows(run / "iterations.csv") == 2  # the old run's rows went with its files


# --------------------------------------------------------------------------- locks

def test_a_locked_run_is_refused_by_train_and_skipped_by_bench(tmp_path):
    grid = tmp_path / "grid"
    run = grid / "CartPole-v1" / "smac" / "seed0"  # where `natpg bench` puts this run
    proc = subprocess.Popen(natpg_cmd("train", "--env", "CartPole-v1", "--steps", LONG, "--quiet", "--out", str(run)),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows([run / "iterations.csv"], 2, [proc])
        line = one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--quiet"]))
        assert "is in use by another natpg process" in line
        line = one_error_line(train_cli("--steps", LONG, "--out", str(run), "--overwrite"))
        assert "is in use by another natpg process" in line
        assert (run / "config.json").is_file() and rows(run / "iterations.csv") >= 2  # nothing deleted
        outcome = run_grid(plan_grid(["CartPole-v1"], ["smac"], [0], grid, {"total_steps": int(LONG)}),
                           workers=1, display=False, timeout_s=60, retries=0)  # a broken lock fails, not hangs
        assert outcome.busy == ["CartPole-v1 smac seed0"] and not outcome.failed and not outcome.finished
        assert not (run / "error.json").exists()
    finally:
        proc.kill()
        proc.wait(timeout=60)
    with RunLock.acquire(run):  # the OS released the lock with the killed process
        pass


# --------------------------------------------------------------------------- signals

@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_train_signal_saves_a_checkpoint_and_exits_with_the_conventional_code(tmp_path, sig, code):
    run = tmp_path / "run"
    proc = subprocess.Popen(natpg_cmd("train", "--env", "CartPole-v1", "--steps", LONG, "--quiet", "--out", str(run),
                                  "--checkpoint-every", "1000"),
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows([run / "iterations.csv"], 3, [proc])
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"natpg: interrupted by {sig.name}") and "--resume" in lines[0]
    state = load_checkpoint(run)  # saved at the signal, not only at iteration 0 (checkpoint_every is 1000)
    assert state["iteration"] == rows(run / "iterations.csv") >= 3
    assert not (run / "summary.json").exists()
    result = resume(run, total_steps=state["global_step"] + 2000)
    assert result.iterations == state["iteration"] + 2 and is_finished(run)


def test_bench_forwards_sigterm_to_its_workers(tmp_path):
    grid = tmp_path / "grid"
    runs = [grid / "CartPole-v1" / algo / "seed0" for algo in ("smac", "ac-sgd")]
    proc = subprocess.Popen(natpg_cmd("bench", "--out", str(grid), "--envs", "CartPole-v1", "--algos", "smac,ac-sgd",
                                  "--seeds", "0", "--steps", LONG, "--workers", "2", "--quiet",
                                  "--set", "checkpoint_every=1000"),
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_rows([r / "iterations.csv" for r in runs], 2, [proc])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "interrupted by SIGTERM: 2 running runs stopped at a checkpoint" in lines[0], err
    for run in runs:
        assert load_checkpoint(run)["iteration"] == rows(run / "iterations.csv") >= 2
        assert not (run / "error.json").exists() and not (run / "summary.json").exists()


# --------------------------------------------------------------------------- "finished"

def test_resume_with_a_new_budget_unfinishes_the_run_before_training(tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(make_config("CartPole-v1", "smac", 0, {"total_steps": 1000}), run)
    assert is_finished(run)
    calls = {"n": 0}
    real = natpg.trainer.Trainer.train_iteration

    def dies_midway(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed midway")
        return real(self)

    monkeypatch.setattr(natpg.trainer.Trainer, "train_iteration", dies_midway)
    with pytest.raises(RuntimeError, match="killed midway"):
        resume(run, total_steps=5000)
    monkeypatch.undo()
    assert not (run / "summary.json").exists() and not is_finished(run)
    assert read_run(run).status == "unfinished"
    assert load_checkpoint(run)["config"]["total_steps"] == 5000  # a plain resume continues to the new budget
    resume(run)
    assert is_finished(run) and json.loads((run / "summary.json").read_text())["global_step"] == 5000


def test_a_summary_of_another_config_does_not_count_as_finished(tmp_path):
    run = tmp_path / "grid" / "CartPole-v1" / "smac" / "seed0"
    train(make_config("CartPole-v1", "smac", 0, {"total_steps": 1000}), run)
    config = json.loads((run / "config.json").read_text())
    # Same budget, another setting (as a killed rerun with --set left it): the steps alone would say finished.
    (run / "config.json").write_text(json.dumps({**config, "actor_lr": config["actor_lr"] * 2}))
    assert not is_finished(run)
    assert [r.status for r in find_runs(tmp_path / "grid")] == ["unfinished"]
    (run / "config.json").write_text(json.dumps({**config, "total_steps": 3000}))  # as an old natpg left it
    summary = json.loads((run / "summary.json").read_text())
    del summary["config"]  # a summary written before natpg recorded the config: its step count decides
    (run / "summary.json").write_text(json.dumps(summary))
    assert not is_finished(run) and read_run(run).status == "unfinished"


def test_a_grid_rerun_with_another_config_is_refused_unless_overwrite(tmp_path):
    grid = tmp_path / "grid"
    run = grid / "CartPole-v1" / "smac" / "seed0"
    bench = ["bench", "--out", str(grid), "--envs", "CartPole-v1", "--algos", "smac", "--seeds", "0", "--workers",
             "1", "--quiet"]
    assert runner.invoke(app, bench + ["--steps", "1000"]).exit_code == 0
    (run / "notes.txt").write_text("mine\n")
    before = digest(grid)
    result = runner.invoke(app, bench + ["--steps", "2000"])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "total_steps 1000→2000" in line and "--overwrite" in line and str(run) in line
    assert digest(grid) == before
    result = runner.invoke(app, bench + ["--steps", "2000", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert is_finished(run, make_config("CartPole-v1", "smac", 0, {"total_steps": 2000}).to_dict())
    assert (run / "notes.txt").read_text() == "mine\n"
    assert runner.invoke(app, bench + ["--steps", "2000"]).stdout.startswith("grid: 0 finished, 1 skipped")


# --------------------------------------------------------------------------- file system failures

@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A read-only folder holding one file. As root (where permissions are not enforced) the
    kernel's refusal is reproduced: creating or writing anything below the folder raises EACCES."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "kept.txt").write_text("kept\n")
    folder.chmod(0o555)
    if os.geteuid() == 0:
        def inside(path) -> bool:
            try:
                return Path(os.fsdecode(path)).absolute().is_relative_to(folder)
            except TypeError:
                return False

        def denied(path):
            return PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))

        real_os_open, real_mkdir, real_open = os.open, os.mkdir, io.open

        def os_open(path, flags, mode=0o777, *, dir_fd=None):
            if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise denied(path)
            return real_os_open(path, flags, mode, dir_fd=dir_fd)

        def mkdir(path, mode=0o777, *, dir_fd=None):
            if inside(path):
                raise denied(path)
            return real_mkdir(path, mode, dir_fd=dir_fd)

        def open_(file, mode="r", *args, **kwargs):
            if not isinstance(file, int) and inside(file) and any(c in mode for c in "wax+"):
                raise denied(file)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(builtins, "open", open_)
    yield folder
    monkeypatch.undo()
    folder.chmod(0o755)


def test_a_read_only_output_folder_is_one_line(read_only):
    line = one_error_line(train_cli("--steps", "1000", "--out", str(read_only / "run")))
    assert f"cannot create run folder '{read_only / 'run'}': Permission denied" in line
    result = runner.invoke(app, ["bench", "--out", str(read_only / "grid"), "--envs", "CartPole-v1", "--algos",
                                 "smac", "--seeds", "0", "--steps", "1000", "--quiet"])
    assert result.exit_code == 2 and "cannot be written" in one_error_line(result)
    assert [p.name for p in read_only.iterdir()] == ["kept.txt"]


@pytest.fixture
def full_disk(monkeypatch):
    """From the ``after``-th atomic file write on, writing fails with ENOSPC (as on a full disk)."""
    state = {"calls": 0, "after": None}
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self._fh = fh

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        state["calls"] += 1
        if "w" in mode and state["after"] is not None and state["calls"] >= state["after"]:
            return Full(fh)
        return fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    return state


def test_a_full_disk_is_one_line_and_the_run_stays_resumable(tmp_path, full_disk, monkeypatch):
    run = tmp_path / "run"
    full_disk["after"] = 5  # config.json, system.json, checkpoints at iterations 0 and 1, then the disk is full
    result = train_cli("--steps", "6000", "--out", str(run), "--checkpoint-every", "1")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "checkpoints/latest.pt': No space left on device" in line and f"natpg train --resume {run}" in line
    monkeypatch.undo()
    assert load_checkpoint(run)["iteration"] == 1 and not list(run.rglob("*.tmp"))
    assert runner.invoke(app, ["train", "--resume", str(run), "--quiet"]).exit_code == 0
    assert rows(run / "iterations.csv") == 6 and is_finished(run)


def test_a_full_disk_on_resume_changes_nothing(tmp_path, full_disk):
    run = tmp_path / "run"
    train(make_config("CartPole-v1", "smac", 0, {"total_steps": 1000}), run)
    before = digest(run)
    full_disk["after"] = full_disk["calls"] + 1  # the next write fails
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", "3000", "--quiet"])
    assert result.exit_code == 1 and "No space left on device" in one_error_line(result)
    assert digest(run) == before and is_finished(run)


# --------------------------------------------------------------------------- vectorization=async in a grid

def test_bench_with_async_vectorization_works(tmp_path):
    grid = tmp_path / "grid"
    result = runner.invoke(app, ["bench", "--out", str(grid), "--envs", "CartPole-v1", "--algos", "smac", "--seeds",
                                 "0", "--steps", "2000", "--workers", "1", "--quiet", "--set", "vectorization=async",
                                 "--set", "n_envs=2"])
    assert result.exit_code == 0, result.output
    assert is_finished(grid / "CartPole-v1" / "smac" / "seed0")
