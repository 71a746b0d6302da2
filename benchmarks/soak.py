"""Soak test: resident memory of a long SMAC run stays flat.

Trains SMAC on HalfCheetah-v5 (paper preset) for ``--steps`` environment steps and samples the
process's resident set size (RSS) every ``--every`` steps. Writes ``benchmarks/results/soak.json``
after every sample, so an interrupted soak keeps what it measured.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak.py --steps 2000000 --every 100000
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

from natpg import make_config
from natpg.runlog import system_record, write_json_atomic
from natpg.trainer import Trainer


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc), else the peak from getrusage."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="HalfCheetah-v5")
    ap.add_argument("--steps", type=int, default=2_000_000)
    ap.add_argument("--every", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    args = ap.parse_args()

    cfg = make_config(args.env, "smac", 0, {"total_steps": args.steps})
    trainer = Trainer(cfg)
    samples = [{"global_step": 0, "rss_mib": rss_mib(), "elapsed_s": 0.0}]
    start = time.perf_counter()
    record = {"command": f"python benchmarks/soak.py --env {args.env} --steps {args.steps} --every {args.every}",
              "config": cfg.to_dict(), "system": system_record(), "samples": samples}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, record)
    next_mark = args.every

    def on_iteration(row: dict) -> None:
        nonlocal next_mark
        if row["global_step"] >= next_mark:
            samples.append({"global_step": row["global_step"], "rss_mib": rss_mib(),
                            "elapsed_s": time.perf_counter() - start})
            next_mark += args.every
            after_warmup = [s["rss_mib"] for s in samples if s["global_step"] >= args.every]
            record["rss_growth_after_first_sample_mib"] = max(after_warmup) - after_warmup[0]
            write_json_atomic(args.out, record)
            print(f"{row['global_step']:>9} steps  rss {samples[-1]['rss_mib']:.1f} MiB", flush=True)

    result = trainer.run(None, on_iteration=on_iteration)
    record["steps_per_second"] = result.steps_per_second
    record["finished"] = True
    write_json_atomic(args.out, record)


if __name__ == "__main__":
    main()
