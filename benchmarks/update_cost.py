"""Benchmark 1: the cost of one actor update against the parameter count d.

For Gaussian actor MLPs (HalfCheetah-sized: 17 observations, 6 actions, two tanh
hidden layers of width h) with d ≈ 1e4, 1e5 and 1e6 parameters and a batch of
T = 1000 samples, time one actor update of each rule on one CPU thread, and
measure its peak memory above the model and batch (``VmHWM − VmRSS`` after
resetting the high-water mark through ``/proc/self/clear_refs``, in a fresh
process per rule and size).

Rules are timed round-robin (one update of each per round), so a noisy
neighbour on a shared machine affects them alike; the figure is the median of
``--repeats`` rounds and is also reported as a ratio to ac-sgd of the same run.

Run: ``python benchmarks/update_cost.py`` (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultFile, set_one_thread  # noqa: E402

set_one_thread()

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from natpg.policies import Actor  # noqa: E402
from natpg.config import StepRule  # noqa: E402
from natpg.updates import (AdamUpdate, NaturalCGUpdate, SGDUpdate, ShermanMorrisonUpdate, StepSize,  # noqa: E402
                           WoodburyUpdate)
from natpg.updates.base import ActorBatch  # noqa: E402


OBS_DIM, ACT_DIM, T = 17, 6, 1000
#: width h of the two hidden layers → d = h² + 25h + 12 (≈ 1e4, 1e5, 1e6)
WIDTHS = {"1e4": 88, "1e5": 304, "1e6": 988}
DEFAULT_REPEATS = {"1e4": 41, "1e5": 21, "1e6": 7}
RULES = {
    "ac-sgd": lambda a: SGDUpdate(a, lr=1e-3),
    "ac-adam": lambda a: AdamUpdate(a, lr=1e-3),
    "smac": lambda a: ShermanMorrisonUpdate(a, lr=1e-3, damping=1.0),
    "woodbury-k8": lambda a: WoodburyUpdate(a, lr=1e-3, damping=1.0, rank=8),
    "woodbury-k32": lambda a: WoodburyUpdate(a, lr=1e-3, damping=1.0, rank=32),
    "ac-cg": lambda a: NaturalCGUpdate(a, lr=1e-3, cg_damping=0.1, cg_iters=10),
    # SMAC's direction scaled to a target KL (step_rule=kl): one forward-mode pass of the actor for xᵀFx on top
    # of smac; -ls adds the line search on the measured KL and surrogate (one forward pass per candidate, usually one)
    "smac-kl": lambda a: ShermanMorrisonUpdate(a, lr=1e-3, damping=1.0, step_size=StepSize(StepRule.KL, 0.01)),
    "smac-kl-ls": lambda a: ShermanMorrisonUpdate(a, lr=1e-3, damping=1.0,
                                                  step_size=StepSize(StepRule.KL, 0.01, backtrack_iters=10)),
    # Reference row, not a training rule: θ ← θ + η g with g from SMAC's own (MLP) score kernel instead of
    # autograd. SMAC needs the same passes plus a second contraction for ℓ̄, so smac ÷ this is the honest price
    # of the natural gradient over a plain gradient computed just as carefully (→ 4/3 at large d).
    "sgd-kernel": lambda a: SGDUpdate(a, lr=1e-3, scores="mlp"),
}


def _kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def peak_extra_mib(fn) -> float:
    """Peak resident memory of ``fn()`` above the resident memory before it, in MiB."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark VmHWM to the current RSS
    before = _kib("VmRSS")
    fn()
    return (_kib("VmHWM") - before) / 1024


def measure_memory(size: str, rule: str) -> float:
    """Peak extra MiB of one update, measured in a fresh process (no memory left over from other rules).

    glibc's malloc is told to serve every block above 64 KiB by ``mmap``, so freed blocks go
    back to the system at once and the resident set follows what is really live.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--memory-of", size, rule], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def memory_of(size: str, rule: str) -> float:
    """The child's side of :func:`measure_memory`: model and batch first, then one update under watch."""
    width = WIDTHS[size]
    torch.manual_seed(0)
    actor = Actor(OBS_DIM, gym.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32), (width, width))
    batch = make_batch(actor, 1)
    RULES[rule](copy.deepcopy(actor)).step(batch)  # warm-up on a copy: lazy imports and caches are not the update's
    update = RULES[rule](actor)
    return peak_extra_mib(lambda: update.step(batch))


def make_batch(actor: Actor, seed: int) -> ActorBatch:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, OBS_DIM, generator=g)
    with torch.no_grad():
        actions = actor.distribution(obs).sample()
    return ActorBatch(obs, actions, torch.randn(T, generator=g))


def run_size(size: str, rules: list[str], repeats: int, results: ResultFile) -> None:
    width = WIDTHS[size]
    torch.manual_seed(0)
    space = gym.spaces.Box(-1.0, 1.0, shape=(ACT_DIM,), dtype=np.float32)
    base = Actor(OBS_DIM, space, (width, width))
    batch = make_batch(base, 1)
    d = sum(p.numel() for p in base.parameters())
    updates = {name: RULES[name](copy.deepcopy(base)) for name in rules}
    for u in updates.values():
        u.step(batch)  # warm-up
    memory = {name: measure_memory(size, name) for name in rules}
    samples: dict[str, list[float]] = {name: [] for name in rules}
    for _ in range(repeats):
        for name, u in updates.items():
            t0 = time.perf_counter()
            u.step(batch)
            samples[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(s) for name, s in samples.items()}
    low = {name: min(s) for name, s in samples.items()}
    for name in rules:
        results.add({
            "size": size, "d": d, "width": width, "T": T, "rule": name, "repeats": repeats,
            "median_s": med[name], "min_s": low[name], "samples_s": samples[name],
            "ratio_to_ac_sgd": med[name] / med["ac-sgd"] if "ac-sgd" in med else None,
            "ratio_to_ac_sgd_of_minima": low[name] / low["ac-sgd"] if "ac-sgd" in low else None,
            "peak_extra_mib": memory[name],
        })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(WIDTHS), choices=list(WIDTHS))
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    ap.add_argument("--repeats", type=int, default=None,
                    help="rounds per size (default: 41, 21 and 7 for d = 1e4, 1e5, 1e6; small updates are "
                         "noisier on a shared machine and cheap to repeat)")
    ap.add_argument("--name", default="update_cost", help="results file name (without .json)")
    ap.add_argument("--force", action="store_true", help="remeasure sizes already in the results file")
    ap.add_argument("--memory-of", nargs=2, metavar=("SIZE", "RULE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_of:
        print(memory_of(*args.memory_of))
        return
    if "ac-sgd" not in args.rules:
        args.rules = ["ac-sgd"] + args.rules  # ratios need ac-sgd from the same run
    results = ResultFile(args.name, force=args.force)
    for size in args.sizes:
        if results.has(size=size):
            print(f"size {size}: already measured, skipped (use --force)")
            continue
        run_size(size, args.rules, args.repeats or DEFAULT_REPEATS[size], results)


if __name__ == "__main__":
    main()
