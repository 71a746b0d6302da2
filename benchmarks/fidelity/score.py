"""Score each reading of the paper's unstated details by its agreement with the paper's classic-control figures.

Usage:
    python benchmarks/fidelity/score.py STUDY_ROOT OUT_DIR

STUDY_ROOT holds one grid folder per reading (as written by benchmarks/fidelity/run.sh). Writes
OUT_DIR/cells.csv (reading × task × algorithm), OUT_DIR/scores.csv (one row per reading, best first),
OUT_DIR/screening.md and OUT_DIR/scores.png, and OUT_DIR/runs.csv (one row per run: final score and steps to the threshold),
which a later call merges with the run folders it finds, so runs finished on another machine still count.

The score was fixed before any run was looked at (lower is better, 0 = perfect agreement):

* final-score distance D: the mean over the 12 (task, algorithm) cells of
  ``min(1, |F − P| / R)``, where F is our mean final score over seeds, P the paper's (Table 1) and
  R the task's range, ``|best paper score on the task − random policy's score|``;
* order distance O: on CartPole-v1 (threshold 750) and Acrobot-v1 (threshold −400), the fraction of
  the 6 algorithm pairs whose order of first passing the threshold (mean steps over seeds; never = last,
  ties between two "never" count one half) disagrees with the paper's text, averaged over the two tasks;
* score = D + O / 2.

A run that diverged (stopped by the guards after repeated non-finite updates) gives its cell the
maximum distance 1, and counts as never passing the threshold.
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from natpg.experiments.report import collect, markdown_table  # noqa: E402
from natpg.experiments.store import find_runs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import random_return  # noqa: E402

ALGOS = ["smac", "ac-sgd", "ac-adam", "ac-cg"]
#: Table 1 of the paper: (mean, std) of the final score over 5 seeds.
PAPER = {
    "CartPole-v1": {"ac-sgd": (962.3, 49.0), "ac-adam": (989.5, 0.3), "ac-cg": (977.9, 0.0), "smac": (973.4, 29.8)},
    "Acrobot-v1": {"ac-sgd": (-86.2, 5.0), "ac-adam": (-88.4, 3.8), "ac-cg": (-93.3, 20.3), "smac": (-94.1, 6.3)},
    "Pendulum-v1": {"ac-sgd": (-2116, 564), "ac-adam": (-5731, 150), "ac-cg": (-190, 18), "smac": (-2226, 859)},
}
#: The paper's text: first-passing order (SMAC first; the others need x% more steps).
ORDER = {
    "CartPole-v1": (750.0, ["smac", "ac-cg", "ac-adam", "ac-sgd"]),   # AC-CG +10%, AC-Adam +28%, AC-SGD +62%
    "Acrobot-v1": (-400.0, ["smac", "ac-sgd", "ac-cg", "ac-adam"]),   # AC-SGD +35%, AC-CG +50%, AC-Adam +70%
}



def algo_of(label: str) -> str:
    """The algorithm in a run label such as ``ac-sgd-B100``."""
    return next(a for a in ALGOS if label == a or label.startswith(a + "-"))


def pair_disagreement(ours: dict[str, float], paper_order: list[str]) -> float:
    """Fraction of algorithm pairs ordered differently from ``paper_order`` (NaN = never; two NaNs tie)."""
    bad = 0.0
    pairs = list(itertools.combinations(paper_order, 2))  # (earlier, later) in the paper
    for first, second in pairs:
        a, b = ours.get(first, math.nan), ours.get(second, math.nan)
        a = math.inf if math.isnan(a) else a
        b = math.inf if math.isnan(b) else b
        bad += 0.5 if a == b else float(a > b)
    return bad / len(pairs)


RUN_COLUMNS = ["reading", "env_id", "label", "algo", "seed", "status", "final_score", "steps_to_threshold"]


def per_run_table(root: Path, previous: Path, thresholds: dict[str, float]) -> pd.DataFrame:
    """One row per run: the run folders under ``root`` (one grid folder per reading), plus the rows of an
    earlier ``runs.csv`` for runs whose folders are not on this machine (so a study resumed elsewhere keeps
    the seeds it finished before). A folder on disk wins over an old row of the same run."""
    frames = []
    if root.is_dir():
        for reading_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            data = collect(find_runs(reading_dir), thresholds=thresholds, bootstrap_reps=10)
            runs = data.runs.copy()
            runs["reading"] = reading_dir.name
            runs["algo"] = runs["label"].map(algo_of)
            frames.append(runs[RUN_COLUMNS])
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_COLUMNS)
    if previous.is_file():
        old = pd.read_csv(previous)
        key = ["reading", "env_id", "label", "seed"]
        on_disk = set(map(tuple, table[key].itertuples(index=False, name=None)))
        keep = old[[tuple(r) not in on_disk for r in old[key].itertuples(index=False, name=None)]]
        table = pd.concat([table, keep[RUN_COLUMNS]], ignore_index=True)
    return table.sort_values(["reading", "env_id", "label", "seed"], ignore_index=True)


def score_reading(all_runs: pd.DataFrame, ranges: dict[str, float]) -> tuple[float, float, list[dict]]:
    """D, O and the per-cell rows of one reading's runs (rows of ``runs.csv``)."""
    failed = all_runs[all_runs["status"] == "failed"]
    runs = all_runs[all_runs["status"] == "finished"]
    dists, orders, cells = [], [], []
    for env in PAPER:
        passing: dict[str, float] = {}
        for algo in ALGOS:
            sel = runs[(runs.env_id == env) & (runs.algo == algo)]
            n_failed = int(((failed.env_id == env) & (failed.algo == algo)).sum())
            if sel.empty and not n_failed:
                continue
            f = float(sel.final_score.mean()) if not sel.empty else math.nan
            p_mean, p_std = PAPER[env][algo]
            # a run that diverged (stopped by the guards) is the method failing: the cell's maximum distance
            d = 1.0 if n_failed else min(1.0, abs(f - p_mean) / ranges[env])
            steps = sel.steps_to_threshold.to_numpy(float)
            reached = int(np.isfinite(steps).sum())
            n_runs = len(sel) + n_failed
            passing[algo] = float(np.nanmean(steps)) if reached == n_runs else math.nan
            dists.append(d)
            cells.append({"env_id": env, "algo": algo, "n": n_runs, "failed": n_failed,
                          "final_mean": f, "final_std": float(sel.final_score.std(ddof=0)) if len(sel) else math.nan,
                          "paper_mean": p_mean, "paper_std": p_std, "distance": d,
                          "within_paper_spread": abs(f - p_mean) <= max(2 * p_std, 0.05 * ranges[env]),
                          "steps_to_threshold": passing[algo], "reached": f"{reached}/{n_runs}"})
        if env in ORDER and len(passing) == len(ALGOS):
            orders.append(pair_disagreement(passing, ORDER[env][1]))
    d_mean = float(np.mean(dists)) if dists else math.nan
    o_mean = float(np.mean(orders)) if orders else math.nan
    return d_mean, o_mean, cells


def bootstrap_score(all_runs: pd.DataFrame, ranges: dict[str, float], reps: int = 2000,
                    seed: int = 0) -> tuple[float, float]:
    """95% interval of a reading's score over its seeds: each replicate redraws the seeds with replacement
    (one draw for all 12 cells, so a seed's runs stay together) and scores the redrawn runs.

    Not part of the score: it says how far two readings' scores can be told apart with this many seeds.
    """
    seeds = np.sort(all_runs["seed"].unique())
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(reps):
        draw = rng.choice(seeds, size=len(seeds), replace=True)
        sample = pd.concat([all_runs[all_runs["seed"] == s] for s in draw], ignore_index=True)
        d, o, _ = score_reading(sample, ranges)
        values.append(d + o / 2)
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def main(root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    randoms = {env: random_return(env) for env in PAPER}
    ranges = {env: abs(max(m for m, _ in PAPER[env].values()) - randoms[env]) for env in PAPER}
    thresholds = {env: thr for env, (thr, _) in ORDER.items()}
    per_run = per_run_table(root, out / "runs.csv", thresholds)
    per_run.to_csv(out / "runs.csv", index=False)
    cells, scores = [], []
    for reading, all_runs in per_run.groupby("reading", sort=True):
        if not all_runs["status"].isin(["finished", "failed"]).any():
            continue
        d_mean, o_mean, reading_cells = score_reading(all_runs, ranges)
        for cell in reading_cells:
            cells.append({"reading": reading, **cell})
        lo, hi = bootstrap_score(all_runs, ranges)
        n_failed = int((all_runs["status"] == "failed").sum())
        n_runs = int(all_runs["status"].isin(["finished", "failed"]).sum())
        scores.append({"reading": reading, "cells": len(reading_cells), "runs": n_runs,
                       "failed": n_failed, "D": d_mean,
                       "O": o_mean, "score": d_mean + o_mean / 2, "score_lo": lo, "score_hi": hi})
    cells_df, scores_df = pd.DataFrame(cells), pd.DataFrame(scores).sort_values("score")
    cells_df.to_csv(out / "cells.csv", index=False)
    scores_df.to_csv(out / "scores.csv", index=False)
    lines = ["# Fidelity screening", "",
             "Random-policy returns (20 episodes, 1000-step cap): "
             + ", ".join(f"{k} {v:.1f}" for k, v in randoms.items()), "",
             "## Readings ranked (lower score = closer to the paper)", "",
             markdown_table(["reading", "cells", "runs", "diverged", "D (final scores)", "O (order)", "score",
                             "95% interval over seeds"],
                            [[r.reading, r.cells, r.runs, r.failed, f"{r.D:.3f}", f"{r.O:.3f}", f"{r.score:.3f}",
                              f"[{r.score_lo:.3f}, {r.score_hi:.3f}]"]
                             for r in scores_df.itertuples()]), "",
             "The interval (seeds redrawn with replacement, 2,000 times; not part of the score) shows how far "
             "two readings can be told apart with this many seeds.", "",
             "## Final scores (mean ± std over seeds; paper in brackets)", ""]
    for env in PAPER:
        rows = []
        for reading in scores_df.reading:
            row = [reading]
            for algo in ALGOS:
                c = cells_df[(cells_df.reading == reading) & (cells_df.env_id == env) & (cells_df.algo == algo)]
                if c.empty:
                    row.append("–")
                else:
                    cell = c.iloc[0]
                    text = "" if math.isnan(cell.final_mean) else f"{cell.final_mean:.1f} ± {cell.final_std:.1f} "
                    row.append(text + f"(n={cell.n}" + (f", {cell.failed} diverged)" if cell.failed else ")"))
            rows.append(row)
        paper = ["paper"] + [f"{PAPER[env][a][0]} ± {PAPER[env][a][1]}" for a in ALGOS]
        lines += [f"### {env}", "", markdown_table(["reading"] + ALGOS, [paper] + rows), ""]
    lines += ["## Steps to first pass the threshold (mean over seeds; – = not every seed passed)", ""]
    for env, (thr, order) in ORDER.items():
        rows = []
        for reading in scores_df.reading:
            row = [reading]
            for algo in ALGOS:
                c = cells_df[(cells_df.reading == reading) & (cells_df.env_id == env) & (cells_df.algo == algo)]
                v = math.nan if c.empty else c.steps_to_threshold.iloc[0]
                row.append("–" if math.isnan(v) else f"{v / 1000:.0f}k ({c.reached.iloc[0]})")
            rows.append(row)
        lines += [f"### {env} (threshold {thr:g}; paper's order: {' < '.join(order)})", "",
                  markdown_table(["reading"] + ALGOS, rows), ""]
    (out / "screening.md").write_text("\n".join(lines))
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.4 * len(scores_df)))
    ax.barh(scores_df.reading, scores_df.D, label="D (final scores)")
    ax.barh(scores_df.reading, scores_df.O / 2, left=scores_df.D, label="O / 2 (order)")
    ax.invert_yaxis()
    ax.set_xlabel("distance from the paper (lower is closer)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out / "scores.png", dpi=120)
    print(scores_df.to_string(index=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
