"""What the KL step costs a whole training run: `natpg train` steps/s with Table 2's η against `step_rule=kl`.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trust_region/cost.py [--steps 50000] [--repeats 5]
        [--envs CartPole-v1 HalfCheetah-v5] [--delta 0.03] [--force]

Under the ``paper-inferred`` preset set, for each env, four trainings of ``--steps`` steps through the public
API (no run folder), interleaved ``--repeats`` times: ``smac`` and ``ac-cg`` with Table 2's η, and both with
``step_rule=kl, target_kl=δ`` (the trust-region evaluation's groups, docs/results/trust-region/plan.md). Medians
of steps per wall second (natpg's timing of the loop) and per CPU second, and each group's ratio to ``smac``,
go to ``benchmarks/results/trust_region_cost.json`` and the table ``trust_region_cost.md``. This is the
like-for-like wall-clock of the four groups (same commit, same machine, same load), which the grid's own
wall-clock tables are not.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import (RESULTS, ResultFile, interleaved_throughput, provenance, set_one_thread,  # noqa: E402
                    train_throughput)

ENVS = ("CartPole-v1", "HalfCheetah-v5")


def groups(delta: float) -> dict[str, tuple[str, dict]]:
    kl = {"step_rule": "kl", "target_kl": delta}
    return {"smac": ("smac", {}), "smac-kl": ("smac", kl), "ac-cg": ("ac-cg", {}), "ac-cg-kl": ("ac-cg", kl)}


def table(records: list[dict], environment: dict) -> str:
    first = records[0] if records else {}
    lines = ["# The KL step's cost over a whole training run (`paper-inferred`)", "",
             f"Medians of {first.get('repeats')} interleaved trainings of {first.get('steps')} steps each; "
             f"δ = {first.get('delta')}.", "",
             "| env | group | steps/s | over smac | steps per CPU s |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['env']} | {name} | {med:,.0f} | {med / r['median']['smac']:.2f} | {r['median_cpu'][name]:,.0f} |"
              for r in records for name, med in r["median"].items()]
    return "\n".join([*lines, "", provenance(environment), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--delta", type=float, default=0.03)
    parser.add_argument("--force", action="store_true", help="remeasure records already in the JSON file")
    args = parser.parse_args()
    set_one_thread()
    results = ResultFile("trust_region_cost", force=args.force)
    for env in args.envs:
        if results.has(env=env, steps=args.steps, delta=args.delta):
            continue
        runs = {name: functools.partial(train_throughput, env, algo, args.steps, "paper-inferred", settings)
                for name, (algo, settings) in groups(args.delta).items()}
        wall, cpu = interleaved_throughput(runs, args.repeats)
        results.add({"env": env, "steps": args.steps, "repeats": args.repeats, "delta": args.delta,
                     "median": {k: statistics.median(v) for k, v in wall.items()},
                     "median_cpu": {k: statistics.median(v) for k, v in cpu.items()}, "samples": wall,
                     "cpu_samples": cpu})
    md = table(results.records, results.environments[0])
    (RESULTS / "trust_region_cost.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
