"""``natpg train`` throughput of the current code against an earlier commit, interleaved in one run.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/before_after.py REV [--steps 20000] [--repeats 3] [--name NAME]

The source of commit ``REV`` is unpacked to a temporary folder; each sample trains SMAC (``paper`` preset)
in a fresh subprocess, alternately with that source first on ``PYTHONPATH`` and with the working tree's,
so a change in machine load hits both alike. Writes ``benchmarks/results/NAME.json`` (default
``before_after``): per env, the median steps/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import ResultFile, set_one_thread

ROOT = Path(__file__).resolve().parents[1]
ENVS = {"CartPole-v1": 1.0, "HalfCheetah-v5": 0.5}  # budget factor per env
SNIPPET = ("import sys, natpg; assert natpg.__file__.startswith(sys.argv[1]), natpg.__file__; "
           "r = natpg.train(natpg.make_config(sys.argv[2], 'smac', 0, {'total_steps': int(sys.argv[3])})); "
           "print(r.steps_per_second)")


def sample(src: Path, env: str, steps: int) -> float:
    """Steps/s of one training run with the package found in ``src`` (a folder holding ``natpg/``)."""
    env_vars = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", SNIPPET, str(src), env, str(steps)], env=env_vars,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="before_after")
    args = parser.parse_args()
    set_one_thread()
    results = ResultFile(args.name, force=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "src.tar"
        subprocess.run(["git", "archive", "-o", str(archive), args.rev, "src"], cwd=ROOT, check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        trees = {"before": Path(tmp) / "src", "after": ROOT / "src"}
        for env, factor in ENVS.items():
            steps = int(args.steps * factor)
            samples: dict[str, list[float]] = {k: [] for k in trees}
            for _ in range(args.repeats):
                for kind, src in trees.items():
                    samples[kind].append(sample(src, env, steps))
            med = {k: statistics.median(v) for k, v in samples.items()}
            results.add({"env": env, "steps": steps, "before_rev": args.rev, "repeats": args.repeats,
                         "before_steps_per_s": med["before"], "after_steps_per_s": med["after"],
                         "after_over_before": med["after"] / med["before"], "samples": samples})
            print(f"{env}: before {med['before']:.0f}, after {med['after']:.0f} steps/s "
                  f"({med['after'] / med['before']:.3f}x)")


if __name__ == "__main__":
    main()
