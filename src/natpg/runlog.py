"""The files of one run folder: their names, the CSVs' known columns, atomic writes, config, system record, summary.

JSON files are written atomically (a temporary file, then a rename); the CSVs are
written by :mod:`natpg.logger`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

CONFIG_FILE = "config.json"
SYSTEM_FILE = "system.json"
EPISODES_FILE = "episodes.csv"
ITERATIONS_FILE = "iterations.csv"
SUMMARY_FILE = "summary.json"
ERROR_FILE = "error.json"

EPISODE_COLUMNS = ("global_step", "return", "length", "terminated")
ITERATION_COLUMNS = (  # first in every iterations.csv; the update rule's extras follow as train/<key>
    "iteration", "global_step",
    "rollout/mean_logprob", "rollout/mean_advantage", "rollout/episodes",
    "train/actor_loss", "train/critic_loss", "train/update_norm", "train/kl",
    "train/skipped_updates", "train/skip_reason",
    "time/rollout_s", "time/update_s", "time/elapsed_s",
)
EVAL_FILE = "eval.csv"
EVAL_COLUMNS = ("iteration", "global_step", "eval/mean_return", "eval/std_return", "eval/mean_length",
                "eval/episodes")
TENSORBOARD_DIR = "tensorboard"


def write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(fh)`` on a temporary binary file beside ``path``, fsync it, then rename it over ``path``.

    ``os.replace`` is atomic on POSIX: a reader (or a process killed at any instant)
    sees the old file or the new one, never half of one. The new file keeps the old
    one's permissions (or gets those of a plain ``open``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600 files
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. ENOSPC from write or fsync: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and a rename."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda fh: fh.write(text.encode()))


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


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` and the system record ``system.json`` of a run folder (atomically)."""
    write_json_atomic(Path(run_dir) / CONFIG_FILE, config)
    write_json_atomic(Path(run_dir) / SYSTEM_FILE, system_record())


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json``, the mark of a finished run (atomically)."""
    write_json_atomic(Path(run_dir) / SUMMARY_FILE, summary)
