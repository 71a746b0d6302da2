"""The report: binning, smoothing and the aggregate on hand-made data, and a report of hand-made run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from natpg.cli import app
from natpg.config import ConfigError
from natpg.experiments.report import (bin_means, collect, ewm_smooth, first_step_at_or_above, interquartile_mean,
                                      minmax_normalise, parse_threshold, stratified_bootstrap_iqm, write_report)
from natpg.experiments.store import find_runs, run_folder

runner = CliRunner()


# --------------------------------------------------------------------------- binning and smoothing

def test_bins_hold_episodes_that_end_in_them():
    # total 100 steps, 4 bins of 25: (0,25], (25,50], (50,75], (75,100]
    steps = [1, 25, 26, 50, 99, 100, 130]
    values = [1.0, 3.0, 10.0, 20.0, 5.0, 7.0, 9.0]
    got = bin_means(steps, values, total_steps=100, n_bins=4)
    # step 25 is the last step of bin 0; 130 is past the budget and counts in the last bin
    np.testing.assert_array_equal(got, [2.0, 15.0, np.nan, 7.0])


def test_bins_with_uneven_width():
    got = bin_means([33, 34, 67, 68, 100], [1.0, 2.0, 3.0, 4.0, 5.0], total_steps=100, n_bins=3)
    # W = 33.3: 33 ≤ 33.3 → bin 0; 34 → bin 1; 67 > 66.7 → bin 2
    np.testing.assert_array_equal(got, [1.0, 2.0, 4.0])


def test_bins_reject_an_empty_axis():
    with pytest.raises(ConfigError):
        bin_means([1], [1.0], total_steps=0)


def test_ewm_follows_the_recursion():
    x = np.array([2.0, 4.0, 8.0, 0.0])
    y = [2.0]
    for v in x[1:]:
        y.append(0.1 * v + 0.9 * y[-1])
    np.testing.assert_allclose(ewm_smooth(x), y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(y, [2.0, 2.2, 2.78, 2.502])


def test_ewm_skips_empty_bins_and_keeps_leading_gaps():
    got = ewm_smooth([np.nan, np.nan, 10.0, np.nan, 20.0], alpha=0.5)
    np.testing.assert_array_equal(got[:2], [np.nan, np.nan])
    np.testing.assert_allclose(got[2:], [10.0, 10.0, 15.0])


def test_first_step_at_or_above():
    steps = np.array([10.0, 20.0, 30.0, 40.0])
    assert first_step_at_or_above(np.array([np.nan, 1.0, 3.0, 2.0]), steps, 3.0) == 30.0
    assert math.isnan(first_step_at_or_above(np.array([np.nan, 1.0, 2.0, 2.0]), steps, 3.0))


def test_parse_threshold():
    assert parse_threshold("Pendulum-v1=-350") == ("Pendulum-v1", -350.0)
    for bad in ("Pendulum-v1", "=3", "Pendulum-v1=high"):
        with pytest.raises(ConfigError, match="must be ENV_ID=NUMBER"):
            parse_threshold(bad)


# --------------------------------------------------------------------------- aggregate

def test_interquartile_mean_drops_a_quarter_at_each_end():
    x = np.array([100.0, -100.0, 1.0, 2.0, 3.0, 4.0, 50.0, -50.0])
    assert interquartile_mean(x) == pytest.approx(2.5)   # middle four: 1, 2, 3, 4
    assert interquartile_mean(np.array([1.0, 2.0, 9.0])) == pytest.approx(4.0)  # n < 4: plain mean


def test_minmax_normalise_is_per_env():
    df = pd.DataFrame({"env_id": ["a", "a", "a", "b", "b"], "final_score": [10.0, 20.0, 15.0, -5.0, -5.0]})
    np.testing.assert_allclose(minmax_normalise(df), [0.0, 1.0, 0.5, 0.0, 0.0])


def test_bootstrap_resamples_within_each_env():
    # Env A scores 0, env B scores 1, four seeds each. Resampling within each env always keeps four
    # zeros and four ones, so the IQM is 0.5 in every replicate; pooled resampling would not.
    point, lo, hi = stratified_bootstrap_iqm([np.zeros(4), np.ones(4)], reps=500, seed=3)
    assert (point, lo, hi) == (0.5, 0.5, 0.5)


def test_bootstrap_interval_is_repeatable_and_holds_the_point():
    rng = np.random.default_rng(0)
    scores = [rng.random(5), rng.random(5), rng.random(5)]
    a = stratified_bootstrap_iqm(scores, reps=1000, seed=1)
    assert a == stratified_bootstrap_iqm(scores, reps=1000, seed=1)
    point, lo, hi = a
    assert 0.0 <= lo < point < hi <= 1.0


# --------------------------------------------------------------------------- hand-made run folders

def _write_run(root: Path, env_id: str, algo: str, seed: int, episodes: list[tuple[int, float]],
               total_steps: int = 100, finished: bool = True, wall: float = 10.0) -> Path:
    path = run_folder(root, env_id, algo, seed)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"env_id": env_id, "algo": algo, "seed": seed,
                                                  "total_steps": total_steps, "batch_size": None, "n_steps": 50}))
    rows = "".join(f"{s},{r},{10},1\n" for s, r in episodes)
    (path / "episodes.csv").write_text("global_step,return,length,terminated\n" + rows)
    (path / "iterations.csv").write_text("iteration,global_step,rollout/mean_logprob\n1,50,-0.7\n2,100,-0.5\n")
    if finished:
        (path / "summary.json").write_text(json.dumps({"wall_time_s": wall, "steps_per_second": total_steps / wall,
                                                       "global_step": total_steps}))
    return path


@pytest.fixture
def hand_runs(tmp_path):
    """Two envs × two algorithms × two seeds, one bin per 50 steps (n_bins=2 in the checks)."""
    root = tmp_path / "grid"
    data = {
        ("EnvA-v0", "smac", 0): [(50, 1.0), (100, 5.0)], ("EnvA-v0", "smac", 1): [(50, 3.0), (100, 9.0)],
        ("EnvA-v0", "ac-sgd", 0): [(50, 0.0), (100, 2.0)], ("EnvA-v0", "ac-sgd", 1): [(50, 2.0), (100, 2.0)],
        ("EnvB-v0", "smac", 0): [(60, -10.0)], ("EnvB-v0", "smac", 1): [(60, -20.0)],
        ("EnvB-v0", "ac-sgd", 0): [(40, -4.0), (90, -2.0)], ("EnvB-v0", "ac-sgd", 1): [(99, -6.0)],
    }
    for (env, algo, seed), eps in data.items():
        _write_run(root, env, algo, seed, eps, wall=10.0 + seed)
    _write_run(root, "EnvB-v0", "smac", 2, [(50, 100.0)], finished=False)  # a run still going
    return root


def test_report_numbers_match_a_hand_computation(hand_runs):
    data = collect(find_runs(hand_runs), n_bins=2, bootstrap_reps=200)
    table = data.table.set_index(["env_id", "label"])
    # EnvA smac: seed 0 bins [1, 5] → smoothed last = 0.1·5 + 0.9·1 = 1.4; seed 1: 0.1·9 + 0.9·3 = 3.6
    assert table.loc[("EnvA-v0", "smac"), "mean"] == pytest.approx(2.5)
    assert table.loc[("EnvA-v0", "smac"), "std"] == pytest.approx(1.1)
    # EnvA ac-sgd: 0.1·2 + 0.9·0 = 0.2 and 2.0
    assert table.loc[("EnvA-v0", "ac-sgd"), "mean"] == pytest.approx(1.1)
    # EnvB smac: the episode ending at 60 is in bin 1, bin 0 empty → −10 and −20
    assert table.loc[("EnvB-v0", "smac"), "mean"] == pytest.approx(-15.0)
    assert table.loc[("EnvB-v0", "smac"), "n"] == 2  # the unfinished seed 2 is left out
    # EnvB ac-sgd: seed 0 bins [−4, −2] → −3.8; seed 1 bins [nan, −6] → −6
    assert table.loc[("EnvB-v0", "ac-sgd"), "mean"] == pytest.approx(-4.9)
    assert table.loc[("EnvB-v0", "ac-sgd"), "std"] == pytest.approx(1.1)
    runs = data.runs.set_index(["env_id", "label", "seed"])
    assert runs.loc[("EnvB-v0", "smac", 2), "status"] == "unfinished"
    logp = data.curves[(data.curves["env_id"] == "EnvA-v0") & (data.curves["label"] == "smac")
                       & (data.curves["seed"] == 0)]["logprob"].to_numpy()
    np.testing.assert_allclose(logp, [-0.7, 0.1 * -0.5 + 0.9 * -0.7])
    wall = data.wallclock.set_index(["env_id", "label"])
    assert wall.loc[("EnvA-v0", "smac"), "wall_mean_s"] == pytest.approx(10.5)
    assert wall.loc[("EnvA-v0", "smac"), "wall_total_s"] == pytest.approx(21.0)


def test_report_files_and_markdown(hand_runs, tmp_path):
    out = tmp_path / "report"
    path = write_report(hand_runs, out, thresholds={"EnvA-v0": 1.3}, bootstrap_reps=200)
    text = path.read_text()
    for name in ("returns_EnvA-v0", "returns_EnvB-v0", "logprob_EnvA-v0", "aggregate_iqm"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
        assert (out / "figures" / f"{name}.svg").is_file()
        assert f"(figures/{name}.png)" in text
    table = pd.read_csv(out / "table.csv")
    assert table.shape == (4, 5) and set(table["label"]) == {"smac", "ac-sgd"}
    # The paper table: one row per env, one column per algorithm, the best mean of each row in bold.
    assert "| env | smac | ac-sgd |" in text
    assert any(line.startswith("| EnvB-v0 |") and "**-4.9 ± 1.1**" in line for line in text.splitlines())
    # Thresholds: EnvA at 1.3 — on the 100-bin curves; both smac seeds and one ac-sgd seed get there.
    thr = pd.read_csv(out / "thresholds.csv").set_index(["env_id", "label"])
    assert thr.loc[("EnvA-v0", "smac"), "reached"] == 2 and thr.loc[("EnvA-v0", "ac-sgd"), "reached"] == 1
    assert "| EnvB-v0 | smac | 2/3 | 0, 1 | 2 | – | – |" in text  # inventory lists the unfinished seed
    agg = pd.read_csv(out / "aggregate.csv").set_index("label")
    assert agg.loc["smac", "n_runs"] == 4 and 0.0 <= agg.loc["smac", "ci_low"] <= agg.loc["smac", "iqm"]


def test_report_command(hand_runs, tmp_path):
    result = runner.invoke(app, ["report", str(hand_runs), "--out", str(tmp_path / "r"), "--threshold", "EnvA-v0=2"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.md").is_file()


@pytest.mark.parametrize("args,message", [
    (["report", "{tmp}"], "no natpg run folder"),
    (["report", "{tmp}/missing"], "is not a folder"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPoel-v1"], "unknown env id 'CartPoel-v1'; did you mean 'CartPole-v1'"),
    (["bench", "--out", "{tmp}/g", "--suite", "atari"], "unknown suite 'atari'; allowed: classic, mujoco, paper"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPole-v1", "--suite", "classic"], "give --envs or --suite, not both"),
    (["bench", "--out", "{tmp}/g"], "give --envs"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPole-v1", "--algos", "ppo"], "unknown algorithm 'ppo'"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPole-v1", "--seeds", "4-1"], "--seeds '4-1' is not a seed list"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPole-v1", "--backend", "slurm"], "unknown backend 'slurm'"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPole-v1", "--set", "dampng=1"], "did you mean 'damping'?"),
    (["bench", "--out", "{tmp}/g", "--envs", "CartPole-v1", "--backend", "ray", "--ray-address", "127.0.0.1:1"],
     "cannot connect to the Ray cluster at --ray-address '127.0.0.1:1'"),
    (["ablation", "--out", "{tmp}/g", "--batch-sizes", "1,7"], "batch_size (B) = 7 must divide n_steps (T) = 1000"),
])
def test_bad_experiment_input_gives_one_error_line(tmp_path, args, message):
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("natpg: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "g").exists()


def test_two_runs_of_one_env_algorithm_and_seed_with_other_settings_are_refused_in_one_line(tmp_path):
    root = tmp_path / "grid"
    first = _write_run(root / "a", "EnvA-v0", "smac", 0, [(50, 1.0), (100, 2.0)])
    second = _write_run(root / "b", "EnvA-v0", "smac", 0, [(50, 1.0), (100, 3.0)])
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "critic_epochs": 20}))
    result = runner.invoke(app, ["report", str(root)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "are both EnvA-v0 smac seed 0 but differ in critic_epochs (none)→20" in lines[0]
    assert str(first) in lines[0] and not (root / "report").exists()


def test_runs_of_two_preset_sets_are_reported_as_two_groups_named_by_their_set(tmp_path):
    root = tmp_path / "grid"
    _write_run(root / "paper", "EnvA-v0", "smac", 0, [(50, 1.0), (100, 2.0)])
    inferred = _write_run(root / "inferred", "EnvA-v0", "smac", 0, [(50, 1.0), (100, 7.0)])
    config = json.loads((inferred / "config.json").read_text())
    (inferred / "config.json").write_text(json.dumps({**config, "preset": "paper-inferred", "critic_epochs": 10,
                                                      "critic_batch_size": 100}))
    result = runner.invoke(app, ["report", str(root), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "r" / "runs.csv").set_index("label")
    # two bins each, smoothed with α = 0.1: the last bin's mean weighted 0.1, the first's 0.9
    assert table.loc["smac@paper", "final_score"] == pytest.approx(2.0 * 0.1 + 1.0 * 0.9)
    assert table.loc["smac@paper-inferred", "final_score"] == pytest.approx(7.0 * 0.1 + 1.0 * 0.9)


def test_curves_name_the_runs_they_leave_out_and_the_episode_cap(tmp_path, monkeypatch):
    import natpg.experiments.plots as plots

    seen = {}

    def keep(fig, out_base):
        ax = fig.axes[0]
        seen["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        seen["title"] = ax.get_title()
        return []

    monkeypatch.setattr(plots, "_save", keep)
    curves = pd.DataFrame({"env_id": "EnvA-v0", "label": "smac", "seed": [0, 0], "bin": [0, 1], "step": [50, 100],
                           "return": [1.0, 2.0], "logprob": [-1.0, -0.5]})
    plots.plot_group_curves(curves, "EnvA-v0", "return", "return", tmp_path / "x", ["smac", "ac-cg"],
                            missing={"smac": "1 failed", "ac-cg": "3 failed"}, note="episodes capped at 1,000 steps")
    assert seen["legend"] == ["smac (1 seed; 1 failed not shown)", "ac-cg (no finished run; 3 failed not shown)"]
    assert seen["title"] == "EnvA-v0\nepisodes capped at 1,000 steps"


def test_report_counts_the_runs_left_out_per_label(hand_runs):
    from natpg.experiments.report import _left_out

    data = collect(find_runs(hand_runs), n_bins=2, bootstrap_reps=10)
    assert _left_out(data.runs, "EnvB-v0") == {"smac": "1 unfinished"} and _left_out(data.runs, "EnvA-v0") == {}


def test_a_report_that_fails_part_way_writes_nothing_and_keeps_the_earlier_report(hand_runs, monkeypatch):
    """The figures come after the CSVs: a failure there must leave no CSV, no figure and no temporary folder."""
    import natpg.experiments.plots as plots

    first = runner.invoke(app, ["report", str(hand_runs)])
    assert first.exit_code == 0, first.output
    report = hand_runs / "report"
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    _write_run(hand_runs, "EnvC-v0", "smac", 0, [(50, 7.0), (100, 8.0)])  # the new report would add EnvC-v0

    def disk_full(curves, env_id, column, ylabel, out_base, *args, **kwargs):
        Path(f"{out_base}.png").write_bytes(b"half a figure")
        raise OSError(28, "No space left on device", f"{out_base}.png")

    monkeypatch.setattr(plots, "plot_group_curves", disk_full)
    result = runner.invoke(app, ["report", str(hand_runs)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("natpg: error: cannot write") and "No space left" in lines[0]
    after = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    assert after == before  # the earlier report, byte for byte; nothing of the failed one
    assert not [p for p in hand_runs.iterdir() if p.name.startswith(".report")]  # no temporary folder left


def test_a_refused_report_leaves_no_folder_behind(tmp_path):
    root = tmp_path / "grid"
    _write_run(root / "a", "EnvA-v0", "smac", 0, [(50, 1.0), (100, 2.0)])
    second = _write_run(root / "b", "EnvA-v0", "smac", 0, [(50, 1.0), (100, 3.0)])
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "gamma": 0.9}))
    out = tmp_path / "deep" / "report"
    result = runner.invoke(app, ["report", str(root), "--out", str(out)])
    assert result.exit_code == 2 and "differ in gamma" in result.stderr
    assert not (tmp_path / "deep").exists() and sorted(p.name for p in root.iterdir()) == ["a", "b"]
