"""Results store: where each run of a grid lives, whether it finished, and reading it back.

A grid writes one run folder per (env, variant, seed) under its output folder::

    OUT/<env_id>/<variant>/seed<seed>/   config.json, episodes.csv, iterations.csv, summary.json
                                         (+ error.json if the run raised)

The *variant* is the algorithm, plus each setting of its actor update that differs from the preset
for the run's env and algorithm (:func:`variant_label`: ``smac-B1``, ``woodbury-k32``,
``smac-damping=0.3``), so the batch-size ablation's two SMAC forms, or the points of a rank or
damping sweep, get separate folders and labels. Everything here reads only the files that :func:`natpg.train`
writes (see :mod:`natpg.runlog`), so a report can be made from the folders alone.

A run is *finished* when its ``summary.json`` exists (the trainer writes it last) and records
the same config as its ``config.json`` (:func:`natpg.runfolder.finished_at`): a run extended
with ``natpg train --resume --steps N`` is unfinished until it reaches N.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from natpg.config import ConfigError, upgrade_saved_config
from natpg.runlog import CONFIG_FILE, EPISODES_FILE, ERROR_FILE, ITERATIONS_FILE, SUMMARY_FILE, write_json_atomic

_SHORT_NAMES = {"batch_size": "B", "actor_epochs": "E", "rank": "k"}
"""Label parts written short, first and in this order (``smac-B1``, ``woodbury-k32``)."""


def label_fields() -> list[str]:
    """The settings a run label names when they differ from the preset: what the actor-update rule reads.

    That is the mini-batch schedule, ``actor_lr``, ``ent_coef`` and every algorithm's own section.
    """
    from natpg.config import COMMON_FIELDS, field_names

    own = [k for k in field_names() if k not in COMMON_FIELDS and k not in _SHORT_NAMES]
    return [*_SHORT_NAMES, "actor_lr", "ent_coef", *own]


def variant_label(config: dict[str, Any]) -> str:
    """The name a run is grouped under in tables, plots and grid folders.

    It is the algorithm, plus each setting of the actor update (:func:`label_fields`) that differs
    from the preset for the run's env and algorithm in its preset set.

    ``batch_size``, ``actor_epochs`` and ``rank`` are written ``B``, ``E`` and ``k`` (first, in that
    order), any other as ``name=value``. Settings of the rest of the run (critic, rollout, networks,
    normalisation) are the same across a grid and are not named. A config saved by an older natpg is
    read as :func:`natpg.config.upgrade_saved_config` reads it.

    Example:
        >>> variant_label({"env_id": "CartPole-v1", "algo": "smac", "batch_size": None})
        'smac'
        >>> variant_label({"env_id": "CartPole-v1", "algo": "smac", "batch_size": 1, "damping": 0.3})
        'smac-B1-damping=0.3'
        >>> variant_label({"env_id": "CartPole-v1", "algo": "woodbury", "rank": 32})
        'woodbury-k32'
    """
    config = upgrade_saved_config(config)
    algo = str(config["algo"])
    preset = _preset_config(str(config["env_id"]), algo, str(config.get("preset") or "paper"))
    parts = [algo]
    for name in label_fields():
        if name in config and config[name] != preset.get(name):
            value = _label_value(config[name])
            parts.append(f"{_SHORT_NAMES[name]}{value}" if name in _SHORT_NAMES else f"{name}={value}")
    return path_safe("-".join(parts))


@lru_cache(maxsize=None)
def _preset_config_cached(env_id: str, algo: str, preset: str) -> str:
    from natpg.presets import make_config
    from natpg.runfolder import canonical

    return json.dumps(canonical(make_config(env_id, algo, 0, preset=preset).to_dict()))


def _preset_config(env_id: str, algo: str, preset: str) -> dict[str, Any]:
    """The flat config the preset set gives ``env_id`` × ``algo`` (as it reads back from JSON)."""
    return dict(json.loads(_preset_config_cached(env_id, algo, preset)))


def _label_value(value: Any) -> str:
    """``value`` as a label writes it: numbers as Python prints them (floats round-trip), lists as ``64x64``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return "x".join(_label_value(v) for v in value)
    return str(value)


def path_safe(name: str) -> str:
    """``name`` usable as one file or folder name (``/`` and ``:`` of namespaced env ids become ``_``)."""
    return name.replace("/", "_").replace(":", "_")


def run_folder(out: Path, env_id: str, label: str, seed: int) -> Path:
    """Where the run of ``env_id`` × ``label`` × ``seed`` lives under the grid folder ``out``."""
    return Path(out) / path_safe(env_id) / label / f"seed{seed}"


def is_finished(run_dir: Path, config: dict[str, Any] | None = None) -> bool:
    """Whether the trainer has written the run's ``summary.json`` at the config of its ``config.json``.

    When ``config`` is given, the summary must also be at ``config``. See :func:`natpg.runfolder.finished_at`.
    """
    from natpg.runfolder import finished_at

    return finished_at(run_dir, config)


def write_error(run_dir: Path, exc: BaseException, spec: dict[str, Any] | None = None) -> Path:
    """Record a crashed run: the exception and its traceback in ``run_dir/error.json``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ERROR_FILE
    write_json_atomic(path, {
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "spec": spec,
    })
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file's content, or ``None`` if it does not exist.

    Raises:
        ConfigError: the file is damaged (naming it).
    """
    from natpg.runfolder import read_json_file

    data = read_json_file(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} is damaged (not a JSON object); move it away or restore it")
    return data


@dataclass(frozen=True)
class RunRecord:
    """One run folder as read back from disk."""

    path: Path
    env_id: str
    label: str
    algo: str
    seed: int
    total_steps: int
    config: dict[str, Any]
    summary: dict[str, Any] | None
    error: str | None

    @property
    def finished(self) -> bool:
        """Finished at the config it records (a summary of another config does not count)."""
        from natpg.runfolder import summary_matches

        return self.summary is not None and summary_matches(self.summary, self.config)

    @property
    def status(self) -> str:
        """``finished``, ``failed`` (error.json, no summary) or ``unfinished``."""
        if self.finished:
            return "finished"
        return "failed" if self.error is not None else "unfinished"

    def episodes(self) -> pd.DataFrame:
        """``episodes.csv``: global_step, return, length, terminated (empty if absent)."""
        return _read_csv(self.path / EPISODES_FILE, ("global_step", "return"))

    def iterations(self) -> pd.DataFrame:
        """``iterations.csv``: one row per iteration with the namespaced log keys (empty if absent)."""
        return _read_csv(self.path / ITERATIONS_FILE, ("global_step",))


def _read_csv(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    from natpg.experiments.plots import read_log_csv

    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    return read_log_csv(path, columns)


def read_run(run_dir: Path) -> RunRecord:
    """Read one run folder (it must hold ``config.json``)."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG_FILE)
    error = read_json(run_dir / ERROR_FILE)
    if config is None and error is not None and error.get("spec"):
        config = _planned_config(error["spec"])  # the run raised before the trainer wrote its config
    if config is None:
        raise ConfigError(f"{str(run_dir)!r} is not a natpg run folder (no {CONFIG_FILE})")
    config = upgrade_saved_config(config)
    missing = [k for k in ("env_id", "algo", "seed", "total_steps") if k not in config]
    if missing:
        raise ConfigError(f"{str(run_dir / CONFIG_FILE)!r} is damaged: it lacks {', '.join(missing)}")
    return RunRecord(
        path=run_dir, env_id=str(config["env_id"]), label=variant_label(config), algo=str(config["algo"]),
        seed=int(config["seed"]), total_steps=int(config["total_steps"]), config=config,
        summary=read_json(run_dir / SUMMARY_FILE), error=None if error is None else str(error.get("error")),
    )


def _planned_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The config a grid run's spec (``error.json``) asked for; the spec itself if it no longer builds one."""
    from natpg.presets import make_config
    from natpg.runfolder import canonical

    try:
        cfg = make_config(spec["env"], spec["algo"], int(spec["seed"]), spec.get("overrides") or {},
                          preset=spec.get("preset", "paper"))
    except (ConfigError, KeyError, TypeError, ValueError):
        return spec
    return canonical(cfg.to_dict())


def find_runs(root: Path) -> list[RunRecord]:
    """Every run folder (a folder with ``config.json`` or ``error.json``) under ``root``, sorted by env, label, seed, path.

    Raises:
        ConfigError: ``root`` is not a folder, or holds no run folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{str(root)!r} is not a folder")
    folders = {p.parent for name in (CONFIG_FILE, ERROR_FILE) for p in root.rglob(name)}
    runs = [read_run(p) for p in folders]
    if not runs:
        raise ConfigError(f"no natpg run folder (a folder with {CONFIG_FILE}) under {str(root)!r}")
    return sorted(runs, key=lambda r: (r.env_id, r.label, r.seed, str(r.path)))


def label_preset_sets(runs: list[RunRecord]) -> list[RunRecord]:
    """``runs`` with each label followed by its preset set (``smac@paper``) when they come from more than one.

    A folder that holds, say, SMAC under ``paper`` and under ``paper-inferred`` is then reported as two
    groups; a folder of one preset set keeps its labels as they are.

    Example:
        >>> def run(preset):
        ...     return RunRecord(Path("r"), "CartPole-v1", "smac", "smac", 0, 100, {"preset": preset}, None, None)
        >>> [r.label for r in label_preset_sets([run("paper"), run("paper-inferred")])]
        ['smac@paper', 'smac@paper-inferred']
        >>> [r.label for r in label_preset_sets([run("paper-inferred")])]
        ['smac']
    """
    presets = {str(r.config.get("preset") or "paper") for r in runs}
    if len(presets) < 2:
        return runs
    return [dataclasses.replace(r, label=f"{r.label}@{r.config.get('preset') or 'paper'}") for r in runs]


def check_unique(runs: list[RunRecord]) -> None:
    """Refuse, in one line, two run folders that a report would mix up: same env, label and seed.

    Runs of one (env, algorithm, seed) that differ in a setting the label does not name (say
    ``critic_epochs``) belong in separate grid folders, each reported on its own.

    Raises:
        ConfigError: naming both folders and the fields that differ.
    """
    from natpg.runfolder import config_differences

    seen: dict[tuple[str, str, int], RunRecord] = {}
    for run in runs:
        key = (run.env_id, run.label, run.seed)
        other = seen.setdefault(key, run)
        if other is not run:
            diff = config_differences(other.config, run.config) or ["no setting"]
            raise ConfigError(f"{str(other.path)!r} and {str(run.path)!r} are both {run.env_id} {run.label} seed "
                              f"{run.seed} but differ in {', '.join(diff[:4])}{' …' if len(diff) > 4 else ''}; "
                              f"report them from separate folders")
