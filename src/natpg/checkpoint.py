"""Checkpoint files: atomic writes, loading, and cutting logs back to a checkpoint.

A checkpoint is one ``torch.save`` file, ``RUN_DIR/checkpoints/latest.pt``,
written to a temporary file in the same folder, flushed to disk, then renamed
over the old one (``os.replace`` is atomic on POSIX), so a run killed at any
instant leaves either the previous checkpoint or the new one, never half of one.

On resume, every CSV of the run folder is cut back to the rows logged up to the
checkpoint (:func:`truncate_csv`), so the resumed run appends without duplicate
or missing rows.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import torch

from natpg.config import ConfigError, upgrade_saved_config
from natpg.guards import NonFiniteState, non_finite_entries
from natpg.runlog import write_atomic

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_FILE = "latest.pt"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("config", "iteration", "global_step", "elapsed_s", "actor", "critic", "critic_opt", "update",
                 "rng", "collector", "envs")
"""What every checkpoint holds (``obs_rms`` and ``skips`` may be ``None``/absent)."""


def checkpoint_path(run_dir: str | Path) -> Path:
    """Where the latest checkpoint of ``run_dir`` lives."""
    return Path(run_dir) / CHECKPOINT_DIR / CHECKPOINT_FILE


UNCHECKED_KEYS = frozenset({"collector", "envs", "rng"})
"""Entries of a state that hold what the environments produced, not what was learned: an episode in
progress may legitimately carry a NaN reward or observation, so they are not checked for finiteness."""


def save_checkpoint(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically as the run's latest checkpoint and return its path.

    Raises:
        NonFiniteState: a floating-point tensor or array of ``state`` (outside
            :data:`UNCHECKED_KEYS`) holds a NaN or infinity; nothing is written and the
            previous checkpoint stays as it was.
    """
    bad = non_finite_entries({k: v for k, v in state.items() if k not in UNCHECKED_KEYS})
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise NonFiniteState(f"refusing to save a checkpoint in {str(run_dir)!r}: non-finite values in "
                             f"{', '.join(bad[:3])}{more}")
    path = checkpoint_path(run_dir)
    # Serialised in memory first: a failing write (full disk) then raises a plain OSError naming the file,
    # where torch.save into the file would raise its own RuntimeError ("enforce fail ...").
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buffer)
    data = buffer.getvalue()
    write_atomic(path, lambda fh: fh.write(data))
    return path


def load_checkpoint(run_dir: str | Path) -> dict[str, Any]:
    """Read the latest checkpoint of ``run_dir`` (its config as :func:`natpg.config.upgrade_saved_config` reads it).

    Raises:
        ConfigError: the folder or its checkpoint does not exist, or the file is not a natpg checkpoint.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {str(run_dir)!r} does not exist")
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise ConfigError(f"run folder {str(run_dir)!r} has no checkpoint ({CHECKPOINT_DIR}/{CHECKPOINT_FILE}); "
                          f"it was not written by `natpg train`, or the run died before its first checkpoint")
    try:
        # Our own file: it holds numpy RNG states and pickled envs, so it is not weights-only.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise ConfigError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{str(path)!r} is not a natpg checkpoint of format {FORMAT_VERSION}")
    if isinstance(state.get("config"), dict):  # a checkpoint written before the per-algorithm settings
        state["config"] = upgrade_saved_config(state["config"])
    return state


def require_keys(run_dir: str | Path, state: dict[str, Any], keys: tuple[str, ...] = REQUIRED_KEYS) -> None:
    """Refuse a loaded checkpoint that lacks one of ``keys`` (one line naming the file and the keys).

    Raises:
        ConfigError: a key is missing.
    """
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConfigError(f"checkpoint {str(checkpoint_path(run_dir))!r} is damaged: it lacks "
                          f"{', '.join(map(repr, missing))}")


def truncate_csv(path: str | Path, key: str, max_value: float) -> int:
    """Keep the header and the complete rows of a CSV whose ``key`` is ``<= max_value``; return how many.

    A row is complete when it ends with a newline and has as many fields as the
    header: a line cut short by a killed process is dropped whatever its
    content. The file is rewritten atomically. A missing file is left missing.

    Raises:
        ConfigError: the file is not text or its header lacks ``key`` (naming the file; nothing is written).
    """
    path = Path(path)
    if not path.exists():
        return 0
    try:
        with open(path, newline="") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"log {str(path)!r} is damaged or unreadable: {exc}") from None
    lines = text.splitlines(keepends=True)
    if not lines:
        return 0
    header = next(csv.reader([lines[0]]), [])
    if key not in header:
        raise ConfigError(f"log {str(path)!r} is damaged: its header has no {key!r} column")
    col = header.index(key)
    kept = [lines[0] if lines[0].endswith("\n") else lines[0] + "\n"]
    for line in lines[1:]:
        if not line.endswith("\n"):
            continue
        fields = next(csv.reader([line]), [])
        if len(fields) != len(header):
            continue
        try:
            value = float(fields[col])
        except ValueError:
            continue
        if value <= max_value:
            kept.append(line)
    data = "".join(kept).encode()
    write_atomic(path, lambda fh: fh.write(data))
    return len(kept) - 1


def read_csv_rows(path: str | Path) -> list[dict[str, str]]:
    """All rows of a CSV as dicts (an empty list when the file is missing).

    Raises:
        ConfigError: the file is not a readable CSV (naming the file).
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"log {str(path)!r} is damaged or unreadable: {exc}") from None
