"""Each algorithm's own settings in grids, run labels and saved run folders (issue 12, item 3).

Runs written before the settings were split by algorithm recorded every algorithm's fields flat;
:func:`as_written_before` turns a run folder of today into one of those, so the tests check that
such folders still resume, report and count as finished at the asked config.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from natpg import make_config, resume, train
from natpg.checkpoint import checkpoint_path, load_checkpoint
from natpg.cli import app
from natpg.config import ConfigError, SavedConfigWarning
from natpg.experiments.grid import check_existing, plan_grid
from natpg.experiments.store import read_run, variant_label
from natpg.runfolder import finished_at, read_config

runner = CliRunner()

OTHER_ALGORITHMS_FIELDS = {"damping": 0.1, "rank": 8, "cg_damping": 0.1, "cg_iters": 10, "cg_max_kl": None,
                           "cg_line_search": False, "cg_backtrack_iters": 10}
"""The algorithm fields every config.json held before the split, at their defaults."""
STEP_SIZE_FIELDS = ("step_rule", "target_kl", "backtrack_iters", "backtrack_ratio")
"""Settings newer than the split (issue 15), absent from the files written then."""


def as_written_before(run_dir: Path, **changes) -> None:
    """Rewrite config.json, summary.json and the checkpoint's config as natpg wrote them before the split."""
    def old(config: dict) -> dict:
        today = {k: v for k, v in config.items() if k not in STEP_SIZE_FIELDS}
        return {**OTHER_ALGORITHMS_FIELDS, **today, **changes}

    path = run_dir / "config.json"
    path.write_text(json.dumps(old(json.loads(path.read_text()))))
    summary = run_dir / "summary.json"
    if summary.is_file():
        data = json.loads(summary.read_text())
        summary.write_text(json.dumps({**data, "config": old(data["config"])}))
    state = torch.load(checkpoint_path(run_dir), weights_only=False)
    torch.save({**state, "config": old(state["config"])}, checkpoint_path(run_dir))


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in csv.DictReader(fh)]


# ----------------------------------------------------------------------------- run labels

def labels(runs) -> list[str]:
    return [r.label for r in runs]


def test_a_woodbury_rank_sweep_gets_one_label_per_rank(tmp_path):
    runs = plan_grid(["CartPole-v1"], ["woodbury"], [0], tmp_path, variants=[{"rank": 4}, {"rank": 8}, {"rank": 16}])
    assert labels(runs) == ["woodbury-k4", "woodbury", "woodbury-k16"]  # 8 is the preset's rank


def test_a_damping_sweep_gets_one_label_per_damping(tmp_path):
    runs = plan_grid(["CartPole-v1"], ["smac", "woodbury"], [0], tmp_path,
                     variants=[{"damping": 0.1}, {"damping": 0.3}])
    assert labels(runs) == ["smac", "smac-damping=0.3", "woodbury", "woodbury-damping=0.3"]


def test_labels_compare_with_the_preset_of_the_env_and_algorithm(tmp_path):
    """Hopper's smac λ is 1.0, CartPole's 0.1: the same damping is a variant on one and the preset on the other."""
    runs = plan_grid(["CartPole-v1", "Hopper-v5"], ["smac"], [0], tmp_path, {"damping": 1.0})
    assert labels(runs) == ["smac-damping=1.0", "smac"]
    cg = plan_grid(["CartPole-v1"], ["ac-cg"], [0], tmp_path, variants=[{}, {"cg_iters": 20, "actor_lr": 0.5}])
    assert labels(cg) == ["ac-cg", "ac-cg-actor_lr=0.5-cg_iters=20"]


def test_a_batch_size_is_named_only_when_it_differs_from_the_algorithms_preset(tmp_path, monkeypatch):
    import natpg.experiments.store as store
    import natpg.presets as presets

    real = presets._load

    def with_sgd_batches(name):
        table = real(name)
        if name == "paper":
            cartpole = table["envs"]["CartPole"]
            table["envs"]["CartPole"] = {**cartpole, "ac-sgd": {**cartpole["ac-sgd"], "batch_size": 10}}
        return table

    monkeypatch.setattr(presets, "_load", with_sgd_batches)
    presets._table.cache_clear()
    store._preset_config_cached.cache_clear()
    try:
        runs = plan_grid(["CartPole-v1"], ["ac-sgd", "smac"], [0], tmp_path, {"batch_size": 10})
        assert labels(runs) == ["ac-sgd", "smac-B10"]
        assert labels(plan_grid(["CartPole-v1"], ["ac-sgd"], [0], tmp_path, {"batch_size": 20})) == ["ac-sgd-B20"]
    finally:
        presets._table.cache_clear()
        store._preset_config_cached.cache_clear()


def test_labels_of_the_ablation_and_schedule_variants_are_unchanged(tmp_path):
    """Folders of grids run before keep their names: B, E and k are named as they always were."""
    runs = plan_grid(["HalfCheetah-v5"], ["smac"], [0], tmp_path, variants=[{"batch_size": 1}, {"batch_size": 1000}])
    assert labels(runs) == ["smac-B1", "smac-B1000"]
    runs = plan_grid(["CartPole-v1"], ["ac-sgd", "woodbury"], [0], tmp_path, {"batch_size": 100, "actor_epochs": 2})
    assert labels(runs) == ["ac-sgd-B100-E2", "woodbury-B100-E2"]
    critic = plan_grid(["CartPole-v1"], ["smac"], [0], tmp_path, {"critic_epochs": 20, "total_steps": 2000})
    assert labels(critic) == ["smac"]  # the rest of the actor-critic is a grid-wide setting, not a variant


def test_a_grid_refuses_a_setting_an_algorithm_of_it_does_not_read(tmp_path):
    with pytest.raises(ConfigError, match=r"rank is a woodbury setting; algo=smac does not read it"):
        plan_grid(["CartPole-v1"], ["woodbury", "smac"], [0], tmp_path, {"rank": 32})
    result = runner.invoke(app, ["bench", "--out", str(tmp_path / "g"), "--envs", "CartPole-v1", "--algos", "ac-sgd",
                                 "--set", "damping=0.3"])
    assert result.exit_code == 2
    assert "damping is a smac and woodbury setting; algo=ac-sgd does not read it" in result.stderr
    assert not (tmp_path / "g").exists()


# ----------------------------------------------------------------------------- run folders written before the split

@pytest.fixture
def old_run(tmp_path):
    """A finished 2000-step smac run as natpg wrote it before the split."""
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 2000, "checkpoint_every": 1})
    train(cfg, tmp_path / "run")
    as_written_before(tmp_path / "run")
    return cfg, tmp_path / "run"


def test_an_old_run_folder_is_finished_at_the_same_config_asked_today(old_run):
    cfg, run_dir = old_run
    assert "rank" in json.loads((run_dir / "config.json").read_text())
    assert read_config(run_dir) == json.loads(json.dumps(cfg.to_dict()))
    assert finished_at(run_dir, cfg.to_dict())
    record = read_run(run_dir)
    assert record.label == "smac" and record.finished and "rank" not in record.config
    assert load_checkpoint(run_dir)["config"] == cfg.to_dict()


def test_an_old_grid_folder_is_skipped_by_the_same_grid_today(tmp_path):
    out = tmp_path / "grid"
    runs = plan_grid(["CartPole-v1"], ["woodbury"], [0], out, {"total_steps": 1000}, variants=[{"rank": 4}])
    train(make_config("CartPole-v1", "woodbury", 0, {"total_steps": 1000, "rank": 4}), runs[0].run_dir)
    as_written_before(runs[0].run_dir)
    check_existing(runs)  # no "holds another config"
    result = runner.invoke(app, ["bench", "--out", str(out), "--envs", "CartPole-v1", "--algos", "woodbury",
                                 "--seeds", "0", "--steps", "1000", "--set", "rank=4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "grid: 0 finished, 1 skipped (already finished)" in result.output, result.output


def test_an_old_run_resumes_bit_for_bit(old_run, tmp_path):
    cfg, run_dir = old_run
    resumed = resume(run_dir, total_steps=4000)
    whole = train(cfg.override(total_steps=4000), tmp_path / "whole")
    assert resumed.returns == whole.returns
    for name in ("iterations.csv", "episodes.csv"):
        assert rows(run_dir / name) == rows(tmp_path / "whole" / name), name
    assert json.loads((run_dir / "config.json").read_text()) == cfg.override(total_steps=4000).to_dict()


def test_an_old_run_is_reported_and_evaluated(old_run, tmp_path):
    _, run_dir = old_run
    result = runner.invoke(app, ["report", str(run_dir.parent), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "smac" in (tmp_path / "report" / "report.md").read_text()
    result = runner.invoke(app, ["eval", str(run_dir), "--episodes", "1"])
    assert result.exit_code == 0, result.output


def test_an_old_config_with_another_algorithms_field_away_from_its_default_drops_it_with_a_warning(old_run):
    cfg, run_dir = old_run
    as_written_before(run_dir, rank=32)  # e.g. `bench --algos smac,woodbury --set rank=32` before the split
    with pytest.warns(SavedConfigWarning, match=r"algo=smac sets rank=32, which that algorithm does not read"):
        assert read_config(run_dir) == json.loads(json.dumps(cfg.to_dict()))
    with pytest.warns(SavedConfigWarning):
        assert variant_label(json.loads((run_dir / "config.json").read_text())) == "smac"
