"""Shared helpers of the speed benchmarks: environment record, incremental JSON results, timing.

Every benchmark writes one JSON file under ``benchmarks/results/`` holding an
environment record and a list of records. The file is rewritten (atomically)
after each record, so a crash never loses the figures measured before it, and a
rerun skips the records already there unless ``--force`` is given.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"
PACKAGES = ("natpg", "torch", "numpy", "gymnasium", "mujoco", "envpool", "stable-baselines3")


def environment_record() -> dict[str, Any]:
    """Library versions and machine facts, stored next to every result."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": None,
        "versions": versions,
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name] + sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class ResultFile:
    """One benchmark's JSON file: ``{"environment": …, "records": [...]}``, saved after every record."""

    def __init__(self, name: str, force: bool = False) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.path = RESULTS / f"{name}.json"
        old = json.loads(self.path.read_text()) if self.path.exists() and not force else {}
        self.records: list[dict[str, Any]] = old.get("records", [])
        self.environment = environment_record()
        self.environments = old.get("environments", []) + [self.environment]

    def has(self, **key: Any) -> bool:
        return any(all(r.get(k) == v for k, v in key.items()) for r in self.records)

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.save()
        print(json.dumps(record), flush=True)

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"environments": self.environments, "records": self.records}, indent=1))
        tmp.replace(self.path)


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` (and all samples)."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples


def set_one_thread() -> None:
    """One thread everywhere (the benchmarks' setting)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
