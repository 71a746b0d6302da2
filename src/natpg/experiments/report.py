"""The paper's report, from run folders alone: table, learning curves, thresholds, aggregate, wall-clock.

The protocol (docs/method.md §4), for each run:

1. Cut the run's budget ``[0, total_steps]`` into ``N = 100`` equal bins; bin ``i`` holds the
   episodes that *end* at a global step ``s`` with ``i·W < s ≤ (i+1)·W``, ``W = total_steps / N``
   (an episode that ends past the budget, in the last iteration, counts in the last bin).
   The bin's value is the mean return of those episodes (empty bins are skipped by step 2).
2. Smooth with an exponentially weighted mean, α = 0.1:
   ``y_0 = x_0``, ``y_i = α x_i + (1 − α) y_{i−1}`` (an empty bin keeps ``y_{i−1}``).
3. The run's *final score* is its last smoothed bin, ``y_{N−1}``.

Across the seeds of one env × algorithm, curves are averaged bin by bin with a ±1 std band,
and the table shows final score mean ± std (population std, ``ddof = 0``) over seeds.
The mean log-probability of the actions taken (``rollout/mean_logprob``, one value per
iteration) goes through the same binning and smoothing.

Only finished runs (``summary.json`` written) enter the numbers; unfinished and failed runs
are listed in the report's run inventory.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from natpg.config import ConfigError
from natpg.experiments.store import RunRecord, check_unique, find_runs, label_preset_sets, path_safe, read_json
from natpg.runfolder import check_out_path
from natpg.runlog import SYSTEM_FILE

N_BINS = 100
EWM_ALPHA = 0.1
RETURN = "return"
LOGPROB = "rollout/mean_logprob"


# --------------------------------------------------------------------------- binning and smoothing

def bin_means(steps: Sequence[float], values: Sequence[float], total_steps: int, n_bins: int = N_BINS) -> np.ndarray:
    """Mean of ``values`` per bin of the step axis; NaN for a bin with no value.

    Bin ``i`` holds ``i·W < step ≤ (i+1)·W`` with ``W = total_steps / n_bins``; steps past
    ``total_steps`` go to the last bin, steps ≤ 0 to the first.

    Example:
        >>> bin_means([1, 2, 3, 10], [1.0, 3.0, 5.0, 7.0], total_steps=10, n_bins=2)
        array([3., 7.])
    """
    if total_steps < 1 or n_bins < 1:
        raise ConfigError(f"binning needs total_steps >= 1 and n_bins >= 1, got {total_steps} and {n_bins}")
    s = np.asarray(steps, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    idx = np.clip((s * n_bins - 1) // total_steps, 0, n_bins - 1)  # = ceil(s·N / total) − 1, exact in integers
    sums = np.bincount(idx, weights=v, minlength=n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def ewm_smooth(x: Sequence[float] | np.ndarray, alpha: float = EWM_ALPHA) -> np.ndarray:
    """Exponentially weighted mean: ``y_0 = x_0``, ``y_i = α x_i + (1 − α) y_{i−1}``.

    NaN inputs (empty bins) are skipped: ``y_i = y_{i−1}``; leading NaNs stay NaN.

    Example:
        >>> ewm_smooth([0.0, 10.0, float("nan"), 10.0], alpha=0.5)
        array([0. , 5. , 5. , 7.5])
    """
    series = pd.Series(np.asarray(x, dtype=np.float64))
    return series.ewm(alpha=alpha, adjust=False, ignore_na=True).mean().ffill().to_numpy()


def bin_ends(total_steps: int, n_bins: int = N_BINS) -> np.ndarray:
    """The step at the right edge of each bin (the x-axis of the curves)."""
    return np.arange(1, n_bins + 1) * (total_steps / n_bins)


def run_curve(run: RunRecord, metric: str = RETURN, n_bins: int = N_BINS, alpha: float = EWM_ALPHA) -> np.ndarray:
    """The smoothed, binned curve of one run: episode ``return`` or an iterations.csv column."""
    df = run.episodes() if metric == RETURN else run.iterations()
    if df.empty or metric not in df:
        return np.full(n_bins, np.nan)
    return ewm_smooth(bin_means(df["global_step"], df[metric], run.total_steps, n_bins), alpha)


# --------------------------------------------------------------------------- per-run and per-group numbers

@dataclass
class ReportData:
    """Everything the report shows, as tables (also written as CSV)."""

    runs: pd.DataFrame      #: one row per run folder: env_id, label, seed, status, final score, wall-clock, …
    curves: pd.DataFrame    #: long: env_id, label, seed, bin, step, return, logprob (smoothed)
    table: pd.DataFrame     #: env_id × label: n, mean, std of the final score
    thresholds: pd.DataFrame  #: env_id × label: threshold, reached, n, mean, std of the steps to reach it
    aggregate: pd.DataFrame   #: label: IQM of min-max normalised final scores and its 95% CI
    wallclock: pd.DataFrame   #: env_id × label: mean/std wall-clock and steps/s


def first_step_at_or_above(curve: np.ndarray, steps: np.ndarray, threshold: float) -> float:
    """The step (bin end) where ``curve`` first reaches ``threshold``; NaN if it never does.

    Example:
        >>> first_step_at_or_above(np.array([1.0, 5.0, 9.0]), np.array([10, 20, 30]), 5.0)
        20.0
    """
    hit = np.flatnonzero(np.nan_to_num(curve, nan=-np.inf) >= threshold)
    return float(steps[hit[0]]) if hit.size else float("nan")


def default_thresholds() -> dict[str, float]:
    """Return thresholds per env id, from ``thresholds.toml`` (data, with the reason for each)."""
    with resources.files(__package__).joinpath("thresholds.toml").open("rb") as fh:
        return {k: float(v) for k, v in tomllib.load(fh)["thresholds"].items()}


def parse_threshold(text: str) -> tuple[str, float]:
    """``"CartPole-v1=450"`` → ``("CartPole-v1", 450.0)``."""
    env, sep, value = text.partition("=")
    try:
        if not sep or not env.strip():
            raise ValueError
        return env.strip(), float(value)
    except ValueError:
        raise ConfigError(f"--threshold {text!r} must be ENV_ID=NUMBER, e.g. CartPole-v1=475") from None


def collect(runs: Iterable[RunRecord], thresholds: Mapping[str, float] | None = None, n_bins: int = N_BINS,
            bootstrap_reps: int = 2000, seed: int = 0) -> ReportData:
    """Compute every number of the report from run records (see the module docstring)."""
    thr = {**default_thresholds(), **dict(thresholds or {})}
    run_rows, curve_rows = [], []
    for run in runs:
        row = {"env_id": run.env_id, "label": run.label, "seed": run.seed, "status": run.status,
               "total_steps": run.total_steps, "path": str(run.path), "error": run.error}
        if run.finished and run.summary is not None:
            ret = run_curve(run, RETURN, n_bins)
            logp = run_curve(run, LOGPROB, n_bins)
            steps = bin_ends(run.total_steps, n_bins)
            row.update(final_score=ret[-1], steps_to_threshold=first_step_at_or_above(ret, steps, thr.get(run.env_id, math.inf)),
                       threshold=thr.get(run.env_id, math.nan), wall_time_s=run.summary.get("wall_time_s"),
                       steps_per_second=run.summary.get("steps_per_second"), global_step=run.summary.get("global_step"))
            curve_rows.append(pd.DataFrame({"env_id": run.env_id, "label": run.label, "seed": run.seed,
                                            "bin": np.arange(n_bins), "step": steps, "return": ret, "logprob": logp}))
        run_rows.append(row)
    runs_df = pd.DataFrame(run_rows)
    for col in ("final_score", "steps_to_threshold", "threshold", "wall_time_s", "steps_per_second", "global_step"):
        if col not in runs_df:
            runs_df[col] = np.nan
    curves = pd.concat(curve_rows, ignore_index=True) if curve_rows else pd.DataFrame(
        columns=["env_id", "label", "seed", "bin", "step", "return", "logprob"])
    done = runs_df[runs_df["status"] == "finished"]
    return ReportData(runs=runs_df, curves=curves, table=score_table(done), thresholds=threshold_table(done),
                      aggregate=aggregate_iqm(done, bootstrap_reps, seed), wallclock=wallclock_table(done))


def _mean_std(group: pd.Series) -> pd.Series:
    v = group.to_numpy(dtype=float)
    return pd.Series({"n": len(v), "mean": float(np.mean(v)), "std": float(np.std(v))})


def score_table(finished: pd.DataFrame) -> pd.DataFrame:
    """Final score per env × label: number of seeds, mean and (population) std over seeds."""
    if finished.empty:
        return pd.DataFrame(columns=["env_id", "label", "n", "mean", "std"])
    out = finished.groupby(["env_id", "label"], sort=False)["final_score"].apply(_mean_std).unstack().reset_index()
    out["n"] = out["n"].astype(int)
    return out


def threshold_table(finished: pd.DataFrame) -> pd.DataFrame:
    """Steps to first reach the env's threshold per env × label, over the seeds that reached it."""
    rows = []
    for (env, label), g in finished.groupby(["env_id", "label"], sort=False):
        hit = g["steps_to_threshold"].dropna().to_numpy(dtype=float)
        rows.append({"env_id": env, "label": label, "threshold": g["threshold"].iloc[0], "reached": len(hit),
                     "n": len(g), "mean": float(np.mean(hit)) if hit.size else np.nan,
                     "std": float(np.std(hit)) if hit.size else np.nan})
    return pd.DataFrame(rows, columns=["env_id", "label", "threshold", "reached", "n", "mean", "std"])


def wallclock_table(finished: pd.DataFrame) -> pd.DataFrame:
    """Wall-clock seconds and steps/s per env × label (mean and std over seeds), and the total."""
    if finished.empty:
        return pd.DataFrame(columns=["env_id", "label", "n", "wall_mean_s", "wall_std_s", "wall_total_s", "steps_per_s"])
    g = finished.groupby(["env_id", "label"], sort=False)
    return pd.DataFrame({
        "n": g.size(), "wall_mean_s": g["wall_time_s"].mean(), "wall_std_s": g["wall_time_s"].std(ddof=0),
        "wall_total_s": g["wall_time_s"].sum(), "steps_per_s": g["steps_per_second"].mean(),
    }).reset_index()


# --------------------------------------------------------------------------- rliable-style aggregate

def interquartile_mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean of the middle 50%: sort, drop ``⌊n/4⌋`` values at each end, average the rest.

    Example:
        >>> float(interquartile_mean(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -50.0, 1.5, 2.5])))
        1.75
    """
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def minmax_normalise(finished: pd.DataFrame) -> pd.Series:
    """Final scores scaled per env to [0, 1] by the lowest and highest final score of any run on it.

    ``(score − min_env) / (max_env − min_env)``; an env whose runs all score the same maps to 0.
    """
    by_env = finished.groupby("env_id")["final_score"]
    lo, hi = by_env.transform("min"), by_env.transform("max")
    span = (hi - lo).where(hi > lo, np.inf)
    return (finished["final_score"] - lo) / span


def stratified_bootstrap_iqm(scores: Sequence[np.ndarray], reps: int = 2000, seed: int = 0,
                             level: float = 0.95) -> tuple[float, float, float]:
    """IQM of the pooled runs, and a percentile bootstrap CI that resamples runs within each env.

    Args:
        scores: one array per env (task) of normalised scores, one value per seed.
        reps: bootstrap replicates.
        seed: seed of the resampling generator (the CI is repeatable).
        level: confidence level of the interval.

    Returns:
        ``(iqm, low, high)``.
    """
    scores = [np.asarray(s, dtype=np.float64) for s in scores if len(s)]
    if not scores:
        return (math.nan, math.nan, math.nan)
    point = float(interquartile_mean(np.concatenate(scores)))
    rng = np.random.default_rng(seed)
    resampled = np.concatenate([s[rng.integers(0, len(s), size=(reps, len(s)))] for s in scores], axis=1)
    stats = interquartile_mean(resampled, axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return point, float(low), float(high)


def aggregate_iqm(finished: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per label: IQM of min-max normalised final scores over all its runs, with a stratified bootstrap 95% CI."""
    cols = ["label", "n_runs", "n_envs", "iqm", "ci_low", "ci_high"]
    if finished.empty:
        return pd.DataFrame(columns=cols)
    df = finished.assign(normalised=minmax_normalise(finished))
    rows = []
    for label, g in df.groupby("label", sort=False):
        per_env = [e["normalised"].to_numpy() for _, e in g.groupby("env_id", sort=False)]
        iqm, lo, hi = stratified_bootstrap_iqm(per_env, reps, seed)
        rows.append({"label": label, "n_runs": len(g), "n_envs": len(per_env), "iqm": iqm, "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- writing the report

_LABEL_ORDER = ("smac", "ac-sgd", "ac-adam", "ac-cg", "woodbury")


def _label_key(label: str) -> tuple:
    base, _, batch = label.partition("-B")
    algo = label if label in _LABEL_ORDER else base
    pos = _LABEL_ORDER.index(algo) if algo in _LABEL_ORDER else len(_LABEL_ORDER)
    return (pos, algo, int(batch) if batch.isdigit() else -1, label)


def _env_key(env_id: str) -> tuple:
    from natpg.experiments.grid import SUITE_ENVS, Suite

    order = SUITE_ENVS[Suite.PAPER]
    return (order.index(env_id) if env_id in order else len(order), env_id)


def ordered(values: Iterable[str], key) -> list[str]:
    """Distinct values in a stable, meaningful order (paper order for envs and algorithms)."""
    return sorted(dict.fromkeys(values), key=key)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table; first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(x: float, digits: int = 1) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:,.{digits}f}"


def _steps(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:,.0f}"


def paper_table(table: pd.DataFrame, envs: list[str], labels: list[str]) -> tuple[list[str], list[list[str]]]:
    """Env × label cells ``mean ± std`` (``(n=k)`` when not all seeds finished); the best mean per row in bold."""
    n_max = int(table["n"].max()) if len(table) else 0
    rows = []
    for env in envs:
        sub = table[table["env_id"] == env].set_index("label")
        best = sub["mean"].idxmax() if len(sub) and sub["mean"].notna().any() else None
        cells = [env]
        for label in labels:
            if label not in sub.index:
                cells.append("–")
                continue
            r = sub.loc[label]
            text = f"{_num(r['mean'])} ± {_num(r['std'])}"
            text = f"**{text}**" if label == best else text
            cells.append(text + (f" (n={int(r['n'])})" if int(r["n"]) < n_max else ""))
        rows.append(cells)
    return ["env"] + labels, rows


def inventory(runs: pd.DataFrame, envs: list[str], labels: list[str]) -> tuple[list[str], list[list[str]]]:
    """Per env × label: the finished seeds, the unfinished/failed ones, and the missing ones.

    The expected seeds are all seeds seen anywhere in the folder, for every env × label seen.
    """
    seeds = sorted(runs["seed"].unique().tolist())
    rows = []
    for env in envs:
        for label in labels:
            sub = runs[(runs["env_id"] == env) & (runs["label"] == label)]
            by = {s: set(sub.loc[sub["status"] == s, "seed"]) for s in ("finished", "unfinished", "failed")}
            missing = [s for s in seeds if s not in set(sub["seed"])]
            fmt = lambda xs: ", ".join(str(x) for x in sorted(xs)) or "–"  # noqa: E731
            rows.append([env, label, f"{len(by['finished'])}/{len(seeds)}", fmt(by["finished"]),
                         fmt(by["unfinished"]), fmt(by["failed"]), fmt(missing)])
    return ["env", "algorithm", "complete", "finished seeds", "unfinished (running or stopped)", "failed",
            "missing"], rows


def machine_line(runs: Sequence[RunRecord]) -> str:
    """The machines the runs were made on, from their ``system.json`` files."""
    seen: dict[str, int] = {}
    for run in runs:
        rec = read_json(run.path / SYSTEM_FILE)
        if rec:
            key = (f"Python {rec.get('python')}, torch {rec.get('torch')}, Gymnasium {rec.get('gymnasium')}, "
                   f"{rec.get('cpu_count')} CPU cores, {rec.get('torch_threads')} torch thread(s), {rec.get('platform')}")
            seen[key] = seen.get(key, 0) + 1
    if not seen:
        return "Machine: not recorded."
    return "Machine (from the runs' `system.json`): " + "; ".join(f"{k} ({n} runs)" for k, n in seen.items()) + "."


def _left_out(runs: pd.DataFrame, env_id: str) -> dict[str, str]:
    """Per label, the runs of ``env_id`` that are not in its curves: ``"1 failed, 2 unfinished"``."""
    out: dict[str, str] = {}
    for label, grp in runs[(runs["env_id"] == env_id) & (runs["status"] != "finished")].groupby("label"):
        counts = grp["status"].value_counts()
        out[str(label)] = ", ".join(f"{counts[s]} {s}" for s in ("failed", "unfinished") if s in counts)
    return out


def _cap_note(runs: Sequence[RunRecord], env_id: str) -> str:
    """``"episodes capped at 1000 steps"`` when the runs of ``env_id`` share one cap."""
    from natpg.experiments.plots import cap_note

    caps = {r.config.get("max_episode_steps") for r in runs if r.env_id == env_id}
    return cap_note(caps.pop()) if len(caps) == 1 else ""


def write_report(root: str | Path, out: str | Path | None = None, thresholds: Mapping[str, float] | None = None,
                 title: str = "natpg results", bootstrap_reps: int = 2000, notes: str = "") -> Path:
    """Read every run folder under ``root`` and write the report into ``out`` (default ``root/report``).

    Writes ``report.md`` (reads well on GitHub), CSVs (``table.csv``, ``runs.csv``, ``curves.csv``,
    ``thresholds.csv``, ``aggregate.csv``, ``wallclock.csv``) and figures (PNG and SVG) of the learning
    curves, the log-probability curves and the aggregate. Returns the path of ``report.md``.

    Nothing is written into ``out`` until the whole report is: it is made in a temporary folder beside
    ``out``, then each file is moved into place (``os.replace``), so a failure part-way leaves ``out``
    as it was (an earlier report in it stays whole) and removes the temporary folder.

    Raises:
        ConfigError: ``root`` holds no run folder, or two runs of one env, algorithm and seed differ in a
            setting their label does not name.
    """
    root = Path(root)
    runs = label_preset_sets(find_runs(root))
    check_unique(runs)
    out = Path(out) if out is not None else root / "report"
    check_out_path(out)
    data = collect(runs, thresholds, bootstrap_reps=bootstrap_reps)  # reads every file first: a damaged one
    out.parent.mkdir(parents=True, exist_ok=True)                     # stops the report before it writes
    scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        _write_files(data, runs, root, scratch, title, bootstrap_reps, notes)
        written = sorted(f for f in scratch.rglob("*") if f.is_file())
        out.mkdir(exist_ok=True)
        for f in written:
            target = out / f.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out / "report.md"


def _write_files(data: ReportData, runs: Sequence[RunRecord], root: Path, out: Path, title: str,
                 bootstrap_reps: int, notes: str) -> None:
    """Write the report's files into ``out`` (an empty folder; :func:`write_report` moves them into place)."""
    from natpg.experiments.plots import plot_aggregate, plot_group_curves

    (out / "figures").mkdir(parents=True, exist_ok=True)
    envs = ordered(data.runs["env_id"], _env_key)
    labels = ordered(data.runs["label"], _label_key)
    fin_envs = [e for e in envs if e in set(data.table["env_id"])]

    # CSVs
    data.table.to_csv(out / "table.csv", index=False)
    data.runs.drop(columns=["path"]).to_csv(out / "runs.csv", index=False)
    data.curves.to_csv(out / "curves.csv", index=False)
    data.thresholds.to_csv(out / "thresholds.csv", index=False)
    data.aggregate.to_csv(out / "aggregate.csv", index=False)
    data.wallclock.to_csv(out / "wallclock.csv", index=False)

    md = [f"# {title}", ""]
    if notes:
        md += [notes.strip(), ""]
    n_fin = int((data.runs["status"] == "finished").sum())
    md += [f"Made by `natpg report {root}` from {len(data.runs)} run folders ({n_fin} finished). "
           f"Only finished runs enter the numbers. Protocol: each run's budget is cut into {N_BINS} equal bins of "
           f"environment steps; a bin's value is the mean return of the episodes that end in it; bins are smoothed "
           f"with an exponentially weighted mean (α = {EWM_ALPHA}). Final score = the last smoothed bin. "
           f"± is the standard deviation over seeds (ddof = 0).", ""]

    md += [machine_line(runs), ""]

    md += ["## Final score", "", "Mean ± std over seeds of the final score; the best mean per row in **bold**. "
           "CSV: [table.csv](table.csv), per run: [runs.csv](runs.csv).", ""]
    md += [markdown_table(*paper_table(data.table, fin_envs, labels)), ""]

    figures = [
        ("Learning curves", "Mean over seeds of the smoothed binned returns, ±1 std band (PNG; SVG beside it). "
         "Data: [curves.csv](curves.csv).", "return", "episode return", "returns"),
        ("Mean log-probability of the actions taken", "`rollout/mean_logprob` per iteration, binned and smoothed "
         "like the returns.", "logprob", "mean log π(a|s) of actions taken", "logprob"),
    ]
    for heading, caption, column, ylabel, prefix in figures:
        md += [f"## {heading}", "", caption, ""]
        for env in fin_envs:
            base = out / "figures" / f"{prefix}_{path_safe(env)}"
            plot_group_curves(data.curves, env, column, ylabel, base, labels, missing=_left_out(data.runs, env),
                              note=_cap_note(runs, env))
            md += [f"![{prefix} on {env}](figures/{base.name}.png)", ""]

    md += ["## Steps to first reach a return threshold", "", "First bin end at which the smoothed curve reaches "
           "the threshold; mean ± std over the seeds that reached it, and how many did. Thresholds: "
           "`src/natpg/experiments/thresholds.toml`, override with `--threshold ENV=VALUE`. "
           "CSV: [thresholds.csv](thresholds.csv).", ""]
    thr_rows = []
    for env in fin_envs:
        sub = data.thresholds[data.thresholds["env_id"] == env].set_index("label")
        cells = [env, _num(sub["threshold"].iloc[0]) if len(sub) else "–"]
        for label in labels:
            if label in sub.index:
                r = sub.loc[label]
                spread = f"{_steps(r['mean'])} ± {_steps(r['std'])} " if int(r["reached"]) else "never "
                cells.append(f"{spread}({int(r['reached'])}/{int(r['n'])} reached)")
            else:
                cells.append("–")
        thr_rows.append(cells)
    md += [markdown_table(["env", "threshold"] + labels, thr_rows), ""]

    md += ["## Aggregate across environments", "", "In the style of rliable (Agarwal et al., 2021): each env's "
           "final scores are min-max normalised by the lowest and highest final score of any run on that env; "
           "the interquartile mean (IQM, the mean of the middle 50%) of each algorithm's normalised runs over "
           f"all envs, with a 95% stratified bootstrap confidence interval ({bootstrap_reps} resamples of the seeds "
           "within each env, percentile interval). CSV: [aggregate.csv](aggregate.csv).", ""]
    agg = data.aggregate.set_index("label").reindex([lb for lb in labels if lb in set(data.aggregate["label"])])
    md += [markdown_table(["algorithm", "runs", "envs", "IQM", "95% CI"],
                          [[lb, int(r["n_runs"]), int(r["n_envs"]), _num(r["iqm"], 3),
                            f"[{_num(r['ci_low'], 3)}, {_num(r['ci_high'], 3)}]"] for lb, r in agg.iterrows()]), ""]
    if len(agg):
        plot_aggregate(agg.reset_index(), out / "figures" / "aggregate_iqm")
        md += ["![aggregate IQM](figures/aggregate_iqm.png)", ""]

    md += ["## Wall-clock", "", "Seconds per run (mean ± std over seeds), the total over seeds, and steps/s "
           "(each run on one torch thread). Per run: [runs.csv](runs.csv); CSV: [wallclock.csv](wallclock.csv).", ""]
    wc = data.wallclock
    md += [markdown_table(["env", "algorithm", "runs", "s per run", "total s", "steps/s"],
                          [[r.env_id, r.label, int(r.n), f"{_num(r.wall_mean_s)} ± {_num(r.wall_std_s)}",
                            _num(r.wall_total_s, 0), _num(r.steps_per_s, 0)]
                           for r in wc.sort_values(["env_id", "label"], key=lambda c: c.map(
                               _env_key if c.name == "env_id" else _label_key)).itertuples()]), ""]
    per_algo = data.runs[data.runs["status"] == "finished"].groupby("label")["wall_time_s"].agg(["count", "mean", "sum"])
    md += ["Per algorithm over all envs:", "",
           markdown_table(["algorithm", "runs", "mean s per run", "total s"],
                          [[lb, int(per_algo.loc[lb, "count"]), _num(per_algo.loc[lb, "mean"]),
                            _num(per_algo.loc[lb, "sum"], 0)] for lb in labels if lb in per_algo.index]), ""]

    md += ["## Runs", "", "Which runs are complete. Expected seeds: every seed seen in the folder.", ""]
    md += [markdown_table(*inventory(data.runs, envs, labels)), ""]
    failed = data.runs[data.runs["status"] == "failed"]
    if len(failed):
        md += ["Failed runs (`error.json` in the run folder holds the traceback):", ""]
        md += [f"- {r.env_id} {r.label} seed {r.seed}: `{r.error}`" for r in failed.itertuples()] + [""]
    (out / "report.md").write_text("\n".join(md))
