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


def _fail(message: str) -> "typer.Exit":
    typer.echo(f"natpg: error: {message}", err=True)
    return typer.Exit(code=2)


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
                                                 help="Override a config field: key=value (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", show_default="runs/ENV_ALGO_sSEED_TIME", help="Run folder."),
    overwrite: bool = typer.Option(False, "--overwrite", show_default="off",
                                   help="Replace --out if it already holds files."),
    quiet: bool = typer.Option(False, "--quiet", show_default="off", help="No progress bar."),
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
    tensorboard: bool = typer.Option(False, "--tensorboard", show_default="off",
                                     help="Also write TensorBoard logs to RUN_DIR/tensorboard (needs natpg\\[tensorboard])."),
    normalize_obs: bool = typer.Option(False, "--normalize-obs", show_default="off",
                                       help="Normalise observations by a running mean/std (saved with the model)."),
    env_backend: Optional[str] = typer.Option(None, "--env-backend", show_default="gymnasium",
                                              help="Simulator: gymnasium or envpool (needs the 'bench' extra)."),
) -> None:
    """Train one agent and write its run folder (config, episodes.csv, iterations.csv, summary.json, checkpoints/)."""
    from natpg.presets import make_config
    from natpg.trainer import Trainer, prepare_run_dir

    run_options = {"checkpoint_every": checkpoint_every, "eval_every": eval_every, "eval_episodes": eval_episodes,
                   "tensorboard": tensorboard or None, "normalize_obs": normalize_obs or None}
    if resume is not None:
        given = [flag for flag, value in (("--env", env), ("--algo", algo), ("--seed", seed), ("--n-envs", n_envs),
                                          ("--set", settings), ("--out", out), ("--overwrite", overwrite or None),
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
        cfg = make_config(env, algo or "smac", 0 if seed is None else seed, overrides)
        trainer = Trainer(cfg)  # validates env id and spaces before anything on disk is touched
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    run_dir = out or Path("runs") / f"{cfg.env_id}_{cfg.algo.value}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        run_dir = prepare_run_dir(run_dir, overwrite)
    except ConfigError as exc:
        trainer.close()
        raise _fail(str(exc)) from None
    from natpg.guards import TrainingDiverged

    try:
        result = trainer.run(run_dir, progress=not quiet and sys.stderr.isatty())
    except ConfigError as exc:  # e.g. --tensorboard without the tensorboard package
        raise _fail(str(exc)) from None
    except TrainingDiverged as exc:
        typer.echo(f"natpg: error: {exc}; the logs written so far are in {run_dir}", err=True)
        raise typer.Exit(code=1) from None
    _report(result, run_dir)


def _report(result, run_dir: Path) -> None:
    cfg = result.config
    typer.echo(
        f"{cfg.algo.value} on {cfg.env_id} seed {cfg.seed}: {result.global_step} steps in {result.wall_time_s:.1f} s "
        f"({result.steps_per_second:.0f} steps/s), {len(result.episodes)} episodes, "
        f"final return (mean of last 10) {result.final_return:.2f}\n"
        f"run folder: {run_dir}"
    )


def _resume_run(run_dir: Path, steps: Optional[int], quiet: bool) -> None:
    from natpg.trainer import resume

    try:
        result = resume(run_dir, total_steps=steps, progress=not quiet and sys.stderr.isatty())
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _report(result, run_dir)


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="A run folder written by `natpg train` (its latest checkpoint is used)."),
    episodes: int = typer.Option(10, "--episodes", help="Number of evaluation episodes."),
    deterministic: bool = typer.Option(False, "--deterministic", show_default="off",
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
    typer.echo(f"plot: {path}")


@app.command()
def presets() -> None:
    """List the paper's preset environments and their budgets."""
    from natpg.presets import _table

    for name, entry in _table()["envs"].items():
        typer.echo(f"{name:<12} {entry['env_id']:<16} total_steps={entry['total_steps']:,}")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
