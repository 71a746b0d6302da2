"""Run folders: what natpg writes in one, how one is recognised and cleared, and the lock on it.

Three guarantees rest on this module:

* **Only natpg's own files are ever deleted.** ``--overwrite`` (and a grid rerun with
  ``--overwrite``) removes only the entries listed in :data:`NATPG_FILES` /
  :data:`NATPG_DIRS` (and natpg's temporary files), and only from a folder that is
  recognisably a natpg run (:func:`is_run_folder`). Anything else in it stays.
* **One process per run folder.** :class:`RunLock` is an OS file lock (``flock`` through
  the ``filelock`` package) on ``RUN_DIR/.natpg.lock``, held by ``natpg train`` and by each
  ``natpg bench`` worker for as long as it writes the folder. The OS releases it when the
  process dies, even by SIGKILL, so a lock is never stale. The empty lock file itself stays
  (removing it would let two processes lock two different files of the same name).
* **"Finished" means finished at the config asked for** (:func:`finished_at`): a
  ``summary.json`` that records the same config as ``config.json`` (and as the caller's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from natpg.checkpoint import CHECKPOINT_DIR
from natpg.config import ConfigError, upgrade_saved_config
from natpg.runlog import (
    CONFIG_FILE,
    EPISODES_FILE,
    ERROR_FILE,
    EVAL_FILE,
    ITERATIONS_FILE,
    SUMMARY_FILE,
    SYSTEM_FILE,
    TENSORBOARD_DIR,
)

LOCK_FILE = ".natpg.lock"
PLOT_FILE = "learning_curve.png"
NATPG_FILES = (CONFIG_FILE, SYSTEM_FILE, EPISODES_FILE, ITERATIONS_FILE, EVAL_FILE, SUMMARY_FILE, ERROR_FILE,
               PLOT_FILE)
"""The files natpg writes at the top of a run folder (``natpg plot`` writes the PNG)."""
NATPG_DIRS = {CHECKPOINT_DIR: ("latest.pt", ".latest.pt.*.tmp"), TENSORBOARD_DIR: ("events.out.tfevents.*",)}
"""natpg's sub-folders and the file patterns natpg writes in each."""
_CONFIG_KEYS = ("env_id", "algo", "seed", "total_steps")


class RunLocked(ConfigError):
    """The run folder is locked by another live natpg process."""


class RunLock:
    """An exclusive OS lock on one run folder (``RUN_DIR/.natpg.lock``); a context manager.

    Example:
        >>> import tempfile
        >>> with RunLock.acquire(Path(tempfile.mkdtemp())) as lock:
        ...     lock.held
        True
    """

    def __init__(self, run_dir: Path, lock: Any) -> None:
        self.run_dir = run_dir
        self._lock = lock

    @classmethod
    def acquire(cls, run_dir: str | Path) -> "RunLock":
        """Lock ``run_dir`` (which must exist) without waiting.

        Raises:
            RunLocked: another process holds the lock.
            ConfigError: the lock file cannot be created (read-only folder, ...).
        """
        from filelock import FileLock, Timeout

        run_dir = Path(run_dir)
        lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise RunLocked(f"run folder {str(run_dir)!r} is in use by another natpg process "
                            f"(it holds {LOCK_FILE}); wait for it to end") from None
        except OSError as exc:
            raise ConfigError(f"cannot lock run folder {str(run_dir)!r}: {exc.strerror or exc}") from None
        return cls(run_dir, lock)

    @property
    def held(self) -> bool:
        """Whether the lock is currently held."""
        return bool(self._lock.is_locked)

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def describe_os_error(exc: OSError) -> str:
    """``exc`` as ``'PATH': reason`` (the reason alone when no path is known)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    name = exc.filename
    return f"{str(name)!r}: {reason}" if name is not None else reason


def check_out_path(path: str | Path, what: str = "--out") -> None:
    """Refuse an output path that exists as a file, or that runs through a regular file.

    Raises:
        ConfigError: naming the offending path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} exists and is not a folder")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{what} {str(path)!r} runs through {str(parent)!r}, which is a file, not a folder")
            break


def make_writable_folder(path: str | Path, what: str = "--out") -> Path:
    """Create ``path`` (and its parents) and check that a file can be created in it.

    Raises:
        ConfigError: the path is not a folder, runs through a file, or cannot be written.
    """
    path = Path(path)
    check_out_path(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".natpg-write-probe.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{what} {str(path)!r} cannot be written: {exc.strerror or exc}") from None
    return path


def read_json_file(path: str | Path) -> Any:
    """A JSON file's content, ``None`` if absent.

    Raises:
        ConfigError: the file exists but is not readable JSON (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{str(path)!r} is damaged (not readable JSON: {exc}); "
                          f"move it away or restore it") from None


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``config.json`` as a dict in the form this natpg writes, ``None`` if absent.

    A file written before the settings were split by algorithm holds every algorithm's fields; the
    ones its algorithm does not read are dropped (:func:`natpg.config.upgrade_saved_config`).

    Raises:
        ConfigError: the file is damaged or is not a natpg config.
    """
    path = Path(run_dir) / CONFIG_FILE
    data = read_json_file(path)
    if data is not None and not (isinstance(data, dict) and all(k in data for k in _CONFIG_KEYS)):
        raise ConfigError(f"{str(path)!r} is damaged (not a natpg config: it needs {', '.join(_CONFIG_KEYS)}); "
                          f"move it away or restore it")
    return None if data is None else upgrade_saved_config(data)


def is_run_folder(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is recognisably a natpg run: it holds natpg's ``config.json`` or ``error.json``.

    Raises:
        ConfigError: its ``config.json`` is damaged (then it is not recognisable, and natpg says which file).
    """
    run_dir = Path(run_dir)
    if read_config(run_dir) is not None:
        return True
    error = read_json_file(run_dir / ERROR_FILE) if (run_dir / ERROR_FILE).is_file() else None
    return isinstance(error, dict) and "error" in error


def remove_temp_files(run_dir: str | Path) -> None:
    """Delete natpg's temporary files (a JSON, CSV or checkpoint write cut short by a killed process).

    Only for a run that is not running (the caller holds its lock): a live run's temporary file is
    about to be renamed.
    """
    run_dir = Path(run_dir)
    stale = [p for name in NATPG_FILES for p in run_dir.glob(f".{name}.*.tmp")]
    stale += [p for sub, patterns in NATPG_DIRS.items() for pat in patterns if pat.endswith(".tmp")
              for p in (run_dir / sub).glob(pat)]
    for path in stale:
        if path.is_file():
            path.unlink(missing_ok=True)


def _natpg_entries(run_dir: Path) -> list[Path]:
    """The files natpg wrote in ``run_dir`` (not the lock file, not folders)."""
    found = [run_dir / name for name in NATPG_FILES if (run_dir / name).is_file()]
    found += [p for name in NATPG_FILES for p in run_dir.glob(f".{name}.*.tmp") if p.is_file()]
    for sub, patterns in NATPG_DIRS.items():
        if (run_dir / sub).is_dir():
            found += [p for pat in patterns for p in (run_dir / sub).glob(pat) if p.is_file()]
    return found


def holds_files(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` exists and holds anything besides natpg's lock file."""
    run_dir = Path(run_dir)
    return run_dir.is_dir() and any(e.name != LOCK_FILE for e in run_dir.iterdir())


def clear_run_folder(run_dir: str | Path) -> None:
    """Delete the files natpg wrote in ``run_dir`` (and natpg's sub-folders once empty); keep everything else.

    The caller holds the folder's :class:`RunLock` and has checked :func:`is_run_folder`.
    """
    run_dir = Path(run_dir)
    for path in _natpg_entries(run_dir):
        path.unlink(missing_ok=True)
    for sub in NATPG_DIRS:
        if (run_dir / sub).is_dir() and not any((run_dir / sub).iterdir()):
            (run_dir / sub).rmdir()


def finished_at(run_dir: str | Path, config: dict[str, Any] | None = None) -> bool:
    """Whether the run in ``run_dir`` finished at its saved config (and at ``config`` when given).

    Finished means: ``summary.json`` exists and records the same config as ``config.json``
    (a summary written before natpg recorded the config counts when its ``global_step``
    reached the config's ``total_steps``).

    Raises:
        ConfigError: ``config.json`` or ``summary.json`` is damaged.
    """
    run_dir = Path(run_dir)
    if not (run_dir / SUMMARY_FILE).is_file():
        return False
    saved = read_config(run_dir)
    summary = read_json_file(run_dir / SUMMARY_FILE)
    if saved is None or not isinstance(summary, dict):
        return False
    if config is not None and canonical(config) != saved:
        return False
    return summary_matches(summary, saved)


def summary_matches(summary: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether ``summary`` was written by a run of ``config`` that spent its budget.

    Both configs are compared as :func:`natpg.config.upgrade_saved_config` reads them.
    """
    if isinstance(summary.get("config"), dict):
        return upgrade_saved_config(summary["config"]) == upgrade_saved_config(config)
    if "config" in summary:
        return summary["config"] == config
    step = summary.get("global_step")
    return step is None or int(step) >= int(config.get("total_steps", 0))


def canonical(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as it reads back from JSON (tuples as lists), so it compares equal to a saved one."""
    return json.loads(json.dumps(config))


def config_differences(saved: dict[str, Any], planned: dict[str, Any]) -> list[str]:
    """``field saved→planned`` for every field that differs (for one-line messages).

    Example:
        >>> config_differences({"total_steps": 2000, "seed": 0}, {"total_steps": 4000, "seed": 0})
        ['total_steps 2000→4000']
    """
    planned = canonical(planned)
    keys = list(dict.fromkeys([*saved, *planned]))
    return [f"{k} {saved.get(k, '(none)')}→{planned.get(k, '(none)')}" for k in keys if saved.get(k) != planned.get(k)]

