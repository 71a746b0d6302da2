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
from typing import Any, BinaryIO, Callable, Iterable, Sequence

CONFIG_FILE = "config.json"
SYSTEM_FILE = "system.json"
EPISODES_FILE = "episodes.csv"
ITERATIONS_FILE = "iterations.csv"
SUMMARY_FILE = "summary.json"
ERROR_FILE = "error.json"

EPISODE_COLUMNS = ("global_step", "return", "length", "terminated")
ITERATION_COLUMNS = (
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
        self.write_many([row])

    def write_many(self, rows: Iterable[dict[str, Any]]) -> None:
        try:
            for row in rows:
                self._writer.writerow([_fmt(row.get(c, "")) for c in self.columns])
            self._fh.flush()
        except OSError as exc:  # e.g. a full disk: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc

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

    def __init__(self, run_dir: Path, config: dict[str, Any] | None = None) -> None:
        """Open (creating if needed) the run folder's logs. ``config`` is written first, before any
        CSV exists, so a folder that holds logs always holds its config too."""
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            self.write_config(config)
        self.episodes = CSVLog(self.run_dir / EPISODES_FILE, EPISODE_COLUMNS)
        self.iterations = CSVLog(self.run_dir / ITERATIONS_FILE, ITERATION_COLUMNS)
        self._eval: CSVLog | None = None

    @property
    def eval(self) -> CSVLog:
        """``eval.csv``, created on first use (runs without periodic evaluation have none)."""
        if self._eval is None:
            self._eval = CSVLog(self.run_dir / EVAL_FILE, EVAL_COLUMNS)
        return self._eval

    def write_config(self, config: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / CONFIG_FILE, config)
        write_json_atomic(self.run_dir / SYSTEM_FILE, system_record())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / SUMMARY_FILE, summary)

    def close(self) -> None:
        self.episodes.close()
        self.iterations.close()
        if self._eval is not None:
            self._eval.close()


class TensorBoardLog:
    """TensorBoard event files beside the CSVs; the x-axis is the global step.

    Every numeric entry of a row whose key is namespaced (``rollout/…``, ``train/…``,
    ``time/…``, ``eval/…``) becomes one scalar. ``purge_step`` (set on resume to the
    checkpoint's global step + 1) makes TensorBoard discard events a killed run wrote
    after its last checkpoint, so a resumed run continues the same axis.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.writer = _summary_writer_class()(str(log_dir), purge_step=purge_step)

    def write(self, row: dict[str, Any], step: int) -> None:
        for key, value in row.items():
            if "/" in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _summary_writer_class():
    """torch's ``SummaryWriter``; a :class:`~natpg.config.ConfigError` when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        from natpg.config import ConfigError

        raise ConfigError("tensorboard=True needs the tensorboard package; "
                          "install it with: pip install 'natpg[tensorboard]'") from None
    return SummaryWriter


def check_tensorboard() -> None:
    """Raise :class:`~natpg.config.ConfigError` now, before a run starts, if TensorBoard is missing."""
    _summary_writer_class()
