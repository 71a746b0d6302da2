"""Figures drawn only from the files of run folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from natpg.config import ConfigError  # noqa: E402
from natpg.runlog import EPISODES_FILE  # noqa: E402


def read_log_csv(path: Path, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """A run's CSV log as a DataFrame (empty if the file is empty).

    Raises:
        ConfigError: the file is not a readable CSV or lacks one of ``columns`` (naming the file).
    """
    path = Path(path)
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=list(columns))
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"log {str(path)!r} is damaged: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in df.columns]
    bad = [c for c in columns if c in df.columns and not pd.api.types.is_numeric_dtype(df[c])]
    if missing or bad:
        what = f"lacks the column(s) {', '.join(missing)}" if missing else f"has non-numbers in {', '.join(bad)}"
        raise ConfigError(f"log {str(path)!r} is damaged: it {what}")
    return df


def read_episodes(run_dir: Path) -> pd.DataFrame:
    """The episodes CSV of a run folder; a clear error if the folder is not a run or the file is damaged."""
    run_dir = Path(run_dir)
    path = run_dir / EPISODES_FILE
    if not run_dir.is_dir() or not path.exists():
        raise ConfigError(f"{str(run_dir)!r} is not a natpg run folder (no {EPISODES_FILE})")
    return read_log_csv(path, ("global_step", "return"))


def cap_note(max_episode_steps: int | None) -> str:
    """The episode cap as a figure says it: ``"episodes capped at 1,000 steps"`` (``None``: the env's own limit)."""
    if max_episode_steps is None:
        return "registered episode limit"
    return f"episodes capped at {int(max_episode_steps):,} steps"


def plot_run(run_dir: Path, out: Path | None = None, window: int = 20) -> Path:
    """Episode returns against the global step, with a rolling mean. Returns the PNG path."""
    from natpg.runfolder import check_out_path, read_config

    run_dir = Path(run_dir)
    df = read_episodes(run_dir)
    title = run_dir.name
    cfg = read_config(run_dir)  # a damaged config.json is one clear error
    if cfg is not None:
        title = f"{cfg.get('algo')} on {cfg.get('env_id')} (seed {cfg.get('seed')})"
        if "max_episode_steps" in cfg:
            title += f"\n{cap_note(cfg['max_episode_steps'])}"
    out = Path(out) if out is not None else run_dir / "learning_curve.png"
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give a .png file path")
    check_out_path(out, "--out")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")
    fig, ax = plt.subplots(figsize=(7, 4))
    if len(df):
        ax.plot(df["global_step"], df["return"], ".", alpha=0.25, ms=3, label="episode return")
        ax.plot(df["global_step"], df["return"].rolling(window, min_periods=1).mean(), lw=2,
                label=f"rolling mean ({window} episodes)")
        ax.legend(loc="best")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


# --------------------------------------------------------------------------- grid report figures

def _save(fig: "plt.Figure", out_base: Path) -> list[Path]:
    """Save ``fig`` as ``out_base.png`` and ``out_base.svg``; return both paths."""
    paths = [Path(f"{out_base}.png"), Path(f"{out_base}.svg")]
    fig.tight_layout()
    for p in paths:
        fig.savefig(p, dpi=120)
    plt.close(fig)
    return paths


def plot_group_curves(curves: pd.DataFrame, env_id: str, column: str, ylabel: str, out_base: Path,
                      labels: list[str], missing: dict[str, str] | None = None, note: str = "") -> list[Path]:
    """One env's smoothed binned curves: for each label the mean over seeds with a ±1 std band.

    ``curves`` is the long table of :func:`natpg.experiments.report.collect` (columns env_id,
    label, seed, step, and ``column``). ``missing`` maps a label to the runs left out of its curve
    (e.g. ``"2 failed"``), shown in the legend, also for a label with no finished run at all;
    ``note`` is added under the title (e.g. the episode cap).
    """
    missing = missing or {}
    fig, ax = plt.subplots(figsize=(6.4, 4))
    env = curves[curves["env_id"] == env_id]
    for label in labels:
        grp = env[env["label"] == label]
        left_out = f"; {missing[label]} not shown" if label in missing else ""
        if grp.empty:
            if left_out:
                ax.plot([], [], ls="none", label=f"{label} (no finished run{left_out})")
            continue
        wide = grp.pivot(index="step", columns="seed", values=column)
        mean, std = wide.mean(axis=1), wide.std(axis=1, ddof=0)
        n = wide.shape[1]
        line, = ax.plot(wide.index, mean, lw=1.8, label=f"{label} ({n} seed{'s' if n != 1 else ''}{left_out})")
        ax.fill_between(wide.index, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_title(env_id + (f"\n{note}" if note else ""), fontsize=10 if note else None)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="best", fontsize=8)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
    return _save(fig, out_base)


def plot_aggregate(aggregate: pd.DataFrame, out_base: Path) -> list[Path]:
    """IQM of min-max normalised final scores per label, with its 95% bootstrap CI as an error bar."""
    fig, ax = plt.subplots(figsize=(6.4, 0.6 * max(len(aggregate), 2) + 1.2))
    y = range(len(aggregate))
    iqm = aggregate["iqm"].to_numpy(dtype=float)
    err = [iqm - aggregate["ci_low"].to_numpy(dtype=float), aggregate["ci_high"].to_numpy(dtype=float) - iqm]
    ax.errorbar(iqm, list(y), xerr=err, fmt="o", capsize=4)
    ax.set_yticks(list(y), aggregate["label"].tolist())
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.6, len(aggregate) - 0.4)
    ax.set_xlabel("IQM of min-max normalised final score (95% stratified bootstrap CI)")
    ax.grid(alpha=0.3, axis="x")
    ax.invert_yaxis()
    return _save(fig, out_base)
