"""What the adopted reading of the unstated details costs: `natpg train` steps/s under both preset sets.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/preset_cost.py [--steps 20000] [--repeats 3] [--envs ENV ...] [--force]

For each env (CartPole-v1, HalfCheetah-v5) and algorithm (smac, ac-sgd, ac-adam, ac-cg) it trains
``--steps`` steps with the ``paper`` preset set and with ``paper-inferred``, interleaved, ``--repeats``
times, in this process through the public API (no run folder, no start-up cost), and records the median
steps/s of each and their ratio in ``benchmarks/results/preset_cost.json``: steps per second of wall time
(the training loop, as natpg times it) and steps per second of this process's CPU time (the whole
``train`` call), which another load on the machine changes much less.
"""

from __future__ import annotations

import argparse
import functools
import statistics

from common import ResultFile, interleaved_throughput, set_one_thread, train_throughput

ENVS = ("CartPole-v1", "HalfCheetah-v5")
ALGOS = ("smac", "ac-sgd", "ac-adam", "ac-cg")
PRESETS = ("paper", "paper-inferred")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), help="env ids (default: CartPole-v1 HalfCheetah-v5)")
    parser.add_argument("--force", action="store_true", help="remeasure records already in the JSON file")
    args = parser.parse_args()
    set_one_thread()
    results = ResultFile("preset_cost", force=args.force)
    for env in args.envs:
        for algo in ALGOS:
            if results.has(env=env, algo=algo, steps=args.steps):
                continue
            samples, cpu_samples = interleaved_throughput(
                {p: functools.partial(train_throughput, env, algo, args.steps, p) for p in PRESETS}, args.repeats)
            med = {p: statistics.median(v) for p, v in samples.items()}
            cpu_med = {p: statistics.median(v) for p, v in cpu_samples.items()}
            results.add({"env": env, "algo": algo, "steps": args.steps, "repeats": args.repeats,
                         "paper_steps_per_s": med["paper"], "inferred_steps_per_s": med["paper-inferred"],
                         "inferred_over_paper": med["paper-inferred"] / med["paper"], "samples": samples,
                         "paper_steps_per_cpu_s": cpu_med["paper"], "inferred_steps_per_cpu_s": cpu_med["paper-inferred"],
                         "inferred_over_paper_cpu": cpu_med["paper-inferred"] / cpu_med["paper"],
                         "cpu_samples": cpu_samples})


if __name__ == "__main__":
    main()
