"""The ``natpg`` command line (thin: it parses, then calls the library)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from natpg.config import ConfigError, parse_setting

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Natural policy gradients at the cost of a first-order method (SMAC and baselines).")


def _fail(message: str, code: int = 2) -> "typer.Exit":
    typer.echo(f"natpg: error: {message}", err=True)
    return typer.Exit(code=code)


def _os_failure(exc: OSError, run_dir: Optional[Path] = None) -> "typer.Exit":
    """One line for a file-system failure (full disk, read-only folder, ...), exit code 1."""
    from natpg.runfolder import describe_os_error

    tail = ""
    if run_dir is not None:
        tail = (f"; the run's last checkpoint is kept: free the problem, then continue with "
                f"natpg train --resume {run_dir}")
    return _fail(f"cannot write {describe_os_error(exc)}{tail}", code=1)


def _interrupted(exc, run_dir: Path) -> "typer.Exit":
    """One line for a run stopped by SIGINT/SIGTERM; the exit code is 128 + the signal number."""
    if exc.checkpoint_saved:
        text = (f"natpg: interrupted by {exc.name} at step {exc.global_step}; checkpoint saved in {run_dir}; "
                f"continue with: natpg train --resume {run_dir}")
    else:
        text = (f"natpg: interrupted by {exc.name} again; stopped without a new checkpoint (the last one in "
                f"{run_dir} is kept; natpg train --resume {run_dir} continues from it)")
    typer.echo(text, err=True)
    return typer.Exit(code=exc.exit_code)


@app.command()
def train(
    env: Optional[str] = typer.Option(None, "--env", show_default="required unless --resume",
                                      help="Gymnasium env id (a preset's short name also works, e.g. CartPole)."),
    algo: Optional[str] = typer.Option(None, "--algo", show_default="smac",
                                       help="Actor update: smac, ac-sgd, ac-adam, ac-cg or woodbury."),
    seed: Optional[int] = typer.Option(None, "--seed", show_default="0", help="Random seed."),
    steps: Optional[int] = typer.Option(None, "--steps", show_default="the preset's",
                                        help="Training budget in env steps (with --resume: a new budget)."),
    n_envs: Optional[int] = typer.Option(None, "--n-envs", show_default="1",
                                         help="Environment copies (T stays the same)."),
    settings: Optional[List[str]] = typer.Option(None, "--set", show_default="none",
                                                 help="Override a config field: key=value (repeatable). damping "
                                                      "(smac, woodbury), rank (woodbury) and cg_* (ac-cg) are "
                                                      "accepted only with their algorithm."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="runs/ENV_ALGO_sSEED_TIME", help="Run folder."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", show_default="off",
                                   help="Replace --out if it already holds files."),
    quiet: bool = typer.Option(False, "--quiet", metavar="", show_default="off", help="No progress bar."),
    resume: Optional[Path] = typer.Option(None, "--resume", show_default="off",
                                          help="Continue the run in this folder from its last checkpoint, appending "
                                               "to its logs (only --steps and --quiet may be given with it)."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", show_default="10",
                                                   help="Checkpoint every N iterations and at the end (0: end only)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", show_default="0 = off",
                                             help="Evaluate every N iterations on separately seeded envs "
                                                  "(eval.csv)."),
    eval_episodes: Optional[int] = typer.Option(None, "--eval-episodes", show_default="5",
                                                help="Episodes per periodic evaluation."),
    tensorboard: bool = typer.Option(False, "--tensorboard", metavar="", show_default="off",
                                     help="Also write TensorBoard logs to RUN_DIR/tensorboard (needs natpg\\[tensorboard])."),
    normalize_obs: bool = typer.Option(False, "--normalize-obs", metavar="", show_default="off",
                                       help="Normalise observations by a running mean/std (saved with the model)."),
    env_backend: Optional[str] = typer.Option(None, "--env-backend", show_default="gymnasium",
                                              help="Simulator: gymnasium or envpool (needs the 'bench' extra)."),
    preset: Optional[str] = typer.Option(None, "--preset", show_default="paper",
                                         help="Preset set: paper (the paper's table, read literally) or "
                                              "paper-inferred (plus the adopted reading of its unstated details)."),
) -> None:
    """Train one agent and write its run folder (config, episodes.csv, iterations.csv, summary.json, checkpoints/).

    SIGINT (Ctrl-C) or SIGTERM: the current iteration ends, a checkpoint is saved, one line is printed and the
    exit code is 130 or 143; a second signal stops at once (the last checkpoint is kept).
    """
    from natpg.interrupt import deferred_signals

    with deferred_signals():
        _train(env, algo, seed, steps, n_envs, settings, out, overwrite, quiet, resume, checkpoint_every, eval_every,
               eval_episodes, tensorboard, normalize_obs, env_backend, preset)


def _train(env, algo, seed, steps, n_envs, settings, out, overwrite, quiet, resume, checkpoint_every, eval_every,
           eval_episodes, tensorboard, normalize_obs, env_backend, preset) -> None:
    """The body of ``natpg train`` (inside :func:`natpg.interrupt.deferred_signals`)."""
    from natpg.presets import make_config
    from natpg.trainer import Trainer, prepare_run_dir

    run_options = {"checkpoint_every": checkpoint_every, "eval_every": eval_every, "eval_episodes": eval_episodes,
                   "tensorboard": tensorboard or None, "normalize_obs": normalize_obs or None}
    if resume is not None:
        given = [flag for flag, value in (("--env", env), ("--algo", algo), ("--seed", seed), ("--n-envs", n_envs),
                                          ("--set", settings), ("--out", out), ("--overwrite", overwrite or None),
                                          ("--preset", preset),
                                          *((f"--{k.replace('_', '-')}", v) for k, v in run_options.items()))
                 if value is not None]
        if given:
            raise _fail(f"--resume continues a run with its saved config; {', '.join(given)} cannot be given with it "
                        f"(allowed with --resume: --steps, --quiet)")
        _resume_run(resume, steps, quiet)
        return
    if env is None:
        raise _fail("--env is required (or --resume RUN_DIR to continue a run)")
    try:
        overrides = dict(parse_setting(s) for s in settings or [])
        if steps is not None:
            overrides["total_steps"] = steps
        if n_envs is not None:
            overrides["n_envs"] = n_envs
        if env_backend is not None:
            overrides["env_backend"] = env_backend
        overrides.update({k: v for k, v in run_options.items() if v is not None})
        cfg = make_config(env, algo or "smac", 0 if seed is None else seed, overrides, preset=preset or "paper")
        trainer = Trainer(cfg)  # validates env id and spaces before anything on disk is touched
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _note_whole_iterations([(cfg.total_steps, cfg.n_steps)])
    run_dir = out or Path("runs") / f"{cfg.env_id}_{cfg.algo.value}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        lock = prepare_run_dir(run_dir, overwrite)
    except ConfigError as exc:
        trainer.close()
        raise _fail(str(exc)) from None
    with lock:
        result = _guarded(lambda: trainer.run(run_dir, progress=not quiet and sys.stderr.isatty()), run_dir)
    _report(result, run_dir)


def _guarded(run, run_dir: Path):
    """Call ``run()`` (a training run writing ``run_dir``) and turn its failures into one line each."""
    from natpg.guards import TrainingDiverged
    from natpg.interrupt import Interrupted

    try:
        return run()
    except ConfigError as exc:  # e.g. --tensorboard without the tensorboard package, a damaged file on resume
        raise _fail(str(exc)) from None
    except TrainingDiverged as exc:
        raise _fail(f"{exc}; the logs written so far are in {run_dir}", code=1) from None
    except OSError as exc:
        raise _os_failure(exc, run_dir) from None
    except Interrupted as exc:
        raise _interrupted(exc, run_dir) from None


def _note_whole_iterations(budgets) -> None:
    """Say once per budget that is not a whole number of iterations: training runs whole iterations of T steps.

    ``budgets``: ``(total_steps, n_steps)`` pairs (one per run; repeats are said once).
    """
    for total, t in dict.fromkeys(budgets):
        actual = max(1, -(-total // t)) * t
        if actual != total:
            typer.echo(f"natpg: note: total_steps={total:,} is not a multiple of n_steps (T) = {t:,}; "
                       f"training runs whole iterations, so {actual:,} steps", err=True)


def _report(result, run_dir: Path) -> None:
    cfg = result.config
    typer.echo(
        f"{cfg.algo.value} on {cfg.env_id} seed {cfg.seed}: {result.global_step} steps in {result.wall_time_s:.1f} s "
        f"({result.steps_per_second:.0f} steps/s), {len(result.episodes)} episodes, "
        f"final return (mean of last 10) {result.final_return:.2f}\n"
        f"run folder: {run_dir}"
    )


def _resume_run(run_dir: Path, steps: Optional[int], quiet: bool) -> None:
    from natpg.runfolder import read_config
    from natpg.trainer import resume

    try:
        saved = read_config(run_dir) if steps is not None else None
    except ConfigError:
        saved = None  # resume() below says what is wrong with the folder

    result = _guarded(lambda: resume(run_dir, total_steps=steps, progress=not quiet and sys.stderr.isatty()), run_dir)
    if saved is not None and isinstance(saved.get("n_steps"), int) and saved["n_steps"] > 0:
        _note_whole_iterations([(steps, saved["n_steps"])])  # after the checks: a refused --steps gets its error alone
    _report(result, run_dir)


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="A run folder written by `natpg train` (its latest checkpoint is used)."),
    episodes: int = typer.Option(10, "--episodes", help="Number of evaluation episodes."),
    deterministic: bool = typer.Option(False, "--deterministic", metavar="", show_default="off",
                                       help="Act with the distribution's mode instead of sampling."),
    seed: Optional[int] = typer.Option(None, "--seed", show_default="the run's seed + 1000000",
                                       help="Seed of the first episode (episode k uses seed + k)."),
    video: Optional[Path] = typer.Option(None, "--video", show_default="none",
                                         help="Record the first episode to this .gif or .mp4 (needs offscreen rendering)."),
) -> None:
    """Run a trained policy on separately seeded envs and print the mean ± std return."""
    from natpg.evaluation import evaluate_run, format_result

    try:
        result = evaluate_run(run_dir, episodes, deterministic, seed, video)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _os_failure(exc) from None
    typer.echo(format_result(result))
    if video is not None:
        typer.echo(f"video: {video}")


@app.command()
def plot(run_dir: Path = typer.Argument(..., help="A run folder written by `natpg train`."),
         out: Optional[Path] = typer.Option(None, "--out", show_default="RUN_DIR/learning_curve.png",
                                            help="PNG path.")) -> None:
    """Plot a run's episode returns against environment steps."""
    from natpg.experiments.plots import plot_run

    try:
        path = plot_run(run_dir, out)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _os_failure(exc) from None
    typer.echo(f"plot: {path}")


@app.command()
def presets(
    preset: str = typer.Option("paper", "--preset", help="Preset set to show: paper or paper-inferred."),
) -> None:
    """Every hyper-parameter of a preset set, per environment and algorithm (episodes capped at 1000 steps)."""
    from rich.console import Console
    from rich.table import Table

    from natpg.presets import make_config, preset_extras, preset_names, preset_settings

    try:
        extras = preset_extras(preset)
        shared, per_algo, varying = preset_settings(preset)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    columns = {"total_steps": "budget", "critic_lr": "α critic_lr", "actor_lr": "η actor_lr", "damping": "smac λ"}
    unshown = [k for k in varying if k not in columns]  # any other per-env setting gets a column (smac's value)
    cap = shared.get("max_episode_steps")
    console = Console(width=160)
    console.print(f"preset set {preset!r}: every episode capped at {cap:,} steps (max_episode_steps={cap}; "
                  f"overrides each env's registered limit)" if cap else
                  f"preset set {preset!r}: episodes end at each env's registered limit (max_episode_steps=None)")
    console.print("every env and algorithm: " + ", ".join(f"{k}={_shown(v)}" for k, v in shared.items())
                  + (f" ({', '.join(extras)}: the {preset} reading)" if extras else ""))
    console.print("; ".join(f"{algo}: " + ", ".join(f"{k}={_shown(v)}" for k, v in own.items())
                            + (" (η, λ: smac's)" if algo == "woodbury" else "")
                            for algo, own in per_algo.items() if own))
    table = Table(title=f"per env ({', '.join(columns)}; η per algorithm)", title_justify="left")
    for column in ("env", "env id", "budget", "α critic_lr", "smac η", "smac λ", "ac-sgd η", "ac-adam η", "ac-cg η",
                   *unshown):
        table.add_column(column, justify="left" if column.startswith("env") else "right")
    for name in preset_names():
        by_algo = {a: make_config(name, a, preset=preset).to_dict() for a in ("smac", "ac-sgd", "ac-adam", "ac-cg")}
        s = by_algo["smac"]
        table.add_row(name, s["env_id"], f"{s['total_steps']:,}", f"{s['critic_lr']:g}", f"{s['actor_lr']:g}",
                      f"{s['damping']:g}", *(f"{by_algo[a]['actor_lr']:g}" for a in ("ac-sgd", "ac-adam", "ac-cg")),
                      *(_shown(s.get(k)) for k in unshown))
    console.print(table)


def _shown(value) -> str:
    """A setting as ``--set`` takes it: lists as comma-separated values, None as none."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


# --------------------------------------------------------------------------- experiments (grid, report)

def _grid_options_to_runs(envs: Optional[str], suite: Optional[str], algos: str, seeds: str, steps: Optional[int],
                          settings: Optional[List[str]], out: Path, variants=None, preset: str = "paper"):
    """Parse the grid options of ``bench``/``ablation`` into validated runs (ConfigError on bad input)."""
    from natpg.experiments import grid

    if envs and suite:
        raise ConfigError("give --envs or --suite, not both")
    if not envs and not suite:
        raise ConfigError("give --envs (e.g. CartPole-v1,Acrobot-v1) or --suite (classic, mujoco or paper)")
    env_list = (grid.split_list(envs) if envs
                else list(grid.SUITE_ENVS[grid.parse_choice(grid.Suite, suite or "", "suite")]))
    overrides = dict(parse_setting(s) for s in settings or [])
    if steps is not None:
        overrides["total_steps"] = steps
    from natpg.presets import check_preset

    runs = grid.plan_grid(env_list, grid.split_list(algos), grid.parse_seeds(seeds), out, overrides, variants,
                          preset=check_preset(preset))
    grid.check_env_ids(runs)
    _note_whole_iterations((r.total_steps, r.n_steps) for r in runs)
    return runs



def _run_grid_command(runs, out: Path, backend: str, workers: Optional[int], ray_address: Optional[str],
                      quiet: bool, run_timeout: Optional[float] = None, retries: int = 1,
                      overwrite: bool = False) -> int:
    """Run a planned grid; print its summary; return the exit code (exits at once on SIGINT/SIGTERM).

    Exit code 0 when every run is finished (or was already), 1 when a run failed or was skipped
    because another process holds it, 128 + the signal number when stopped by SIGINT/SIGTERM.
    """
    import signal as signals

    from natpg.experiments import grid
    from natpg.interrupt import deferred_signals

    try:
        with deferred_signals(force_on_second=False):
            outcome = grid.run_grid(runs, backend, workers, ray_address, display=not quiet, timeout_s=run_timeout,
                                    retries=retries, overwrite=overwrite)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _os_failure(exc) from None
    if outcome.signal is not None:
        name = signals.Signals(outcome.signal).name
        typer.echo(f"natpg: interrupted by {name}: {len(outcome.interrupted)} running runs stopped at a checkpoint, "
                   f"{len(outcome.finished)} finished, {len(outcome.failed)} failed; rerun the same command to "
                   f"continue", err=True)
        raise typer.Exit(code=128 + outcome.signal)
    typer.echo(grid.summarize(outcome, out))
    return 1 if outcome.failed or outcome.busy else 0


_GRID_OPTS = dict(
    envs=typer.Option(None, "--envs", help="Comma-separated env ids or preset names, e.g. CartPole-v1,Acrobot-v1."),
    suite=typer.Option(None, "--suite", help="A named env set instead of --envs: classic, mujoco or paper."),
    seeds=typer.Option("0-4", "--seeds", help="Seeds, e.g. 0-4 or 0,2,7."),
    steps=typer.Option(None, "--steps", help="Budget per run in env steps (default: each env's preset)."),
    workers=typer.Option(None, "--workers", help="Runs at a time (default: the cores, or the Ray cluster's CPUs)."),
    backend=typer.Option("local", "--backend", help="local (process pool) or ray."),
    ray_address=typer.Option(None, "--ray-address", help="Existing Ray cluster (default: start a local one)."),
    settings=typer.Option(None, "--set", help="Override a config field for every run: key=value (repeatable); "
                                              "damping, rank and cg_* only when every algorithm of the grid "
                                              "reads them."),
    quiet=typer.Option(False, "--quiet", metavar="", help="No live display."),
    run_timeout=typer.Option(None, "--run-timeout", show_default="no limit",
                             help="Seconds one attempt of one run may take before it is killed and retried."),
    retries=typer.Option(1, "--retries", help="Further attempts for a run that fails, times out or is killed."),
    preset=typer.Option("paper", "--preset", help="Preset set every run starts from: paper (the paper's table, "
                                                   "read literally) or paper-inferred (plus the adopted reading)."),
    overwrite=typer.Option(False, "--overwrite", metavar="", show_default="off",
                           help="Train run folders that hold another config (other --steps/--set) again from "
                                "scratch; without it such a grid is refused."),
)


@app.command()
def bench(
    out: Path = typer.Option(..., "--out", help="Grid folder: runs go to OUT/ENV/ALGO/seedN."),
    envs: Optional[str] = _GRID_OPTS["envs"],
    suite: Optional[str] = _GRID_OPTS["suite"],
    algos: str = typer.Option("smac,ac-sgd,ac-adam,ac-cg", "--algos", help="Comma-separated algorithms."),
    seeds: str = _GRID_OPTS["seeds"],
    steps: Optional[int] = _GRID_OPTS["steps"],
    workers: Optional[int] = _GRID_OPTS["workers"],
    backend: str = _GRID_OPTS["backend"],
    ray_address: Optional[str] = _GRID_OPTS["ray_address"],
    settings: Optional[List[str]] = _GRID_OPTS["settings"],
    quiet: bool = _GRID_OPTS["quiet"],
    run_timeout: Optional[float] = _GRID_OPTS["run_timeout"],
    retries: int = _GRID_OPTS["retries"],
    preset: str = _GRID_OPTS["preset"],
    overwrite: bool = _GRID_OPTS["overwrite"],
) -> None:
    """Run every (env, algorithm, seed) as its own training run.

    A rerun skips finished runs and resumes unfinished ones (folders holding another config:
    refused, or trained again with --overwrite).
    """
    try:
        runs = _grid_options_to_runs(envs, suite, algos, seeds, steps, settings, out, preset=preset)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code=_run_grid_command(runs, out, backend, workers, ray_address, quiet, run_timeout, retries,
                                            overwrite))


@app.command()
def report(
    root: Path = typer.Argument(..., help="A grid folder written by `natpg bench` (any folder of run folders)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: ROOT/report)."),
    thresholds: Optional[List[str]] = typer.Option(None, "--threshold",
                                                   help="Return threshold for one env: ENV_ID=VALUE (repeatable)."),
    title: str = typer.Option("natpg results", "--title", help="Title of report.md."),
    notes: Optional[Path] = typer.Option(None, "--notes", help="A Markdown file to put under the title."),
) -> None:
    """Tables, learning curves, thresholds, aggregate and wall-clock from the run folders alone."""
    from natpg.experiments.report import parse_threshold, write_report

    try:
        if notes is not None and not notes.is_file():
            raise ConfigError(f"--notes {str(notes)!r} is not a file")
        try:
            text = notes.read_text() if notes is not None else ""
        except UnicodeDecodeError:
            raise ConfigError(f"--notes {str(notes)!r} is not a UTF-8 text (Markdown) file") from None
        path = write_report(root, out, dict(parse_threshold(t) for t in thresholds or []), title=title, notes=text)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _os_failure(exc) from None
    typer.echo(f"report: {path}")


@app.command()
def ablation(
    out: Path = typer.Option(..., "--out", help="Folder for the runs (OUT/ENV/smac-BN/seedN) and the report (OUT/report)."),
    envs: str = typer.Option("HalfCheetah-v5,Hopper-v5", "--envs", help="Comma-separated env ids."),
    batch_sizes: str = typer.Option("1,1000", "--batch-sizes", help="SMAC mini-batch sizes B to compare."),
    seeds: str = _GRID_OPTS["seeds"],
    steps: Optional[int] = _GRID_OPTS["steps"],
    workers: Optional[int] = _GRID_OPTS["workers"],
    backend: str = _GRID_OPTS["backend"],
    ray_address: Optional[str] = _GRID_OPTS["ray_address"],
    settings: Optional[List[str]] = _GRID_OPTS["settings"],
    quiet: bool = _GRID_OPTS["quiet"],
    run_timeout: Optional[float] = _GRID_OPTS["run_timeout"],
    retries: int = _GRID_OPTS["retries"],
    preset: str = _GRID_OPTS["preset"],
    overwrite: bool = _GRID_OPTS["overwrite"],
) -> None:
    """docs/method.md §4's batch-size ablation: SMAC with B = 1 against B = 1000; returns and wall-clock in one report."""
    from natpg.experiments.grid import split_list
    from natpg.experiments.report import write_report

    try:
        sizes = [int(b) for b in split_list(batch_sizes)]
    except ValueError:
        raise _fail(f"--batch-sizes {batch_sizes!r} must be comma-separated integers, e.g. 1,1000") from None
    try:
        runs = _grid_options_to_runs(envs, None, "smac", seeds, steps, settings, out,
                                     variants=[{"batch_size": b} for b in sizes], preset=preset)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    code = _run_grid_command(runs, out, backend, workers, ray_address, quiet, run_timeout, retries, overwrite)
    try:
        path = write_report(out, out / "report",
                            title="SMAC batch-size ablation: B = " + " vs B = ".join(map(str, sizes)))
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    except OSError as exc:
        raise _os_failure(exc) from None
    typer.echo(f"report: {path}")
    raise typer.Exit(code=code)


def main() -> None:
    """The ``natpg`` command (its entry point)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
