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


def train_throughput(env: str, algo: str, steps: int, preset: str = "paper",
                     settings: dict[str, Any] | None = None) -> tuple[float, float]:
    """Steps per wall second (natpg's own timing of the training loop) and per CPU second of one ``natpg.train``."""
    from natpg import make_config, train

    cpu = time.process_time()
    result = train(make_config(env, algo, 0, {"total_steps": steps, **(settings or {})}, preset=preset))
    return result.steps_per_second, steps / (time.process_time() - cpu)


def interleaved_throughput(runs: dict[str, Callable[[], tuple[float, float]]],
                           repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """``repeats`` rounds of every run in ``runs`` (name → a call of :func:`train_throughput`), one after another.

    Interleaving makes a change in the machine's load hit every run alike. Returns the wall and the CPU
    steps/s samples by name.
    """
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            w, c = run()
            wall[name].append(w)
            cpu[name].append(c)
    return wall, cpu


def provenance(environment: dict[str, Any], command: str | None = None, commits: list[str] | None = None) -> str:
    """The Markdown line under a results table: the command, the commit(s), the machine and the library versions."""
    versions = environment.get("versions", {})
    made = f"Command: `{command or environment.get('command')}`."
    if commits:
        made += f" Commit(s): {', '.join(commits)}."
    return (f"{made} Machine: {environment.get('cpu')} ({environment.get('cpu_count')} cores, load average at start "
            f"{environment.get('load_average_at_start')}), one torch thread; Python {environment.get('python')}, "
            f"torch {versions.get('torch')}, Gymnasium {versions.get('gymnasium')}, MuJoCo {versions.get('mujoco')}, "
            f"SB3 {versions.get('stable-baselines3')}; started {environment.get('started')}.")


def random_return(env_id: str, episodes: int = 20, cap: int = 1000, seed: int = 0) -> float:
    """Mean undiscounted return of uniformly random actions, episodes capped at ``cap`` steps.

    The action space is seeded ``seed`` and episode ``i`` is reset with seed ``100 * seed + i``, so the figure is
    reproducible.
    """
    import gymnasium as gym

    env = gym.make(env_id, max_episode_steps=cap)
    env.action_space.seed(seed)
    total = []
    for ep in range(episodes):
        env.reset(seed=100 * seed + ep)
        ret, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(env.action_space.sample())
            ret += float(r)
            done = term or trunc
        total.append(ret)
    env.close()
    return sum(total) / len(total)
