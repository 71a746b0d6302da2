"""The files of one run folder: config, system record, per-episode and per-iteration CSVs, summary.

Every CSV row is flushed as soon as it is written, so a run that dies keeps
everything logged before it died. JSON files are written atomically
(a temporary file, then a rename).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

CONFIG_FILE = "config.json"
SYSTEM_FILE = "system.json"
EPISODES_FILE = "episodes.csv"
ITERATIONS_FILE = "iterations.csv"
SUMMARY_FILE = "summary.json"

EPISODE_COLUMNS = ("global_step", "return", "length", "terminated")
ITERATION_COLUMNS = (
    "iteration", "global_step",
    "rollout/mean_logprob", "rollout/mean_advantage", "rollout/episodes",
    "train/actor_loss", "train/critic_loss", "train/update_norm", "train/kl",
    "train/skipped_updates", "train/skip_reason",
    "time/rollout_s", "time/update_s", "time/elapsed_s",
)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def system_record() -> dict[str, Any]:
    """Library versions and machine, stored beside every run."""
    import gymnasium
    import numpy
    import torch

    from natpg import __version__

    rec = {
        "natpg": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        import mujoco

        rec["mujoco"] = mujoco.__version__
    except ImportError:  # pragma: no cover
        pass
    return rec


class CSVLog:
    """Append rows to a CSV with a fixed header; each row is flushed immediately."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.writer(self._fh)
        if new:
            self._writer.writerow(self.columns)
            self._fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow([_fmt(row.get(c, "")) for c in self.columns])
        self._fh.flush()

    def write_many(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._writer.writerow([_fmt(row.get(c, "")) for c in self.columns])
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # shortest round-trip representation: bit-exact on reload
    if isinstance(v, bool):
        return int(v)
    return v


class RunLog:
    """All files of one run folder."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.episodes = CSVLog(self.run_dir / EPISODES_FILE, EPISODE_COLUMNS)
        self.iterations = CSVLog(self.run_dir / ITERATIONS_FILE, ITERATION_COLUMNS)

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / CONFIG_FILE, config)
        write_json_atomic(self.run_dir / SYSTEM_FILE, system_record())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / SUMMARY_FILE, summary)

    def close(self) -> None:
        self.episodes.close()
        self.iterations.close()
