"""The paper's hyper-parameters as data, in two preset sets, overridable field by field.

* ``paper`` (``paper.toml``): exactly the paper's Table 2 and its text, read literally
  (one critic step and one actor step per iteration).
* ``paper-inferred`` (``paper-inferred.toml``): the same table plus one reading of what the
  paper leaves unsaid, adopted for all tasks and algorithms by the study in ``docs/fidelity.md``.

A preset file gives each algorithm only its own settings: ``[common]`` (and an env's own keys)
hold what every algorithm reads, ``[algos.ALGO]`` and an env's ``ALGO`` entry what only ALGO reads
(:func:`check_table` refuses anything else, naming the table).

Example:
    >>> cfg = make_config("CartPole-v1", "smac", seed=3, overrides={"total_steps": 20_000})
    >>> (cfg.actor_lr, cfg.algo_settings.damping, cfg.critic_lr, cfg.total_steps, cfg.preset)
    (0.005, 0.1, 0.001, 20000, 'paper')
"""

from __future__ import annotations

import difflib
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

from natpg.config import (
    COMMON_FIELDS,
    Algo,
    ConfigError,
    TrainConfig,
    algo_setting_names,
    algos_reading,
    field_names,
    whose_setting,
)

_ALGO_KEYS = {a.value for a in Algo}
PRESET_SETS = ("paper", "paper-inferred")
"""The preset sets: the literal one first (the default)."""
DEFAULT_PRESET = "paper"


def check_preset(preset: str) -> str:
    """``preset`` if it names a preset set, else a :class:`ConfigError` naming the allowed ones."""
    if preset not in PRESET_SETS:
        raise ConfigError(f"unknown preset {preset!r}; allowed: {', '.join(PRESET_SETS)}")
    return preset


def _load(name: str) -> dict[str, Any]:
    path = resources.files(__package__).joinpath(f"{name}.toml")
    if not path.is_file():
        raise ConfigError(f"preset set {name!r} is not adopted yet: the study that chooses it "
                          f"(docs/fidelity.md) is still running; allowed now: paper")
    with path.open("rb") as fh:
        return tomllib.load(fh)


@lru_cache(maxsize=None)
def _table(preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """The preset set as one table: ``paper.toml``, with ``paper-inferred.toml``'s ``[common]`` on top."""
    table = check_table("paper.toml", _load("paper"))
    if check_preset(preset) != "paper":
        extra = check_table(f"{preset}.toml", _load(preset))
        unknown = set(extra) - {"common"}
        if unknown:  # the inferred set is one global reading: no per-env or per-algorithm entries
            raise AssertionError(f"{preset}.toml may only hold [common], found {sorted(unknown)}")
        table = {**table, "common": {**table["common"], **extra["common"]}}
    return table


def check_table(name: str, table: dict[str, Any]) -> dict[str, Any]:
    """``table`` (a preset file as loaded) if each of its tables holds only settings its algorithms read.

    Raises:
        ConfigError: naming the file, the table and the setting that does not belong there.
    """
    def check(where: str, keys: Any, algo: str | None) -> None:
        own = algo_setting_names(algo) if algo is not None else ()
        for key in keys:
            if key in COMMON_FIELDS or key in own:
                continue
            if key not in field_names():
                raise ConfigError(f"{name} [{where}] sets {key!r}, which is no setting")
            owner = algos_reading(key)[0].value
            raise ConfigError(f"{name} [{where}] sets {key}, {whose_setting(key)}"
                              f"{f' that {algo} does not read' if algo else ''}; put it under "
                              f"[algos.{owner}] or an env's {owner} entry")

    check("common", table.get("common", {}), None)
    for algo, entry in table.get("algos", {}).items():
        check(f"algos.{Algo.parse(algo).value}", entry, algo)
    for env, entry in table.get("envs", {}).items():
        check(f"envs.{env}", [k for k in entry if k not in _ALGO_KEYS], None)
        for algo in _ALGO_KEYS & set(entry):
            fallback = algo == Algo.SMAC.value and Algo.WOODBURY.value not in entry  # woodbury reuses it
            check(f"envs.{env}.{algo}", entry[algo], algo)
            if fallback:
                check(f"envs.{env}.{algo} (woodbury reuses it)", entry[algo], Algo.WOODBURY.value)
    return table


def preset_common(preset: str) -> dict[str, Any]:
    """The settings a preset set gives every env and algorithm (``[common]``, the reading included)."""
    return dict(_table(check_preset(preset))["common"])


def preset_algos(preset: str) -> dict[str, dict[str, Any]]:
    """The settings a preset set gives one algorithm on every env (``[algos.ALGO]``), by algorithm."""
    return {Algo.parse(a).value: dict(v) for a, v in _table(check_preset(preset)).get("algos", {}).items()}


def preset_extras(preset: str) -> dict[str, Any]:
    """The settings a preset set adds to the literal one (empty for ``paper``)."""
    return {} if check_preset(preset) == "paper" else dict(_load(preset)["common"])


#: Config fields that say how a run is carried out, not what it learns: left out of the hyper-parameter listing.
RUN_OPTIONS = ("env_id", "algo", "preset", "seed", "env_backend", "vectorization", "torch_threads",
               "checkpoint_every", "eval_every", "eval_episodes", "tensorboard", "max_consecutive_skips")


def preset_settings(preset: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]], list[str]]:
    """Every hyper-parameter of a preset set, as the configs it builds hold them (natpg's defaults included).

    Returns:
        ``(shared, per_algo, varying)``: the settings with one value on every env and algorithm; per
        algorithm, its own settings with one value on every env; and the settings whose value changes
        from env to env (the per-env table of ``natpg presets``). :data:`RUN_OPTIONS` are left out.
    """
    configs = {(name, algo): make_config(name, algo, preset=preset).to_dict() for name in preset_names() for algo in Algo}
    values: dict[str, set[str]] = {}
    for cfg in configs.values():
        for key, value in cfg.items():
            if key not in RUN_OPTIONS:
                values.setdefault(key, set()).add(repr(value))
    varying = [k for k, v in values.items() if len(v) > 1]
    first = next(iter(configs.values()))
    shared = {k: first[k] for k, v in values.items() if len(v) == 1 and all(k in c for c in configs.values())}
    per_algo: dict[str, dict[str, Any]] = {}
    for algo in Algo:
        own = configs[(preset_names()[0], algo)]
        per_algo[algo.value] = {k: own[k] for k in own if k in values and k not in shared and k not in varying}
    return shared, per_algo, varying


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


def load_preset(env: str, algo: str | Algo, preset: str = DEFAULT_PRESET) -> dict[str, Any]:
    """The settings of preset set ``preset`` for ``env`` (short name or id) and ``algo`` as a flat dict.

    ``[common]``, then ``[algos.ALGO]``, the env's own keys and its ``ALGO`` entry on top.

    Raises:
        ConfigError: ``env`` has no preset, ``algo`` or ``preset`` is unknown.
    """
    algo = Algo.parse(algo)
    table = _table(check_preset(preset))
    found = _find_env(env)
    if found is None:
        choices = preset_names() + preset_env_ids()
        close = difflib.get_close_matches(env, choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"no preset for env {env!r}{hint} (presets: {', '.join(preset_env_ids())})")
    _, entry = found
    out: dict[str, Any] = dict(table["common"])
    out.update(table.get("algos", {}).get(algo.value, {}))
    out.update({k: v for k, v in entry.items() if k not in _ALGO_KEYS})
    algo_key = algo.value
    if algo is Algo.WOODBURY and algo_key not in entry:
        algo_key = Algo.SMAC.value
    out.update(entry.get(algo_key, {}))
    out["algo"] = algo.value
    out["preset"] = preset
    return out


def make_config(env: str, algo: str | Algo, seed: int = 0, overrides: Mapping[str, Any] | None = None,
                preset: str = DEFAULT_PRESET) -> TrainConfig:
    """A validated :class:`TrainConfig` for ``env`` × ``algo`` from preset set ``preset``.

    Uses the env's entry when ``env`` has one; any other Gymnasium id starts from the
    :class:`TrainConfig` defaults plus the preset set's common settings. ``overrides``
    replace single fields (values may be strings as typed on a command line).
    """
    if has_preset(env):
        base: dict[str, Any] = load_preset(env, algo, preset)
    else:
        base = {**preset_extras(preset), "env_id": env, "algo": Algo.parse(algo).value, "preset": preset}
    base["seed"] = seed
    overrides = dict(overrides or {})
    cfg = TrainConfig.from_dict(base)
    return cfg.override(**overrides) if overrides else cfg
