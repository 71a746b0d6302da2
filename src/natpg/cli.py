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
    env: str = typer.Option(..., "--env", help="Gymnasium env id (a preset's short name also works, e.g. CartPole)."),
    algo: str = typer.Option("smac", "--algo", help="Actor update: smac, ac-sgd, ac-adam, ac-cg or woodbury."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training budget in env steps (default: the preset's)."),
    n_envs: Optional[int] = typer.Option(None, "--n-envs", help="Environment copies (T stays the same; default 1)."),
    settings: Optional[List[str]] = typer.Option(None, "--set", help="Override a config field: key=value (repeatable)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/ENV_ALGO_sSEED_TIME)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace --out if it already holds files."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    env_backend: Optional[str] = typer.Option(None, "--env-backend",
                                              help="Simulator: gymnasium (default) or envpool (extra 'bench')."),
) -> None:
    """Train one agent and write its run folder (config, episodes.csv, iterations.csv, summary.json)."""
    from natpg.presets import make_config
    from natpg.trainer import Trainer, prepare_run_dir

    try:
        overrides = dict(parse_setting(s) for s in settings or [])
        if steps is not None:
            overrides["total_steps"] = steps
        if n_envs is not None:
            overrides["n_envs"] = n_envs
        if env_backend is not None:
            overrides["env_backend"] = env_backend
        cfg = make_config(env, algo, seed, overrides)
        trainer = Trainer(cfg)  # validates env id and spaces before anything on disk is touched
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    run_dir = out or Path("runs") / f"{cfg.env_id}_{cfg.algo.value}_s{cfg.seed}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        run_dir = prepare_run_dir(run_dir, overwrite)
    except ConfigError as exc:
        trainer.close()
        raise _fail(str(exc)) from None
    result = trainer.run(run_dir, progress=not quiet and sys.stderr.isatty())
    typer.echo(
        f"{cfg.algo.value} on {cfg.env_id} seed {cfg.seed}: {result.global_step} steps in {result.wall_time_s:.1f} s "
        f"({result.steps_per_second:.0f} steps/s), {len(result.episodes)} episodes, "
        f"final return (mean of last 10) {result.final_return:.2f}\n"
        f"run folder: {run_dir}"
    )


@app.command()
def plot(run_dir: Path = typer.Argument(..., help="A run folder written by `natpg train`."),
         out: Optional[Path] = typer.Option(None, "--out", help="PNG path (default: RUN_DIR/learning_curve.png).")) -> None:
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
