"""A sweep survives runs that hang, are killed by the OS, or crash; the report names what is missing."""

from __future__ import annotations

import json

import pytest

from natpg.experiments.grid import Backend, plan_grid, run_grid
from natpg.experiments.report import write_report
from natpg.experiments.store import is_finished

pytestmark = pytest.mark.slow
TINY = {"total_steps": 3000, "checkpoint_every": 1}


def test_hung_and_killed_runs_are_failed_with_reasons_retried_and_never_block(tmp_path, monkeypatch):
    monkeypatch.setenv("NATPG_TEST_MARKER", str(tmp_path / "marker"))
    out = tmp_path / "grid"
    good = plan_grid(["CartPole-v1"], ["smac", "ac-sgd"], [0], out, TINY)
    hang = plan_grid(["grid_faults:natpg-test/Hang-v0"], ["smac"], [0], out, TINY)
    kill = plan_grid(["grid_faults:natpg-test/SigKill-v0"], ["smac"], [0], out, TINY)
    flaky = plan_grid(["grid_faults:natpg-test/SigKillOnce-v0"], ["smac"], [0], out, TINY)
    results = {}
    outcome = run_grid(hang + kill + flaky + good, Backend.LOCAL, workers=2, display=False, timeout_s=20,
                       retries=1, on_result=lambda run, res: results.setdefault(run.name, res))

    # the good runs and the run killed once (then resumed from its checkpoint) finish
    assert sorted(outcome.finished) == sorted([r.name for r in good] + [flaky[0].name])
    assert all(is_finished(r.run_dir) for r in good + flaky)
    flaky_iters = (flaky[0].run_dir / "iterations.csv").read_text().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in flaky_iters] == [1, 2, 3]  # resumed: no row lost or repeated

    # the hung run is killed on its time limit, the killed run is recognised, each after 2 attempts
    assert set(outcome.failed) == {hang[0].name, kill[0].name}
    assert "timed out after 20 s" in outcome.failed[hang[0].name]
    assert "killed by SIGKILL" in outcome.failed[kill[0].name]
    for run in hang + kill:
        err = json.loads((run.run_dir / "error.json").read_text())
        assert err["error"].startswith("RunFailure: ")

    # the report lists the failed runs instead of silently averaging over fewer seeds
    report = write_report(out, out / "report").read_text()
    assert "Hang-v0" in report and "SigKill-v0" in report and "failed" in report
