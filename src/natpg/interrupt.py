"""SIGINT (Ctrl-C) and SIGTERM during training: finish the iteration, save a checkpoint, stop.

Inside :func:`deferred_signals` the two signals only *request* a stop: the trainer
checks :func:`pending` after each iteration (its log rows are on disk by then), saves a
checkpoint and raises :class:`Interrupted`; the command line prints one line and exits
with the conventional code ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM).
With ``force_on_second``, a second signal stops at once, without a new checkpoint (the
last one is kept, so the run is still resumable).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_pending: int | None = None


class Interrupted(BaseException):
    """Training stopped on a signal.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` does not record it
    as a failure.
    """

    def __init__(self, signum: int, checkpoint_saved: bool = False, global_step: int | None = None) -> None:
        self.signum = int(signum)
        self.checkpoint_saved = checkpoint_saved
        self.global_step = global_step
        super().__init__(f"interrupted by {self.name}")

    @property
    def name(self) -> str:
        """The signal's name, such as ``"SIGINT"`` or ``"SIGTERM"``."""
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number."""
        return 128 + self.signum


def pending() -> int | None:
    """The first signal received inside :func:`deferred_signals` and not yet acted on, else ``None``."""
    return _pending


def request(signum: int) -> None:
    """Ask for a stop as if ``signum`` had arrived (used by the handlers; handy in tests)."""
    global _pending
    if _pending is None:
        _pending = int(signum)


@contextmanager
def deferred_signals(force_on_second: bool = True) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into stop requests (see the module docstring) for the block's duration.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        if _pending is not None and force_on_second:
            raise Interrupted(signum)
        request(signum)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    _pending = None
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _pending = None
