"""What training the critic harder costs: `natpg train` steps/s of SMAC under three critic settings.

Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/critic_cost.py [--steps 20000] [--repeats 5]
        [--envs CartPole-v1 HalfCheetah-v5] [--baseline REV] [--force]

Settings (each through the public API, ``natpg.train(natpg.make_config(env, "smac", 0, {...}))``, no run
folder): ``literal`` (one full-batch Adam step per iteration), ``critic_epochs=20`` (20 full-batch
steps) and ``critic_batch_size=100, critic_epochs=10`` (100 mini-batch steps per 1000-step
iteration). Each sample is one training of ``--steps`` steps in a fresh subprocess (one torch thread),
timed by natpg itself (``TrainResult.steps_per_second``, the training loop only). With ``--baseline
REV`` the same samples are also taken on the source of git revision ``REV`` (unpacked with ``git
archive`` and put first on ``PYTHONPATH``), labelled ``before``; this checkout is ``after``. Code
versions, settings and repeats are interleaved, so a change in machine load hits all alike; each
record holds the median steps/s, every sample, the ratio to ``literal`` of the same code, and the
load average before and after. Results: ``benchmarks/results/critic_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from common import ResultFile

ROOT = Path(__file__).resolve().parent.parent
SETTINGS: dict[str, dict] = {
    "literal": {},
    "critic_epochs=20": {"critic_epochs": 20},
    "critic_batch_size=100,critic_epochs=10": {"critic_batch_size": 100, "critic_epochs": 10},
}
SNIPPET = """
import json, sys, torch
torch.set_num_threads(1)
import natpg
env, steps, extra = json.loads(sys.argv[1])
result = natpg.train(natpg.make_config(env, "smac", 0, {"total_steps": steps, **extra}))
print(json.dumps({"steps_per_s": result.steps_per_second, "natpg": natpg.__file__}))
"""


def sample(src: Path, env: str, steps: int, extra: dict) -> float:
    """Steps/s of one training in a subprocess that imports natpg from ``src``."""
    environ = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", SNIPPET, json.dumps([env, steps, extra])], env=environ,
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    record = json.loads(out)
    assert record["natpg"].startswith(str(src)), record["natpg"]
    return record["steps_per_s"]


def unpack(rev: str, into: Path) -> Path:
    """The ``src/`` folder of git revision ``rev``, unpacked under ``into``."""
    archive = into / "src.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), rev, "src"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1", "HalfCheetah-v5"])
    parser.add_argument("--baseline", default=None, help="git revision measured as 'before' (e.g. main)")
    parser.add_argument("--force", action="store_true", help="remeasure records already in the JSON file")
    args = parser.parse_args()
    results = ResultFile("critic_cost", force=args.force)
    with tempfile.TemporaryDirectory() as tmp:
        codes = {"after": ROOT / "src"}
        if args.baseline:
            rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline], check=True,
                                 capture_output=True, text=True).stdout.strip()
            codes = {f"before ({rev})": unpack(rev, Path(tmp)), **codes}
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        for env in args.envs:
            if results.has(env=env, steps=args.steps, baseline=args.baseline, head=head):
                continue
            load_before = list(os.getloadavg())
            samples: dict[str, dict[str, list[float]]] = {c: {s: [] for s in SETTINGS} for c in codes}
            for _ in range(args.repeats):
                for code, src in codes.items():
                    for name, extra in SETTINGS.items():
                        samples[code][name].append(sample(src, env, args.steps, extra))
            table = {}
            for code in codes:
                med = {name: statistics.median(v) for name, v in samples[code].items()}
                table[code] = {name: {"steps_per_s": med[name], "over_literal": med[name] / med["literal"]}
                               for name in SETTINGS}
            results.add({"env": env, "algo": "smac", "steps": args.steps, "repeats": args.repeats,
                         "baseline": args.baseline, "head": head, "median": table, "samples": samples,
                         "load_average_before": load_before, "load_average_after": list(os.getloadavg())})


if __name__ == "__main__":
    main()
