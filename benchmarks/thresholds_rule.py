"""The rule that sets the return thresholds natpg had to guess (Walker2d-v5, Humanoid-v5, Pusher-v5).

Usage:
    python benchmarks/thresholds_rule.py docs/results/mujoco/runs.csv [--envs Walker2d-v5 Humanoid-v5 Pusher-v5]

Rule: a task's threshold is the midpoint between the lowest and the highest final score of any finished run
on it in the given report (``runs.csv`` of ``natpg report``; for the MuJoCo grid, all four algorithms × 5 seeds
under ``paper-inferred`` at 1 M steps), rounded to two significant digits — "half-way from the worst run to the
best one", the same min-max scale the report's aggregate normalises by. It prints the lines for
``src/natpg/experiments/thresholds.toml``; a task with an unfinished run is refused (the rule needs them all).
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

GUESSED = ("Walker2d-v5", "Humanoid-v5", "Pusher-v5")


def two_digits(x: float) -> float:
    if x == 0:
        return 0.0
    return round(x, 1 - int(math.floor(math.log10(abs(x)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_csv")
    parser.add_argument("--envs", nargs="+", default=list(GUESSED))
    args = parser.parse_args()
    try:
        runs = pd.read_csv(args.runs_csv)
    except (OSError, pd.errors.ParserError) as err:
        sys.exit(f"thresholds_rule: cannot read {args.runs_csv!r}: {err}")
    for env in args.envs:
        rows = runs[runs["env_id"] == env]
        if rows.empty or (rows["status"] != "finished").any():
            print(f"# {env}: not every run is finished ({len(rows)} found); no threshold yet")
            continue
        lo, hi = float(rows["final_score"].min()), float(rows["final_score"].max())
        print(f'"{env}" = {two_digits((lo + hi) / 2)}  # natpg rule: midpoint of the final scores '
              f"{lo:.1f} .. {hi:.1f} of its {len(rows)} runs (benchmarks/thresholds_rule.py)")


if __name__ == "__main__":
    main()
