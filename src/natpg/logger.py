"""Where a run's numbers go: a :class:`Logger` hands each record to its writers (CSV, TensorBoard), which take any namespaced key.

Keys are namespaced (``rollout/…``, ``train/…``, ``time/…``, ``eval/…``) and the x-axis is
always the global step. A run folder has three CSV streams and, optionally, TensorBoard:

* ``iterations.csv``: one row per iteration (:meth:`Logger.log`, which also feeds any other
  :attr:`Logger.writers`);
* ``episodes.csv``: one row per finished episode (:meth:`Logger.log_episodes`);
* ``eval.csv``: one row per periodic evaluation (:meth:`Logger.log_eval`);
* ``tensorboard/``: every numeric namespaced key of the three (:class:`TensorBoardWriter`).

**A key the CSV header lacks.** A new CSV's header is written with its first row: the known
columns (:data:`~natpg.runlog.ITERATION_COLUMNS` …) first, then the first record's other keys
in their order (an update rule's extras, ``train/cg_residual``, ``train/line_search_failed``,
…; a rule reports them from its first iteration). An existing file keeps its own header, so a
run folder written before a key existed resumes as it is. A record that brings a key the
header lacks (a folder from before, or a key a rule reports only on some paths) adds it as a
new last column: the file is rewritten atomically (a temporary file, then a rename) with the
longer header and an empty field in every earlier row, then the row is appended. Every line
therefore has as many fields as the header, no key is ever dropped, and a process killed at
any instant leaves the old file or the new one.

Every CSV row is flushed as soon as it is written, so a run that dies keeps everything logged
before it died; on resume :func:`truncate_csv` cuts each CSV back to the checkpoint.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol, Sequence

from natpg.config import ConfigError
from natpg.rollout import Episode
from natpg.runlog import (
    EPISODE_COLUMNS,
    EPISODES_FILE,
    EVAL_COLUMNS,
    EVAL_FILE,
    ITERATION_COLUMNS,
    ITERATIONS_FILE,
    TENSORBOARD_DIR,
    write_atomic,
    write_config,
)

Value = float | int | str | bool
"""What a record holds: scalars (a string such as ``train/skip_reason`` goes to the CSV only)."""


class Writer(Protocol):
    """Takes records ``{key: value}`` at a global step."""

    def write(self, step: int, values: Mapping[str, Value]) -> None:
        """Record ``values`` at ``step``."""
        ...

    def flush(self) -> None:
        """Push what was written to storage."""
        ...

    def close(self) -> None:
        """Flush and release the writer."""
        ...


class CSVWriter:
    r"""One CSV row per record; a key the header lacks becomes a new last column (see the module docstring).

    Args:
        path: the CSV file; appended to if it exists (its header is kept), created otherwise.
        columns: the header of a new file: the known columns, in order.
        step_key: the column that receives the ``step`` of :meth:`write`.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "log.csv"
        >>> w = CSVWriter(path, ["global_step", "train/loss"])
        >>> w.write(1000, {"train/loss": 0.5})
        >>> w.write(2000, {"train/loss": 0.25, "train/cg_residual": 1e-3})
        >>> w.close()
        >>> print(path.read_text().replace("\\r", ""), end="")
        global_step,train/loss,train/cg_residual
        1000,0.5,
        2000,0.25,0.001
    """

    def __init__(self, path: str | Path, columns: Sequence[str], step_key: str = "global_step") -> None:
        self.path = Path(path)
        self.step_key = step_key
        self._header_written = self.path.exists() and self.path.stat().st_size > 0
        self.columns = _read_header(self.path) if self._header_written else list(columns)
        self._known = set(self.columns)
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._fh)

    def write(self, step: int, values: Mapping[str, Value]) -> None:
        """Append the row ``{step_key: step, **values}`` (a missing column is left empty) and flush it."""
        self.write_many([(step, values)])

    def write_many(self, records: Iterable[tuple[int, Mapping[str, Value]]]) -> None:
        """Append one row per ``(step, values)`` and flush once."""
        try:
            for step, values in records:
                row = {self.step_key: step, **values}
                new = [k for k in row if k not in self._known]
                if not self._header_written:
                    self._write_header(new)
                elif new:
                    self._add_columns(new)
                self._writer.writerow([_fmt(row.get(c, "")) for c in self.columns])
            self._fh.flush()
        except OSError as exc:  # e.g. a full disk: name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc

    def _write_header(self, new: list[str]) -> None:
        self.columns += new
        self._known.update(new)
        self._writer.writerow(self.columns)
        self._header_written = True

    def _add_columns(self, new: list[str]) -> None:
        """Rewrite the file atomically with ``new`` as its last columns and empty fields in the rows so far."""
        self._fh.flush()
        self._fh.close()
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        columns = self.columns + new
        text = io.StringIO()
        out = csv.writer(text)
        out.writerow(columns)
        for fields in rows[1:]:
            out.writerow(fields + [""] * (len(columns) - len(fields)))
        data = text.getvalue().encode("utf-8")
        try:
            write_atomic(self.path, lambda fh: fh.write(data))
        finally:  # the old file on failure, the new one on success: append to whichever is there
            self._fh = open(self.path, "a", newline="", encoding="utf-8")
            self._writer = csv.writer(self._fh)
        self.columns = columns
        self._known.update(new)

    def flush(self) -> None:
        """Flush the file."""
        self._fh.flush()

    def close(self) -> None:
        """Close the file (a file that got no row gets its known columns as its header)."""
        if not self._fh.closed and not self._header_written:
            try:
                self._write_header([])
                self._fh.flush()
            except OSError:  # e.g. a full disk: the error that stops the run has been raised already
                pass
        self._fh.close()


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # shortest round-trip representation: bit-exact on reload
    if isinstance(v, bool):
        return int(v)
    return v


class TensorBoardWriter:
    """TensorBoard event files; every numeric entry whose key is namespaced (holds a ``/``) becomes one scalar.

    Args:
        log_dir: the event files' folder.
        purge_step: set on resume to the checkpoint's global step + 1: TensorBoard then discards
            the events a killed run wrote after its last checkpoint, so the resumed run continues
            the same axis.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        self.writer = _summary_writer_class()(str(log_dir), purge_step=purge_step)

    def write(self, step: int, values: Mapping[str, Value]) -> None:
        """Add each numeric ``group/name`` value as a scalar at ``step`` (other keys are not written)."""
        for key, value in values.items():
            if "/" in key and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        """Flush the TensorBoard event file."""
        self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        self.writer.close()


def _summary_writer_class():
    """Torch's ``SummaryWriter``; a :class:`~natpg.config.ConfigError` when TensorBoard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard=True needs the tensorboard package; "
                          "install it with: pip install 'natpg[tensorboard]'") from None
    return SummaryWriter


def check_tensorboard() -> None:
    """Raise :class:`~natpg.config.ConfigError` now, before a run starts, if TensorBoard is missing."""
    _summary_writer_class()


class Logger:
    """The logs of one run: each record goes to the writers of its stream (see the module docstring).

    ``Logger()`` writes nothing (a run without a folder); :meth:`open` opens a run folder's logs.
    :attr:`writers` receive :meth:`log`'s per-iteration records; more can be appended to it.
    """

    def __init__(self, iterations: CSVWriter | None = None, episodes: CSVWriter | None = None,
                 eval_path: Path | None = None, tensorboard: TensorBoardWriter | None = None) -> None:
        self.episodes = episodes
        self.tensorboard = tensorboard
        self.writers: list[Writer] = [w for w in (iterations, tensorboard) if w is not None]
        self._eval_path = eval_path
        self._eval: CSVWriter | None = None

    @classmethod
    def open(cls, run_dir: str | Path, config: dict[str, Any], tensorboard: bool = False,
             purge_step: int | None = None) -> "Logger":
        """Open (creating if needed) the logs of ``run_dir``.

        ``config`` is written first (with the system record), before any CSV exists, so a folder
        that holds logs always holds its config too. ``tensorboard`` adds a
        :class:`TensorBoardWriter` on ``RUN_DIR/tensorboard`` with ``purge_step``.
        """
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(run_dir, config)
        return cls(CSVWriter(run_dir / ITERATIONS_FILE, ITERATION_COLUMNS),
                   CSVWriter(run_dir / EPISODES_FILE, EPISODE_COLUMNS), run_dir / EVAL_FILE,
                   TensorBoardWriter(run_dir / TENSORBOARD_DIR, purge_step) if tensorboard else None)

    def log(self, step: int, values: Mapping[str, Value]) -> None:
        """One iteration's record at global step ``step``: a row of ``iterations.csv`` and its scalars."""
        for writer in self.writers:
            writer.write(step, values)

    def log_episodes(self, episodes: Sequence[Episode]) -> None:
        """Log finished episodes: one ``episodes.csv`` row each.

        Also ``rollout/episode_return``/``_length`` at the global step where each ended.
        """
        if self.episodes is not None:
            self.episodes.write_many((e.global_step, {"return": e.ret, "length": e.length,
                                                      "terminated": e.terminated}) for e in episodes)
        if self.tensorboard is not None:
            for e in episodes:
                self.tensorboard.write(e.global_step, {"rollout/episode_return": e.ret,
                                                       "rollout/episode_length": e.length})

    def log_eval(self, step: int, values: Mapping[str, Value]) -> None:
        """An evaluation's record: a row of ``eval.csv`` (created on first use) and its scalars."""
        if self._eval_path is not None:
            if self._eval is None:
                self._eval = CSVWriter(self._eval_path, EVAL_COLUMNS)
            self._eval.write(step, values)
        if self.tensorboard is not None:
            self.tensorboard.write(step, values)

    def flush(self) -> None:
        """Flush TensorBoard (CSV rows are flushed as they are written)."""
        if self.tensorboard is not None:
            self.tensorboard.flush()

    def close(self) -> None:
        """Close every writer, the episode and eval logs included."""
        for writer in (*self.writers, self.episodes, self._eval):
            if writer is not None:
                writer.close()


def truncate_logs(run_dir: str | Path, iteration: int, global_step: int) -> None:
    """Cut a run folder's CSVs back to what was logged up to a checkpoint at ``iteration`` / ``global_step``.

    A run killed after it wrote rows but before its next checkpoint logged rows that the
    resumed run logs again; after this, it appends without duplicate or missing rows.
    """
    run_dir = Path(run_dir)
    truncate_csv(run_dir / ITERATIONS_FILE, "iteration", iteration)
    truncate_csv(run_dir / EVAL_FILE, "iteration", iteration)
    truncate_csv(run_dir / EPISODES_FILE, "global_step", global_step)


def read_episodes(run_dir: str | Path) -> list[Episode]:
    """The episodes of ``RUN_DIR/episodes.csv`` (none when it is missing).

    Raises:
        ConfigError: the file is damaged (naming it).
    """
    path = Path(run_dir) / EPISODES_FILE
    try:
        return [Episode(int(r["global_step"]), float(r["return"]), int(r["length"]), bool(int(r["terminated"])))
                for r in read_csv_rows(path)]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"log {str(path)!r} is damaged: {type(exc).__name__}: {exc}") from None


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
