"""Choose the target KL δ from the classic-control screen, by the rule of docs/results/trust-region/plan.md.

Usage:
    python benchmarks/trust_region/choose.py SCREEN_ROOT OUT_DIR

SCREEN_ROOT holds one grid folder per candidate (``delta-<δ>``, as written by ``run.sh screen``). Each run's
final score (the report's: the last of 100 smoothed bins) is min-max normalised per task between a random
policy's score and the task's maximum; the chosen δ has the highest mean normalised score over its runs, a
tie within 0.02 going to the larger δ. Writes OUT_DIR/screen.csv (one row per run), OUT_DIR/screen.md (the
table and the choice) and prints the choice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from natpg.experiments.report import collect, markdown_table
from natpg.experiments.store import find_runs

RANDOM = {"CartPole-v1": 22.0, "Acrobot-v1": -967.0, "Pendulum-v1": -5788.0}
BEST = {"CartPole-v1": 1000.0, "Acrobot-v1": 0.0, "Pendulum-v1": 0.0}
TIE = 0.02
SEEDS, TASKS = 3, len(RANDOM)


def main(root: Path, out: Path) -> None:
    """Score every candidate under ``root`` and write the table and the choice into ``out``."""
    frames = []
    for folder in sorted(root.glob("delta-*")):
        runs = collect(find_runs(folder), bootstrap_reps=10).runs
        runs["delta"] = float(folder.name.removeprefix("delta-"))
        frames.append(runs)
    runs = pd.concat(frames, ignore_index=True)
    runs["normalised"] = [(s - RANDOM[e]) / (BEST[e] - RANDOM[e]) if st == "finished" else float("nan")
                          for e, s, st in zip(runs["env_id"], runs["final_score"], runs["status"])]
    finished = runs[runs["status"] == "finished"]
    per_task = finished.pivot_table(index="delta", columns="env_id", values="final_score", aggfunc="mean")
    summary = finished.groupby("delta").agg(runs=("normalised", "size"), mean_normalised=("normalised", "mean"))
    table = per_task.join(summary).reset_index()
    complete = table[table["runs"] == SEEDS * TASKS]
    best = complete["mean_normalised"].max()
    chosen = max(complete.loc[complete["mean_normalised"] >= best - TIE, "delta"]) if len(complete) else None
    out.mkdir(parents=True, exist_ok=True)
    runs.drop(columns=["path"]).to_csv(out / "screen.csv", index=False)
    text = ["# Choosing δ: SMAC-KL on classic control (screen)", "",
            "Mean final score per task over seeds 0–2 (screening budgets 200 k / 200 k / 500 k steps), and the mean "
            "min-max normalised score over the 9 runs (random policy → 0, the task's maximum → 1).", "",
            markdown_table([str(c) for c in table.columns], table.round(3).itertuples(index=False)), "",
            f"Chosen δ = {chosen} (highest mean normalised score among complete candidates; ties within {TIE} "
            "go to the larger δ)." if chosen is not None else "No candidate is complete yet."]
    (out / "screen.md").write_text("\n".join(text) + "\n")
    print(f"chosen δ = {chosen}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
