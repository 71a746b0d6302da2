"""A run's checkpoint: when it is due (:class:`Checkpointer`), the atomic file, loading it, and the pickled envs.

A checkpoint is one ``torch.save`` file, ``RUN_DIR/checkpoints/latest.pt``,
written to a temporary file in the same folder, flushed to disk, then renamed
over the old one (``os.replace`` is atomic on POSIX), so a run killed at any
instant leaves either the previous checkpoint or the new one, never half of one.
What it holds is the trainer's ``state_dict()``; the environments go in as bytes
when a pickle round trip keeps their state (:func:`pickle_envs`).

On resume, every CSV of the run folder is cut back to the rows logged up to the
checkpoint (:func:`natpg.logger.truncate_csv`), so the resumed run appends without
duplicate or missing rows.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Protocol

import torch

from natpg.config import ConfigError, EnvBackend, TrainConfig, Vectorization, upgrade_saved_config
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


def pickle_envs(envs: Any, cfg: TrainConfig) -> bytes | None:
    """The vector env as bytes when a pickle round trip keeps its state, else ``None``.

    Only synchronous Gymnasium vectorisation of envs that are not ``EzPickle`` qualifies
    (the classic-control tasks): ``EzPickle`` re-runs the constructor on unpickling, which
    gives a fresh simulator (MuJoCo), and async envs live in other processes.
    """
    import gymnasium as gym

    if cfg.vectorization is not Vectorization.SYNC or cfg.env_backend is not EnvBackend.GYMNASIUM:
        return None
    inner = envs.unwrapped if hasattr(envs, "unwrapped") else envs
    copies = getattr(inner, "envs", None)
    if not copies or any(isinstance(e.unwrapped, gym.utils.EzPickle) for e in copies):
        return None  # EzPickle re-runs the constructor: a fresh simulator, not this one
    try:
        return pickle.dumps(envs)
    except Exception:  # noqa: BLE001 - any unpicklable member means "cannot restore"
        return None


def unpickle_envs(data: bytes) -> Any:
    """The vector env that :func:`pickle_envs` saved, in the state it had."""
    return pickle.loads(data)


class Checkpointable(Protocol):
    """What a :class:`Checkpointer` saves: a state and the iteration it belongs to."""

    iteration: int

    def state_dict(self) -> dict[str, Any]:
        """The state to save in a checkpoint (it must pickle)."""
        ...


class Checkpointer:
    """The checkpoints of one run folder: due every ``every`` iterations, each iteration saved at most once.

    ``Checkpointer(None)`` saves nothing (a run without a folder). The state is asked for
    only when a checkpoint is written (it pickles the environments).

    Args:
        run_dir: the run folder, or ``None``.
        every: save after every ``every``-th iteration (0: only when asked to).
    """

    def __init__(self, run_dir: str | Path | None, every: int = 0) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.every = int(every)
        self.saved_at = -1
        """The iteration of the last checkpoint this object wrote (-1: none yet)."""

    @property
    def path(self) -> Path | None:
        """Where the latest checkpoint lives (``None`` without a run folder)."""
        return checkpoint_path(self.run_dir) if self.run_dir is not None else None

    def save(self, run: Checkpointable) -> None:
        """Write ``run``'s state as the latest checkpoint (atomically; see :func:`save_checkpoint`)."""
        if self.run_dir is not None:
            save_checkpoint(self.run_dir, run.state_dict())
            self.saved_at = run.iteration

    def save_if_due(self, run: Checkpointable) -> None:
        """:meth:`save` when ``run.iteration`` is a multiple of ``every``."""
        if self.every and run.iteration % self.every == 0:
            self.save(run)

    def save_if_unsaved(self, run: Checkpointable) -> None:
        """:meth:`save` unless this iteration is saved already (the end of a run, a signal, a stop)."""
        if self.saved_at != run.iteration:
            self.save(run)

    def load(self) -> dict[str, Any]:
        """The latest checkpoint, with every key a resume needs (see :func:`load_checkpoint`, :func:`require_keys`)."""
        if self.run_dir is None:
            raise ConfigError("a run without a folder has no checkpoint")
        state = load_checkpoint(self.run_dir)
        require_keys(self.run_dir, state)
        return state
