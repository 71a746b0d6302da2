"""The paper's hyper-parameters, loaded from ``paper.toml`` and overridable field by field.

Example:
    >>> cfg = make_config("CartPole-v1", "smac", seed=3, overrides={"total_steps": 20_000})
    >>> (cfg.actor_lr, cfg.damping, cfg.critic_lr, cfg.total_steps)
    (0.005, 0.1, 0.001, 20000)
"""

from __future__ import annotations

import difflib
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

from natpg.config import Algo, ConfigError, TrainConfig

_ALGO_KEYS = {a.value for a in Algo}


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    with resources.files(__package__).joinpath("paper.toml").open("rb") as fh:
        return tomllib.load(fh)


def preset_names() -> list[str]:
    """Short names of the preset environments, e.g. ``['Acrobot', 'CartPole', ...]``."""
    return list(_table()["envs"])


def preset_env_ids() -> list[str]:
    """Gymnasium ids of the preset environments."""
    return [e["env_id"] for e in _table()["envs"].values()]


def _find_env(env: str) -> tuple[str, dict[str, Any]] | None:
    envs = _table()["envs"]
    for name, entry in envs.items():
        if env.lower() in (name.lower(), entry["env_id"].lower()):
            return name, entry
    return None


def has_preset(env: str) -> bool:
    """Whether ``env`` (a short name or a Gymnasium id) has a preset."""
    return _find_env(env) is not None


def load_preset(env: str, algo: str | Algo) -> dict[str, Any]:
    """The preset's settings for ``env`` (short name or id) and ``algo`` as a flat dict.

    Raises:
        ConfigError: ``env`` has no preset, or ``algo`` is unknown.
    """
    algo = Algo.parse(algo)
    found = _find_env(env)
    if found is None:
        choices = preset_names() + preset_env_ids()
        close = difflib.get_close_matches(env, choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"no preset for env {env!r}{hint} (presets: {', '.join(preset_env_ids())})")
    _, entry = found
    out: dict[str, Any] = dict(_table()["common"])
    out.update({k: v for k, v in entry.items() if k not in _ALGO_KEYS})
    algo_key = algo.value
    if algo is Algo.WOODBURY and algo_key not in entry:
        algo_key = Algo.SMAC.value
    out.update(entry.get(algo_key, {}))
    out["algo"] = algo.value
    return out


def make_config(env: str, algo: str | Algo, seed: int = 0, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A validated :class:`TrainConfig` for ``env`` × ``algo``.

    Uses the preset when ``env`` has one; any other Gymnasium id starts from the
    :class:`TrainConfig` defaults. ``overrides`` replace single fields
    (values may be strings as typed on a command line).
    """
    base: dict[str, Any] = load_preset(env, algo) if has_preset(env) else {"env_id": env, "algo": Algo.parse(algo).value}
    base["seed"] = seed
    overrides = dict(overrides or {})
    cfg = TrainConfig.from_dict(base)
    return cfg.override(**overrides) if overrides else cfg
