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


def test_repeated_sigkill_then_resume_finishes_with_complete_logs(tmp_path):
    run = tmp_path / "run"
    rng = random.Random(12345)
    delays = [0.05] + [rng.uniform(1.0, 4.0) for _ in range(4)]  # the first kill lands during start-up
    kills = 0
    for delay in delays:
        started = run.exists() and (run / "config.json").exists()
        cmd = natpg("train", "--resume", str(run), "--quiet") if started else natpg(
            "train", "--env", "CartPole-v1", "--algo", "smac", "--steps", str(STEPS), "--quiet", "--out", str(run),
            "--checkpoint-every", "2", "--overwrite")
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if run.exists():
            check_consistent(run)
    assert kills >= 3
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
