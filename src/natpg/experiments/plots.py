"""Figures drawn only from the files of run folders."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from natpg.config import ConfigError  # noqa: E402
from natpg.runlog import CONFIG_FILE, EPISODES_FILE  # noqa: E402


def read_episodes(run_dir: Path) -> pd.DataFrame:
    """The episodes CSV of a run folder; a clear error if the folder is not a run."""
    run_dir = Path(run_dir)
    path = run_dir / EPISODES_FILE
    if not run_dir.is_dir() or not path.exists():
        raise ConfigError(f"{str(run_dir)!r} is not a natpg run folder (no {EPISODES_FILE})")
    return pd.read_csv(path)


def plot_run(run_dir: Path, out: Path | None = None, window: int = 20) -> Path:
    """Episode returns against the global step, with a rolling mean. Returns the PNG path."""
    run_dir = Path(run_dir)
    df = read_episodes(run_dir)
    title = run_dir.name
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.exists():
        import json

        cfg = json.loads(cfg_path.read_text())
        title = f"{cfg.get('algo')} on {cfg.get('env_id')} (seed {cfg.get('seed')})"
    out = Path(out) if out is not None else run_dir / "learning_curve.png"
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
