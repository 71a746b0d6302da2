"""Grid runner: every (env, algorithm, seed) as its own training run, on a process pool or on Ray.

Each run goes through the trainer's public API only (:func:`natpg.make_config`,
:func:`natpg.train`) and writes its own folder (see :mod:`natpg.experiments.store`).
The grid is restartable and robust: a run finished at the planned config is skipped; an
unfinished one resumes from its last checkpoint. A folder that holds *another* config (a
rerun with other ``--steps``/``--set``) stops the grid before anything runs, with one line
naming the differing fields, unless ``overwrite`` is given: then natpg's files in it are
deleted and the run is trained again from scratch. Each worker holds the run folder's lock
(:class:`natpg.runfolder.RunLock`) while it writes it; a run locked by another process is
skipped and reported as such. A run that raises, outlives the per-run time limit or is
killed by the OS leaves an ``error.json`` with the reason, is retried up to ``retries``
times (resuming from its checkpoint), and never blocks the others. SIGINT/SIGTERM (see
:func:`run_grid`) are forwarded to the workers, which checkpoint and stop.

Example:
    >>> runs = plan_grid(["CartPole-v1"], ["smac", "ac-sgd"], [0, 1], "runs/demo", {"total_steps": 2000})
    >>> [(r.label, r.seed) for r in runs]
    [('smac', 0), ('ac-sgd', 0), ('smac', 1), ('ac-sgd', 1)]
"""

from __future__ import annotations

import enum
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from natpg.config import ConfigError
from natpg.experiments.store import ERROR_FILE, run_folder, variant_label, write_error
from natpg.interrupt import Interrupted, deferred_signals
from natpg.interrupt import pending as pending_signal
from natpg.runfolder import (
    RunLock,
    RunLocked,
    canonical,
    clear_run_folder,
    config_differences,
    finished_at,
    holds_files,
    is_run_folder,
    make_writable_folder,
    read_config,
)
from natpg.runlog import ITERATIONS_FILE


class Backend(str, enum.Enum):
    """Where the runs of a grid execute."""

    LOCAL = "local"  #: a process pool on this machine, one torch thread per worker
    RAY = "ray"      #: Ray tasks (one CPU each) on an existing cluster or a local one started for the job


class Suite(str, enum.Enum):
    """Named sets of environments (the paper's two halves, or both)."""

    CLASSIC = "classic"
    MUJOCO = "mujoco"
    PAPER = "paper"


SUITE_ENVS: dict[Suite, tuple[str, ...]] = {
    Suite.CLASSIC: ("CartPole-v1", "Acrobot-v1", "Pendulum-v1"),
    Suite.MUJOCO: ("HalfCheetah-v5", "Hopper-v5", "Swimmer-v5", "Walker2d-v5", "Humanoid-v5", "Pusher-v5"),
}
SUITE_ENVS[Suite.PAPER] = SUITE_ENVS[Suite.CLASSIC] + SUITE_ENVS[Suite.MUJOCO]

PAPER_ALGOS = ("smac", "ac-sgd", "ac-adam", "ac-cg")
MAX_SEEDS = 10_000
"""The most seeds one grid may name."""


def parse_choice(enum_cls: type[enum.Enum], value: str, what: str) -> Any:
    """``enum_cls(value)`` with one clear :class:`ConfigError` naming the allowed values."""
    try:
        return enum_cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(str(e.value) for e in enum_cls)
        raise ConfigError(f"unknown {what} {value!r}; allowed: {allowed}") from None


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,7"`` or a mix such as ``"0-2,9"`` (order kept, duplicates dropped).

    Example:
        >>> parse_seeds("0-2,7")
        [0, 1, 2, 7]
    """
    seeds: dict[int, None] = {}
    try:
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            first, last = int(lo), int(hi) if sep else int(lo)
            if last < first:
                raise ValueError
            _check_seed_span(first, last, text)
            seeds.update(dict.fromkeys(range(first, last + 1)))
            if len(seeds) > MAX_SEEDS:
                raise ConfigError(f"--seeds {text!r} names more than {MAX_SEEDS} seeds; allowed: at most {MAX_SEEDS}")
    except ConfigError:
        raise
    except ValueError:
        raise ConfigError(f"--seeds {text!r} is not a seed list; allowed: e.g. 0-4 or 0,2,7") from None
    if not seeds or min(seeds) < 0:
        raise ConfigError(f"--seeds {text!r} is not a seed list; allowed: integers >= 0, e.g. 0-4 or 0,2,7")
    return list(seeds)


def _check_seed_span(lo: int, hi: int, text: str) -> None:
    """Refuse seeds beyond :data:`natpg.config.SEED_MAX` and lists too long to be a grid (before expanding them)."""
    from natpg.config import SEED_MAX

    if max(lo, hi) > SEED_MAX:
        raise ConfigError(f"--seeds {text!r}: seed {max(lo, hi)} is too large; allowed: 0 to {SEED_MAX} (2**32 - 1)")
    if hi - lo + 1 > MAX_SEEDS:
        raise ConfigError(f"--seeds {text!r} names {hi - lo + 1} seeds; allowed: at most {MAX_SEEDS} per grid")


def split_list(text: str) -> list[str]:
    """``"a,b , c"`` → ``['a', 'b', 'c']``."""
    return [p.strip() for p in str(text).split(",") if p.strip()]


@dataclass(frozen=True)
class GridRun:
    """One (env, algorithm, seed) training run of a grid, and where it writes."""

    env: str
    algo: str
    seed: int
    overrides: Mapping[str, Any]
    run_dir: Path
    env_id: str
    label: str
    total_steps: int
    n_steps: int
    preset: str = "paper"
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The planned config as it reads back from ``config.json``."""

    @property
    def name(self) -> str:
        """A readable name for the run: its env id, label and seed."""
        return f"{self.env_id} {self.label} seed{self.seed}"

    def spec(self) -> dict[str, Any]:
        """Plain, picklable description sent to a worker (and stored in ``error.json``)."""
        return {"env": self.env, "algo": self.algo, "seed": self.seed, "overrides": dict(self.overrides),
                "run_dir": str(self.run_dir), "env_id": self.env_id, "batch_size": self.overrides.get("batch_size"),
                "total_steps": self.total_steps, "preset": self.preset}


def plan_grid(envs: Sequence[str], algos: Sequence[str], seeds: Sequence[int], out: str | Path,
              overrides: Mapping[str, Any] | None = None,
              variants: Sequence[Mapping[str, Any]] | None = None, preset: str = "paper") -> list[GridRun]:
    """The runs of ``envs × algos × seeds``, validated, in the order they will start.

    Order is env-major, then seed, then algorithm, so a grid stopped early has the
    same number of seeds for every algorithm of the envs it reached.

    Args:
        envs: Gymnasium ids or preset short names.
        algos: algorithm names (see :class:`natpg.Algo`).
        seeds: random seeds.
        out: the grid folder; run folders go to ``out/ENV/LABEL/seedN``.
        overrides: config fields set for every run (e.g. ``{"total_steps": 20_000}``).
        variants: extra override sets crossed with each algorithm (e.g. ``[{"batch_size": 1},
            {"batch_size": 1000}]`` for the batch-size ablation); ``None`` is one plain variant.
        preset: the preset set every run starts from (``paper`` or ``paper-inferred``).

    Raises:
        ConfigError: any run's config is invalid (nothing is run or written).
    """
    from natpg import make_config

    if not envs or not algos or not seeds:
        raise ConfigError("a grid needs at least one env, one algorithm and one seed")
    runs: list[GridRun] = []
    for env in envs:
        for seed in seeds:
            for algo in algos:
                for variant in variants or [{}]:
                    ov = {**dict(overrides or {}), **dict(variant)}
                    cfg = make_config(env, algo, seed, ov, preset=preset)
                    label = variant_label(cfg.to_dict())
                    runs.append(GridRun(env=env, algo=cfg.algo.value, seed=seed, overrides=ov,
                                        run_dir=run_folder(Path(out).absolute(), cfg.env_id, label, seed),
                                        env_id=cfg.env_id, label=label, total_steps=cfg.total_steps,
                                        n_steps=cfg.n_steps, preset=preset, config=canonical(cfg.to_dict())))
    dirs = [r.run_dir for r in runs]
    if len(set(dirs)) != len(dirs):
        raise ConfigError("the grid names the same (env, algorithm, seed) twice; list each env, algorithm and seed once")
    return runs


def check_existing(runs: Sequence[GridRun], overwrite: bool = False) -> None:
    """Refuse, before anything runs, run folders this grid must not touch.

    Raises:
        ConfigError: one line when a folder holds another config (unless ``overwrite``: those are
            trained again from scratch), holds files but is not a natpg run, or holds a damaged
            ``config.json``/``summary.json``.
    """
    conflicts = []
    for run in runs:
        if not holds_files(run.run_dir):
            continue
        saved = read_config(run.run_dir)
        if saved is None:
            if not is_run_folder(run.run_dir):
                raise ConfigError(f"{str(run.run_dir)!r} holds files but is not a natpg run folder; "
                                  f"move them away or choose another --out")
        elif saved != dict(run.config):
            conflicts.append((run, config_differences(saved, dict(run.config))))
        else:
            finished_at(run.run_dir, dict(run.config))  # a damaged summary.json is refused here
    if conflicts and not overwrite:
        run, diff = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ConfigError(f"{len(conflicts)} run folder(s) hold another config than this grid asks for: "
                          f"{run.run_dir} differs in {', '.join(diff)} (saved→asked){more}; pass --overwrite to train them again "
                          f"from scratch (natpg's files in them are deleted), or choose another --out")


def check_env_ids(runs: Sequence[GridRun]) -> None:
    """Raise :class:`ConfigError` for an env id Gymnasium does not know (before anything runs)."""
    from natpg.envs import check_env_id

    for env_id in dict.fromkeys(r.env_id for r in runs):
        check_env_id(env_id)


# --------------------------------------------------------------------------- one run (in a worker)

def _one_thread() -> None:
    """Each worker uses one torch thread: runs are parallel across processes, not inside them."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def execute_run(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one run of a grid in the current process; never raises for a failing run.

    The run folder is locked first; a folder locked by another process is left alone
    (``busy``). A folder finished at the planned config is left alone (``skipped``). One
    whose saved config is the planned one resumes from its last checkpoint
    (:func:`natpg.trainer.resume_locked`); one holding another config is cleared of natpg's
    files and trained again only when ``spec["overwrite"]``, else the run fails with one
    line. An exception inside training is written to ``error.json`` (message and traceback)
    and reported as ``failed``; SIGINT/SIGTERM make the run checkpoint and report ``interrupted``.
    """
    from natpg import make_config
    from natpg.trainer import Trainer, resume_locked

    _one_thread()
    run_dir = Path(spec["run_dir"])
    start = time.perf_counter()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock.acquire(run_dir)
    except RunLocked as exc:
        return {"status": "busy", "run_dir": str(run_dir), "error": str(exc)}
    except (ConfigError, OSError) as exc:
        return {"status": "failed", "run_dir": str(run_dir), "error": f"{type(exc).__name__}: {exc}",
                "wall_time_s": 0.0}
    with lock:
        try:
            cfg = make_config(spec["env"], spec["algo"], spec["seed"], spec["overrides"],
                              preset=spec.get("preset", "paper"))
            planned = canonical(cfg.to_dict())
            if finished_at(run_dir, planned):
                return {"status": "skipped", "run_dir": str(run_dir)}
            saved = read_config(run_dir)
            if saved == planned:
                (run_dir / ERROR_FILE).unlink(missing_ok=True)
                result = resume_locked(run_dir, total_steps=cfg.total_steps)
            else:
                if saved is not None and not spec.get("overwrite"):
                    raise ConfigError(f"{run_dir} holds another config ({', '.join(config_differences(saved, planned))})"
                                      f"; rerun with --overwrite to train it again")
                if holds_files(run_dir) and not is_run_folder(run_dir):
                    raise ConfigError(f"{run_dir} holds files but is not a natpg run folder; move them away")
                clear_run_folder(run_dir)
                trainer = Trainer(cfg)
                result = trainer.run(run_dir)
        except Interrupted as exc:
            return {"status": "interrupted", "run_dir": str(run_dir), "signal": exc.name,
                    "global_step": exc.global_step}
        except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded, the grid goes on
            _record_error(run_dir, exc, spec)
            return {"status": "failed", "run_dir": str(run_dir), "error": f"{type(exc).__name__}: {exc}",
                    "wall_time_s": time.perf_counter() - start}
    return {"status": "finished", "run_dir": str(run_dir), "wall_time_s": result.wall_time_s,
            "global_step": result.global_step, "final_return": result.final_return}


def _record_error(run_dir: Path, exc: BaseException, spec: dict[str, Any]) -> None:
    """:func:`write_error`, unless the folder cannot be written (full disk, read-only): the outcome still says why."""
    try:
        write_error(run_dir, exc, spec)
    except OSError:
        pass


def _execute_in_child(spec: dict[str, Any], conn: Any, parent: int) -> None:
    """Entry point of a local worker process: run, then send the outcome back through ``conn``.

    A watchdog ends the worker when the grid process that started it dies (even by SIGKILL),
    so an orphan never goes on writing into a run folder that a rerun of the grid resumes.
    """
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(3)

    if os.getppid() != parent:  # the grid died while this worker was starting
        os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    with deferred_signals(force_on_second=False):  # the grid forwards SIGINT/SIGTERM; a run checkpoints and stops
        outcome = execute_run(spec)
    conn.send(outcome)
    conn.close()


# --------------------------------------------------------------------------- backends

class RunFailure(Exception):
    """A worker ended without an outcome: killed by a signal, exited, or timed out."""


@dataclass(eq=False)
class _LocalHandle:
    process: Any
    conn: Any


class _LocalProcesses:
    """One fresh (spawned) interpreter per run, one torch thread each.

    A process per run, rather than a shared pool, means a run that hangs can be killed
    on its time limit and a run the OS kills (out of memory, SIGKILL) takes nothing
    else down with it; the exit status says what happened.
    """

    def __init__(self, workers: int) -> None:
        import multiprocessing

        self.workers = workers
        self._ctx = multiprocessing.get_context("spawn")

    def submit(self, spec: dict[str, Any]) -> _LocalHandle:
        parent, child = self._ctx.Pipe(duplex=False)
        # Not daemonic, so that a run may start processes itself (vectorization=async); the worker's
        # watchdog still ends it when the grid dies, and the grid cancels its workers when it stops.
        process = self._ctx.Process(target=_execute_in_child, args=(spec, child, os.getpid()), daemon=False)
        with _signals_ignored():  # the worker starts with them ignored until it installs its own handlers
            process.start()
        child.close()
        return _LocalHandle(process, parent)

    def interrupt(self, handle: _LocalHandle, signum: int) -> None:
        """Forward ``signum`` to the worker (it checkpoints and reports ``interrupted``)."""
        if handle.process.is_alive():
            try:
                os.kill(handle.process.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, handles: list[_LocalHandle], timeout: float) -> list[_LocalHandle]:
        from multiprocessing.connection import wait as mp_wait

        ready = set(mp_wait([h.process.sentinel for h in handles] + [h.conn for h in handles], timeout=timeout))
        return [h for h in handles if h.process.sentinel in ready or h.conn in ready]

    def result(self, handle: _LocalHandle) -> dict[str, Any]:
        try:
            outcome = handle.conn.recv() if handle.conn.poll(5.0) else None
        except (EOFError, OSError):
            outcome = None
        handle.process.join(timeout=30)
        handle.conn.close()
        if outcome is not None:
            return outcome
        raise RunFailure(_exit_reason(handle.process.exitcode))

    def cancel(self, handle: _LocalHandle) -> None:
        handle.process.kill()
        handle.process.join(timeout=30)
        handle.conn.close()

    def close(self) -> None:
        pass


class _signals_ignored:
    """SIGINT and SIGTERM ignored for the block (main thread only).

    A process started inside the block inherits them ignored: a Ctrl-C reaching it while it
    imports does not end it with a traceback.
    """

    def __enter__(self) -> None:
        import threading

        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


def _exit_reason(code: int | None) -> str:
    """Words for a worker's exit status."""
    if code is None:
        return "worker did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker killed by {name} (e.g. by the OS when out of memory)"
    return f"worker exited with code {code} without a result"


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``HOST:PORT`` Ray address nothing listens on (``ray.init`` would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto", "ray://..." and other forms are left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at --ray-address {address!r}: {exc}") from None


class _RayPool:
    """Ray tasks with one CPU each, on ``address`` or on a local cluster started here."""

    def __init__(self, workers: int | None, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'natpg[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            env = {"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}
            if address:
                _check_reachable(address)
                try:
                    ray.init(address=address, runtime_env=env, log_to_driver=False)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise ConfigError(f"cannot connect to the Ray cluster at --ray-address {address!r}: "
                                      f"{str(exc).splitlines()[0]}") from None
            else:
                # Ray lowers its workers' priority (nice 15) by default; here they are the job's main work,
                # and on a busy machine a niced worker can wait minutes just to import torch.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         runtime_env=env)
        self.workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._task = ray.remote(num_cpus=1, max_retries=0)(execute_run)

    def submit(self, spec: dict[str, Any]) -> Any:
        return self._task.remote(spec)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1, timeout=timeout)
        return list(done)

    def result(self, handle: Any) -> dict[str, Any]:
        try:
            return self._ray.get(handle)
        except self._ray.exceptions.RayError as exc:  # worker crashed or was killed
            raise RunFailure(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=True)

    def interrupt(self, handle: Any, signum: int) -> None:
        """Ray tasks cannot be sent a signal: the task is cancelled (it keeps its last periodic checkpoint)."""
        self._ray.cancel(handle, force=False)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


# --------------------------------------------------------------------------- the grid

@dataclass
class GridOutcome:
    """What happened to each run of a grid (run names, see :attr:`GridRun.name`)."""

    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)
    """Runs skipped because another natpg process holds their folder's lock."""
    interrupted: list[str] = field(default_factory=list)
    """Runs stopped (at a checkpoint) by a forwarded SIGINT/SIGTERM."""
    signal: int | None = None
    """The signal that stopped the grid, if one did."""
    wall_time_s: float = 0.0


def _steps_logged(run: GridRun) -> int:
    """Steps a running run has logged so far (lines of its iterations.csv × T), for the time estimate."""
    path = run.run_dir / ITERATIONS_FILE
    try:
        with open(path, "rb") as fh:
            lines = sum(1 for _ in fh)
    except OSError:
        return 0
    return min(max(lines - 1, 0) * run.n_steps, run.total_steps)


def _fmt_duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Display:
    """Live view of a grid: runs done / running / failed and the time left (rich).

    On a terminal it draws a progress bar; elsewhere (a log file) it prints one line per run.
    Time left = remaining steps / steps per second achieved so far in this invocation.
    """

    def __init__(self, runs: Sequence[GridRun], n_skipped: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.total_runs = len(runs) + n_skipped
        self.todo_steps = sum(r.total_steps for r in runs)
        self.enabled = enabled
        self.start = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]grid"), BarColumn(),
            TextColumn("{task.fields[done]}/{task.fields[runs]} done · {task.fields[running]} running · "
                       "[red]{task.fields[failed]} failed[/] · left {task.fields[left]}"),
            TimeElapsedColumn(), console=self.console, disable=not (enabled and self.console.is_terminal),
        )
        self._task = self._progress.add_task("grid", total=max(self.todo_steps, 1), done=n_skipped,
                                             runs=self.total_runs, running=0, failed=0, left="?")

    def __enter__(self) -> "_Display":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def time_left(self, steps_done: int) -> float:
        elapsed = time.perf_counter() - self.start
        if steps_done <= 0:
            return float("nan")
        return elapsed * (self.todo_steps - steps_done) / steps_done

    def update(self, done: int, running: int, failed: int, steps_done: int) -> None:
        self._progress.update(self._task, completed=steps_done, done=done, running=running, failed=failed,
                              left=_fmt_duration(self.time_left(steps_done)))

    def note(self, text: str, done: int, failed: int, steps_done: int) -> None:
        if self.enabled:
            self.console.print(f"[{done}/{self.total_runs}, {failed} failed, elapsed "
                               f"{_fmt_duration(time.perf_counter() - self.start)}, left "
                               f"{_fmt_duration(self.time_left(steps_done))}] {text}", highlight=False, soft_wrap=True)


INTERRUPT_GRACE_S = 60.0
"""After SIGINT/SIGTERM, how long the grid waits for its workers to checkpoint before killing them."""


def run_grid(runs: Sequence[GridRun], backend: Backend | str = Backend.LOCAL, workers: int | None = None,
             ray_address: str | None = None, display: bool = True,
             on_result: Callable[[GridRun, dict[str, Any]], None] | None = None,
             timeout_s: float | None = None, retries: int = 1, overwrite: bool = False) -> GridOutcome:
    """Run every run of the grid (skipping finished ones) with at most ``workers`` at a time.

    Runs start in the given order. Runs finished at the planned config are skipped; unfinished
    ones resume from their checkpoint; folders holding another config are refused up front
    (:func:`check_existing`) unless ``overwrite``. A run whose folder another process has locked
    is skipped (``outcome.busy``). A run that raises, runs longer than ``timeout_s`` (it is
    killed) or whose worker dies (killed by the OS, say) gets an ``error.json`` with the reason
    and is retried up to ``retries`` more times, resuming from its last checkpoint; the other
    runs go on meanwhile. Runs still failing after that are listed in the outcome.

    A SIGINT/SIGTERM received inside :func:`natpg.interrupt.deferred_signals` (``natpg bench``
    sets it up) starts no further run and is forwarded to the local workers, which save a
    checkpoint and stop (Ray tasks are cancelled); ``outcome.signal`` is set.

    Args:
        runs: from :func:`plan_grid`.
        backend: ``local`` (one spawned process per run) or ``ray``.
        workers: runs at a time; default the number of cores (local) or the cluster's CPUs (ray).
        ray_address: address of an existing Ray cluster; ``None`` starts a local one for the job.
        display: show the live view (a bar on a terminal, one line per run otherwise).
        on_result: called in this process with each run and its final outcome.
        timeout_s: wall-clock limit of one attempt of one run (``None``: no limit).
        retries: further attempts for a run that failed.
        overwrite: train folders holding another config again from scratch (deleting natpg's files in them).

    Raises:
        ConfigError: bad arguments, or :func:`check_existing` refuses a folder (nothing has run).
    """
    backend = parse_choice(Backend, backend.value if isinstance(backend, Backend) else backend, "backend")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers} must be an integer >= 1")
    if timeout_s is not None and not timeout_s > 0:
        raise ConfigError(f"--run-timeout {timeout_s} must be a number of seconds > 0")
    if retries < 0:
        raise ConfigError(f"--retries {retries} must be an integer >= 0")
    check_existing(runs, overwrite)
    outcome = GridOutcome()
    todo = []
    for run in runs:
        if finished_at(run.run_dir, dict(run.config) or None):
            outcome.skipped.append(run.name)
        else:
            todo.append(run)
    start = time.perf_counter()
    if not todo:
        return outcome
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by spawned workers before they import torch
    pool = (_LocalProcesses(workers or os.cpu_count() or 1) if backend is Backend.LOCAL
            else _RayPool(workers, ray_address))
    try:  # one clear line for an --out that cannot be written, before any worker starts
        make_writable_folder(Path(os.path.commonpath([r.run_dir for r in runs])))
    except ConfigError:
        pool.close()
        raise
    pending = list(todo)
    attempts: dict[str, int] = {}
    in_flight: dict[Any, tuple[GridRun, float]] = {}
    done_steps = 0
    try:
        with _Display(todo, len(outcome.skipped), display) as view:
            def settle(run: GridRun, res: dict[str, Any]) -> None:
                nonlocal done_steps
                n_done = len(outcome.finished) + len(outcome.skipped) + len(outcome.failed)
                if res["status"] in ("busy", "interrupted", "skipped"):
                    done_steps += run.total_steps
                    getattr(outcome, res["status"]).append(run.name)
                    text = {"busy": f"[yellow]skipped[/] {run.name}: in use by another natpg process "
                                    f"(rerun when it has ended)",
                            "interrupted": f"[yellow]stopped[/] {run.name} at a checkpoint",
                            "skipped": f"skipped {run.name}: already finished"}[res["status"]]
                    view.note(text, n_done, len(outcome.failed), done_steps)
                    return
                if res["status"] == "failed" and attempts[run.name] <= retries and outcome.signal is None:
                    pending.append(run)  # retried after the runs not yet started
                    view.note(f"[yellow]attempt {attempts[run.name]} failed[/] {run.name}: {res['error']}; "
                              f"retrying ({retries - attempts[run.name] + 1} left)", n_done, len(outcome.failed),
                              done_steps)
                    return
                done_steps += run.total_steps
                if res["status"] == "failed":
                    outcome.failed[run.name] = res["error"]
                    text = f"[red]failed[/] {run.name}: {res['error']} (see {run.run_dir / ERROR_FILE})"
                else:
                    outcome.finished.append(run.name)
                    text = (f"finished {run.name} in {_fmt_duration(res.get('wall_time_s', 0.0))}, "
                            f"final return {res.get('final_return', float('nan')):.2f}")
                if on_result is not None:
                    on_result(run, res)
                view.note(text, n_done + 1, len(outcome.failed), done_steps)

            forwarded_at = grace_until = 0.0
            while pending or in_flight:
                if pending_signal() is not None and outcome.signal is None:  # SIGINT/SIGTERM: start nothing more
                    outcome.signal = pending_signal()
                    pending.clear()
                    grace_until = time.monotonic() + INTERRUPT_GRACE_S
                if outcome.signal is not None:
                    if time.monotonic() - forwarded_at >= 1.0:  # again each second: a starting worker may miss one
                        forwarded_at = time.monotonic()
                        for handle in in_flight:
                            pool.interrupt(handle, outcome.signal)
                    if time.monotonic() > grace_until:
                        for handle, (run, _) in list(in_flight.items()):
                            pool.cancel(handle)
                            del in_flight[handle]
                            settle(run, {"status": "interrupted"})
                        break
                while pending and len(in_flight) < pool.workers:
                    run = pending.pop(0)
                    attempts[run.name] = attempts.get(run.name, 0) + 1
                    in_flight[pool.submit({**run.spec(), "overwrite": overwrite})] = (run, time.monotonic())
                for handle in pool.wait(list(in_flight), timeout=1.0):
                    run, _ = in_flight.pop(handle)
                    try:
                        res = pool.result(handle)
                    except RunFailure as exc:  # the worker itself died
                        if outcome.signal is not None:  # ... by the forwarded signal, before it could checkpoint
                            res = {"status": "interrupted"}
                        else:
                            _record_error(run.run_dir, exc, run.spec())
                            res = {"status": "failed", "error": str(exc)}
                    settle(run, res)
                if timeout_s is not None:
                    now = time.monotonic()
                    for handle, (run, started) in list(in_flight.items()):
                        if now - started > timeout_s:
                            pool.cancel(handle)
                            del in_flight[handle]
                            timed_out = RunFailure(f"timed out after {timeout_s:g} s (--run-timeout); worker killed")
                            _record_error(run.run_dir, timed_out, run.spec())
                            settle(run, {"status": "failed", "error": str(timed_out)})
                partial = sum(_steps_logged(r) for r, _ in in_flight.values())
                view.update(len(outcome.finished) + len(outcome.skipped), len(in_flight), len(outcome.failed),
                            done_steps + partial)
    finally:
        for handle in in_flight:
            pool.cancel(handle)
        pool.close()
    outcome.wall_time_s = time.perf_counter() - start
    return outcome


def summarize(outcome: GridOutcome, out: Path) -> str:
    """One line for the end of a grid (and the failed runs, one per line)."""
    busy = f", {len(outcome.busy)} skipped (in use by another natpg process)" if outcome.busy else ""
    msg = (f"grid: {len(outcome.finished)} finished, {len(outcome.skipped)} skipped (already finished){busy}, "
           f"{len(outcome.failed)} failed in {_fmt_duration(outcome.wall_time_s)}; run folders under {out}")
    if outcome.failed:
        msg += "\nfailed runs (their error.json holds the traceback):\n" + "\n".join(
            f"  {name}: {err}" for name, err in outcome.failed.items())
    return msg

