"""Start-up cost of the command line: `natpg --help` and a 1000-step CartPole-v1 training run, wall-clock.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/startup.py [--repeats 5] [--force]

Each command runs as a fresh process (what a user and every `natpg bench` run pay); the median of
``--repeats`` runs goes to ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ResultFile, median_time

NATPG = str(Path(sys.executable).with_name("natpg"))
COMMANDS = {
    "help": [NATPG, "--help"],
    "train-cartpole-1000": [NATPG, "train", "--env", "CartPole-v1", "--steps", "1000", "--quiet", "--out", "{out}"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--force", action="store_true", help="remeasure records already in the JSON file")
    args = parser.parse_args()
    results = ResultFile("startup", force=args.force)
    for name, template in COMMANDS.items():
        if results.has(command=name):
            continue
        scratch = Path(tempfile.mkdtemp(prefix="natpg-startup-"))

        def once() -> None:
            out = scratch / "run"
            shutil.rmtree(out, ignore_errors=True)
            subprocess.run([a.format(out=out) for a in template], check=True, capture_output=True)

        median, samples = median_time(once, args.repeats)
        shutil.rmtree(scratch)
        results.add({"command": name, "argv": " ".join(template), "median_s": median, "samples_s": samples})


if __name__ == "__main__":
    main()
