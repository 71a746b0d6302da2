"""The rule that sets the return thresholds natpg had to guess (Walker2d-v5, Humanoid-v5, Pusher-v5).

Usage:
    python benchmarks/thresholds_rule.py docs/results/mujoco/runs.csv [--envs Walker2d-v5 Humanoid-v5 Pusher-v5]

Rule: a task's threshold is half-way from a uniformly random policy's score to the best final score of any
finished run on it in the given report (``runs.csv`` of ``natpg report``; for the MuJoCo grid, all four
algorithms × 5 seeds under ``paper-inferred`` at 1 M steps), rounded to two significant digits. The random
policy's score is the mean return of 10 episodes of uniform actions (episode ``i`` reset with seed ``i``,
the action space seeded 0) with natpg's 1000-step cap. It prints the lines for
``src/natpg/experiments/thresholds.toml``; a task with an unfinished run is refused (the rule needs them all).

(The rule was first stated as the midpoint of the lowest and the highest final score; on Pusher-v5 that bar,
−1,700, lay below a random policy's −1,541, because one AC-SGD run ended at −2,994, so the low end is now a
random policy. Walker2d-v5's threshold is 180 under both.)
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd
from common import random_return

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
        lo, hi = random_return(env, episodes=10), float(rows["final_score"].max())
        print(f'"{env}" = {two_digits((lo + hi) / 2)}  # natpg rule: half-way from a random policy ({lo:.1f}) to the '
              f"best final score of its {len(rows)} runs ({hi:.1f}) (benchmarks/thresholds_rule.py)")


if __name__ == "__main__":
    main()
