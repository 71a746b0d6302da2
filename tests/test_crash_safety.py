"""SIGKILL at random moments never corrupts a run: it is always resumable, and finishes complete."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from natpg.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

STEPS = 25_000
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def natpg(*args: str) -> list[str]:
    return [sys.executable, "-m", "natpg.cli", *args]


def check_consistent(run: Path) -> None:
    """Whatever a kill left behind is never a half-written JSON read back as valid, and is resumable."""
    for name in ("config.json", "system.json", "summary.json"):
        if (run / name).exists():
            json.loads((run / name).read_text())  # atomic writes: complete or absent
    assert not list(run.glob(".*.tmp")), "a temporary JSON file was left visible"
    if (run / "checkpoints" / "latest.pt").exists():
        load_checkpoint(run)  # the checkpoint is complete (temp file + rename)


def iteration_rows(folder: Path) -> int:
    """Complete rows of every ``iterations.csv`` under ``folder`` (headers excluded)."""
    return sum(max(p.read_bytes().count(b"\n") - 1, 0) for p in folder.rglob("iterations.csv"))


def kill_after(proc: subprocess.Popen, ready, rng: random.Random, limit_s: float = 120.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds (polled at a random 1–20 ms interval).

    Kills are placed by observed progress, not by timers, so how many land does not depend on
    the machine's speed. Returns whether the process was still alive and was killed.
    """
    deadline = time.monotonic() + limit_s
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.001, 0.02))
    alive = proc.poll() is None
    if alive:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return alive


def test_repeated_sigkill_then_resume_finishes_with_complete_logs(tmp_path):
    run = tmp_path / "run"
    rng = random.Random(12345)
    # The first kill lands during start-up (at once: the interpreter has not even imported natpg); each later
    # one after 1 to 3 new iteration rows: 25 iterations cannot finish in five attempts of at most 3 rows each,
    # so every attempt is killed, on any machine.
    for attempt in range(5):
        started = run.exists() and (run / "config.json").exists()
        cmd = natpg("train", "--resume", str(run), "--quiet") if started else natpg(
            "train", "--env", "CartPole-v1", "--algo", "smac", "--steps", str(STEPS), "--quiet", "--out", str(run),
            "--checkpoint-every", "2", "--overwrite")
        rows_before = iteration_rows(run) if run.exists() else 0
        target = rows_before + rng.randint(1, 3)
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ready = (lambda: True) if attempt == 0 else (lambda: iteration_rows(run) >= target)
        assert kill_after(proc, ready, rng), f"attempt {attempt}: the run ended before it was killed"
        if run.exists():
            check_consistent(run)
    started = (run / "config.json").exists()
    final = natpg("train", "--resume", str(run), "--quiet") if started else natpg(
        "train", "--env", "CartPole-v1", "--steps", str(STEPS), "--quiet", "--out", str(run), "--overwrite")
    done = subprocess.run(final, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    with open(run / "iterations.csv", newline="") as fh:
        iters = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in iters] == list(range(1, STEPS // 1000 + 1))
    assert [int(r["global_step"]) for r in iters] == [1000 * i for i in range(1, STEPS // 1000 + 1)]
    with open(run / "episodes.csv", newline="") as fh:
        raw = fh.read()
    assert raw.endswith("\n")
    eps = list(csv.DictReader(raw.splitlines()))
    steps = [int(e["global_step"]) for e in eps]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) and steps[-1] <= STEPS
    assert all(float(e["return"]) == int(e["length"]) for e in eps)  # CartPole: reward 1 per step
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == STEPS and summary["episodes"] == len(eps)


def digest(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_repeated_sigkill_of_a_grid_then_rerun_finishes_every_run(tmp_path):
    out = tmp_path / "grid"
    cmd = natpg("bench", "--out", str(out), "--envs", "CartPole-v1,Acrobot-v1", "--algos", "smac,ac-sgd",
                "--seeds", "0", "--steps", "6000", "--workers", "2", "--quiet", "--set", "checkpoint_every=1")
    rng = random.Random(7)
    finished: dict[Path, dict[str, bytes]] = {}
    for _ in range(3):  # each kill after 2 to 5 new iteration rows across the grid (of 24 in all)
        target = (iteration_rows(out) if out.exists() else 0) + rng.randint(2, 5)
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the grid process only: its workers must notice and stop
        kill_after(proc, lambda: out.exists() and iteration_rows(out) >= target, rng)
        time.sleep(2.0)  # the workers' watchdogs fire within 0.5 s
        for run in out.rglob("config.json"):
            check_consistent(run.parent)
        # nothing writes into the folders any more: a second look finds them unchanged
        snapshot = {p: digest(p.parent) for p in out.rglob("config.json")}
        time.sleep(1.5)
        assert snapshot == {p: digest(p.parent) for p in out.rglob("config.json")}, "an orphaned worker is still writing"
        for folder, files in finished.items():  # runs finished before a kill are never touched again
            assert digest(folder) == files
        finished.update({s.parent: digest(s.parent) for s in out.rglob("summary.json")})
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summaries = list(out.rglob("summary.json"))
    assert len(summaries) == 4
    for s in summaries:
        with open(s.parent / "iterations.csv", newline="") as fh:
            assert [int(r["iteration"]) for r in csv.DictReader(fh)] == list(range(1, 7))
    for folder, files in finished.items():
        assert digest(folder) == files
