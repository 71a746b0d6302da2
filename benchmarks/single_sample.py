"""Benchmark 4: wall-clock of SMAC's single-sample form (B = 1) against the batch-mean form (B = 1000).

Both train HalfCheetah-v5 (``--env``) from the paper's preset (``--preset``) for the same number of steps
(T = 1000, one thread), interleaved round-robin; the figure is the ratio of the
medians, and the share of time that B = 1000 saves (the paper reports ≈ 80%).
The rollout/update split of each run is recorded too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultFile, set_one_thread  # noqa: E402

set_one_thread()

from throughput import measure_natpg_config  # noqa: E402

from natpg.presets import make_config  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--preset", default="paper", help="preset set: paper or paper-inferred")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--name", default="single_sample")
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()
    results = ResultFile(args.name, force=args.force)
    for rep in range(args.repeats):
        for batch_size in (1, 1000):
            key = {"env_id": args.env, "preset": args.preset, "batch_size": batch_size, "repeat": rep}
            if results.has(**key):
                continue
            cfg = make_config(args.env, "smac", rep, {"total_steps": args.steps, "batch_size": batch_size},
                              preset=args.preset)
            wall, split = measure_natpg_config(cfg)
            results.add({**key, "steps": args.steps, "wall_s": wall, "steps_per_s": args.steps / wall, **split})


if __name__ == "__main__":
    main()
