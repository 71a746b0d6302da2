"""The grid runner: a tiny real grid on the process pool and on a local Ray cluster.

2 envs × 2 algorithms × 2 seeds × 2000 steps, plus one run that raises. Checks the set of run
folders, the recorded error, that a rerun skips finished runs and restarts unfinished ones,
and that both backends produce the same episodes (same seed → the same returns).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from natpg.cli import app

from natpg.config import ConfigError
from natpg.experiments.grid import Backend, plan_grid, parse_seeds, run_grid
from natpg.experiments.report import write_report
from natpg.experiments.store import find_runs, is_finished

runner = CliRunner()

ENVS = ["CartPole-v1", "Acrobot-v1"]
ALGOS = ["smac", "ac-sgd"]
SEEDS = [0, 1]
TINY = {"total_steps": 2000}
EXPECTED = {f"{env}/{algo}/seed{seed}" for env in ENVS for algo in ALGOS for seed in SEEDS}


def tiny_grid(out: Path, with_bad_run: bool = True):
    runs = plan_grid(ENVS, ALGOS, SEEDS, out, TINY)
    if with_bad_run:  # an env id no worker can make: the run raises inside training
        runs += plan_grid(["natpg-test/NoSuchEnv-v0"], ["smac"], [0], out, TINY)
    return runs


def finished_folders(out: Path) -> set[str]:
    return {p.parent.relative_to(out).as_posix() for p in out.rglob("summary.json")}


@pytest.fixture(scope="module")
def local_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid_local")
    outcome = run_grid(tiny_grid(out), Backend.LOCAL, workers=2, display=False)
    return out, outcome


def test_plan_order_is_env_then_seed_then_algorithm(tmp_path):
    runs = plan_grid(ENVS, ALGOS, SEEDS, tmp_path, TINY)
    assert [(r.env_id, r.seed, r.label) for r in runs[:4]] == [
        ("CartPole-v1", 0, "smac"), ("CartPole-v1", 0, "ac-sgd"), ("CartPole-v1", 1, "smac"), ("CartPole-v1", 1, "ac-sgd")]
    assert runs[0].run_dir == tmp_path.absolute() / "CartPole-v1" / "smac" / "seed0"
    assert all(r.total_steps == 2000 for r in runs)


def test_plan_rejects_bad_input_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown algorithm 'ppo'"):
        plan_grid(ENVS, ["ppo"], SEEDS, tmp_path)
    with pytest.raises(ConfigError, match="actor_lr=0.0 must be a finite number > 0"):
        plan_grid(ENVS, ALGOS, SEEDS, tmp_path, {"actor_lr": 0.0})
    with pytest.raises(ConfigError, match="same"):
        plan_grid(ENVS, ["smac", "smac"], SEEDS, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("text,seeds", [("0-4", [0, 1, 2, 3, 4]), ("3", [3]), ("0,2,7", [0, 2, 7]), ("1-2,2,5", [1, 2, 5])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "4-1", "-1", "0-x"])
def test_parse_seeds_rejects(text):
    with pytest.raises(ConfigError, match="is not a seed list"):
        parse_seeds(text)


def test_local_grid_writes_every_run_and_records_the_crash(local_grid):
    out, outcome = local_grid
    assert finished_folders(out) == EXPECTED
    assert sorted(outcome.finished) == sorted(f"{e} {a} seed{s}" for e in ENVS for a in ALGOS for s in SEEDS)
    assert list(outcome.failed) == ["natpg-test/NoSuchEnv-v0 smac seed0"]
    error = json.loads((out / "natpg-test_NoSuchEnv-v0" / "smac" / "seed0" / "error.json").read_text())
    assert "unknown env id 'natpg-test/NoSuchEnv-v0'" in error["error"]
    assert "Traceback" in error["traceback"] and error["spec"]["seed"] == 0
    for folder in EXPECTED:
        summary = json.loads((out / folder / "summary.json").read_text())
        assert summary["global_step"] == 2000 and folder.startswith(summary["env_id"])
    statuses = {(r.env_id, r.label, r.seed): r.status for r in find_runs(out)}
    assert statuses[("natpg-test/NoSuchEnv-v0", "smac", 0)] == "failed"
    assert sum(s == "finished" for s in statuses.values()) == 8


def test_rerun_skips_finished_runs_and_resumes_unfinished_ones(local_grid, tmp_path):
    out, _ = local_grid
    keep = out / "CartPole-v1" / "smac" / "seed0" / "episodes.csv"
    before = keep.read_bytes(), keep.stat().st_mtime_ns
    # Make one run look interrupted after its last checkpoint: no summary yet.
    broken = out / "Acrobot-v1" / "ac-sgd" / "seed1"
    logged = (broken / "episodes.csv").read_text()
    (broken / "summary.json").unlink()
    assert not is_finished(broken)

    outcome = run_grid(tiny_grid(out), Backend.LOCAL, workers=2, display=False, retries=0)
    assert len(outcome.skipped) == 7
    assert outcome.finished == ["Acrobot-v1 ac-sgd seed1"]
    assert list(outcome.failed) == ["natpg-test/NoSuchEnv-v0 smac seed0"]  # failed runs are tried again
    assert is_finished(broken)
    assert (broken / "episodes.csv").read_text() == logged  # resumed from its checkpoint, nothing re-logged
    assert (keep.read_bytes(), keep.stat().st_mtime_ns) == before


def test_ray_backend_gives_the_same_run_folders_and_returns(local_grid, tmp_path):
    pytest.importorskip("ray")
    local_out, _ = local_grid
    out = tmp_path / "grid_ray"
    outcome = run_grid(tiny_grid(out), Backend.RAY, workers=2, display=False)
    assert finished_folders(out) == EXPECTED
    assert list(outcome.failed) == ["natpg-test/NoSuchEnv-v0 smac seed0"]
    assert (out / "natpg-test_NoSuchEnv-v0" / "smac" / "seed0" / "error.json").is_file()
    for folder in EXPECTED:  # same seed, same machine: bit-identical episodes on either backend
        assert (out / folder / "episodes.csv").read_text() == (local_out / folder / "episodes.csv").read_text()


def test_bad_backend_and_workers(tmp_path):
    runs = plan_grid(["CartPole-v1"], ["smac"], [0], tmp_path, TINY)
    with pytest.raises(ConfigError, match="unknown backend 'slurm'; allowed: local, ray"):
        run_grid(runs, "slurm", display=False)
    with pytest.raises(ConfigError, match="--workers 0 must be an integer >= 1"):
        run_grid(runs, "local", workers=0, display=False)


def _final_score_by_hand(episodes_csv: Path, total_steps: int, n_bins: int = 100, alpha: float = 0.1) -> float:
    """The protocol's final score (docs/method.md §4) with plain Python: bins of episode ends, then the EWM recursion."""
    width = total_steps / n_bins
    sums, counts = [0.0] * n_bins, [0] * n_bins
    with open(episodes_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(row["global_step"])
            b = min(n_bins - 1, max(0, math.ceil(step / width) - 1))
            sums[b] += float(row["return"])
            counts[b] += 1
    smoothed = None
    for s, c in zip(sums, counts):
        if c:
            smoothed = s / c if smoothed is None else alpha * (s / c) + (1 - alpha) * smoothed
    return smoothed


def test_report_of_the_grid_matches_a_hand_computation(local_grid, tmp_path):
    out, _ = local_grid
    report = write_report(out, tmp_path / "report", bootstrap_reps=200)
    table = pd.read_csv(tmp_path / "report" / "table.csv")
    assert table.shape == (4, 5)  # 2 envs × 2 algorithms; the failed env has no finished run
    assert set(zip(table["env_id"], table["label"])) == {(e, a) for e in ENVS for a in ALGOS}
    for row in table.itertuples():
        finals = [_final_score_by_hand(out / row.env_id / row.label / f"seed{s}" / "episodes.csv", 2000) for s in SEEDS]
        assert row.n == 2
        assert row.mean == pytest.approx(statistics.fmean(finals), rel=1e-9)
        assert row.std == pytest.approx(statistics.pstdev(finals), rel=1e-9, abs=1e-9)
    text = report.read_text()
    assert "| env | smac | ac-sgd |" in text and "natpg-test/NoSuchEnv-v0 smac seed 0" in text


def test_bench_and_ablation_commands(tmp_path):
    grid_dir = tmp_path / "bench"
    args = ["bench", "--envs", "CartPole-v1", "--algos", "smac", "--seeds", "0", "--steps", "1000", "--workers", "1",
            "--out", str(grid_dir), "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 finished, 0 skipped" in result.stdout and is_finished(grid_dir / "CartPole-v1" / "smac" / "seed0")
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "0 finished, 1 skipped" in result.stdout

    abl = tmp_path / "ablation"
    result = runner.invoke(app, ["ablation", "--envs", "CartPole-v1", "--seeds", "0", "--steps", "1000",
                                 "--batch-sizes", "1,1000", "--workers", "1", "--out", str(abl), "--quiet"])
    assert result.exit_code == 0, result.output
    cfg = json.loads((abl / "CartPole-v1" / "smac-B1" / "seed0" / "config.json").read_text())
    assert cfg["batch_size"] == 1 and cfg["algo"] == "smac"
    text = (abl / "report" / "report.md").read_text()
    assert "| env | smac-B1 | smac-B1000 |" in text
    wall = pd.read_csv(abl / "report" / "wallclock.csv")
    assert sorted(wall["label"]) == ["smac-B1", "smac-B1000"] and (wall["wall_mean_s"] > 0).all()
