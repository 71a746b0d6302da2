"""The one typed configuration of a training run, validated up front.

:class:`TrainConfig` holds the settings every actor-update rule shares; the settings only one
rule reads live in that rule's own section (:class:`SmacSettings`, :class:`WoodburySettings`,
:class:`CGSettings`, :class:`SGDSettings`, :class:`AdamSettings`), held in
``TrainConfig.algo_settings`` and validated on their own. Flat, the form of ``--set``,
:meth:`TrainConfig.from_dict` and ``config.json``, names each field once: the common fields and
the algorithm's own, and nothing of another algorithm.
"""

from __future__ import annotations

import difflib
import enum
import json
import math
import typing
import warnings
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Mapping

SEED_MAX = 2**32 - 1
"""The largest seed (NumPy's legacy seeding and most simulators take 32-bit seeds)."""

class ConfigError(ValueError):
    """A user-supplied setting is invalid. The message names the value and what is allowed."""


class Algo(str, enum.Enum):
    """The actor-update rule. Everything else in the actor-critic is shared."""

    SMAC = "smac"          #: Sherman–Morrison rank-1 damped empirical Fisher (the paper's method)
    AC_SGD = "ac-sgd"      #: plain policy-gradient ascent
    AC_ADAM = "ac-adam"    #: Adam on the policy-gradient loss
    AC_CG = "ac-cg"        #: conjugate gradient on Fisher-vector products (true Fisher)
    WOODBURY = "woodbury"  #: rank-k damped empirical Fisher (ours; k = 1 is SMAC)

    @classmethod
    def parse(cls, value: "str | Algo") -> "Algo":
        """The algorithm named by ``value`` (any case); a :class:`ConfigError` listing the allowed names otherwise."""
        return _parse_choice(cls, value, "algo", "unknown algorithm {value!r}; allowed: {allowed}")


class StepRule(str, enum.Enum):
    """How far θ moves along an update rule's direction x (docs/method.md §2, "Step size")."""

    FIXED = "fixed"  #: ``θ ← θ + η x`` with ``η = actor_lr``
    KL = "kl"        #: ``η = √(2δ / xᵀFx)``: the KL's quadratic model equals ``target_kl`` (TRPO's scaling)


class EnvBackend(str, enum.Enum):
    """Which library steps the environments."""

    GYMNASIUM = "gymnasium"
    ENVPOOL = "envpool"  #: C++ batched simulator (optional extra ``bench``); same spaces, cap and accounting


class Vectorization(str, enum.Enum):
    """How Gymnasium runs the ``n_envs`` copies: in this process or in subprocesses."""

    SYNC = "sync"
    ASYNC = "async"


# --------------------------------------------------------------------------- the algorithms' own settings

_STEP_SIZE_NAMES = ("step_rule", "target_kl", "backtrack_iters", "backtrack_ratio")
"""The fields of :class:`StepSizeSettings` (listed after a section's own)."""


@dataclass(frozen=True)
class AlgoSettings:
    """The settings one actor-update rule reads beyond the common ones: one frozen subclass per algorithm.

    A section checks its own fields when it is created (:class:`ConfigError` naming the field) and,
    through :meth:`check_against`, what it needs of the common settings (woodbury's rank against
    its mini-batch). Its field names are the flat names of ``--set`` and ``config.json``.
    """

    algo: ClassVar[Algo]

    def __post_init__(self) -> None:
        _check_types(self)
        self._check_values()

    def _check_values(self) -> None:
        """Range checks of the section's own fields (none by default)."""

    def check_against(self, cfg: "TrainConfig") -> None:
        """Checks against the common settings of ``cfg`` (none by default)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The flat names of this section's fields: the algorithm's own, then the step-size rule's."""
        names = [f.name for f in fields(cls)]
        return tuple(sorted(names, key=lambda n: n in _STEP_SIZE_NAMES))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain JSON-able dict (enums as their values), in :meth:`field_names` order."""
        return {name: _plain(getattr(self, name)) for name in self.field_names()}


@dataclass(frozen=True)
class StepSizeSettings(AlgoSettings):
    """The step-size rule of the algorithms whose update is a direction x (all but ac-adam; docs/method.md §2).

    Its fields sit in each of those sections under the same flat names.
    """

    step_rule: StepRule = StepRule.FIXED
    """``fixed``: ``θ ← θ + η x`` with ``η = actor_lr``. ``kl``: ``η = √(2 target_kl / xᵀFx)`` with F the
    policy's Fisher, so that the quadratic model of the mean KL between the old and new policy equals
    ``target_kl`` (``actor_lr`` is then not read)."""
    target_kl: float = 0.01
    """δ > 0: the KL that ``step_rule=kl`` aims each step at; with backtracking under ``kl`` a candidate
    whose measured mean KL exceeds 1.5 δ is rejected."""
    backtrack_iters: int = 0
    """Line search: the most candidates to try, the full step first, each next one ``backtrack_ratio``
    times shorter; the first that raises the surrogate ``mean(π_new/π_old · A)`` (and, under ``kl``, keeps
    the measured KL within 1.5 δ) is kept, and if none is, θ is restored. 0: no line search."""
    backtrack_ratio: float = 0.5
    """The line search's shrink factor, in (0, 1)."""

    def _check_values(self) -> None:
        object.__setattr__(self, "step_rule", _parse_choice(StepRule, self.step_rule, "step_rule"))
        _positive(self, "target_kl")
        _require(self.backtrack_iters >= 0,
                 f"backtrack_iters={self.backtrack_iters!r} must be an integer >= 0 (0 = no line search)")
        _require(math.isfinite(self.backtrack_ratio) and 0 < self.backtrack_ratio < 1,
                 f"backtrack_ratio={self.backtrack_ratio!r} must be in (0, 1)")


assert _STEP_SIZE_NAMES == tuple(f.name for f in fields(StepSizeSettings))


@dataclass(frozen=True)
class SGDSettings(StepSizeSettings):
    """ac-sgd's own settings: only the step-size rule (its direction is ``g``)."""

    algo: ClassVar[Algo] = Algo.AC_SGD


@dataclass(frozen=True)
class AdamSettings(AlgoSettings):
    """ac-adam reads no settings of its own: Adam's lr is the common ``actor_lr`` (torch's other defaults)."""

    algo: ClassVar[Algo] = Algo.AC_ADAM


@dataclass(frozen=True)
class SmacSettings(StepSizeSettings):
    """smac's own settings (docs/method.md §2)."""

    algo: ClassVar[Algo] = Algo.SMAC
    damping: float = 0.1
    """λ > 0: damping of the rank-1 empirical Fisher ``λI + ℓ̄ℓ̄ᵀ``."""

    def _check_values(self) -> None:
        super()._check_values()
        _positive(self, "damping")


@dataclass(frozen=True)
class WoodburySettings(StepSizeSettings):
    """woodbury's own settings (docs/method.md §2); its mini-batch must hold at least ``rank`` samples."""

    algo: ClassVar[Algo] = Algo.WOODBURY
    damping: float = 0.1
    """λ > 0: damping of the rank-k empirical Fisher ``λI + UUᵀ``."""
    rank: int = 8
    """k >= 1: each mini-batch is split into k groups whose mean scores form U."""

    def _check_values(self) -> None:
        super()._check_values()
        _positive(self, "damping")
        _at_least_one(self, "rank")

    def check_against(self, cfg: "TrainConfig") -> None:
        """Require ``rank`` to be at most the actor's mini-batch size (see :meth:`AlgoSettings.check_against`)."""
        m = cfg.actor_batch_size
        _require(self.rank <= m, f"rank={self.rank} must be <= the actor's mini-batch size "
                                 f"({'batch_size' if cfg.batch_size is not None else 'n_steps (T)'} = {m})")


@dataclass(frozen=True)
class CGSettings(StepSizeSettings):
    """ac-cg's own settings (docs/method.md §2); TRPO's step is ``step_rule=kl`` with ``backtrack_iters=10``."""

    algo: ClassVar[Algo] = Algo.AC_CG
    cg_damping: float = 0.1
    """λ_cg > 0 added to the Fisher."""
    cg_iters: int = 10
    """Conjugate-gradient iterations."""

    def _check_values(self) -> None:
        super()._check_values()
        _positive(self, "cg_damping")
        _at_least_one(self, "cg_iters")


ALGO_SETTINGS: dict[Algo, type[AlgoSettings]] = {
    s.algo: s for s in (SmacSettings, SGDSettings, AdamSettings, CGSettings, WoodburySettings)}
"""The section class of each algorithm."""


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one actor-critic training run (docs/method.md §2–§4).

    Build it from a preset with :func:`natpg.presets.make_config`, or directly.
    All values are checked when the object is created; a bad one raises
    :class:`ConfigError` naming the field, the value and what is allowed. The settings only
    ``algo`` reads are its section, ``algo_settings``; flat, they sit beside the common ones.

    Example:
        >>> cfg = TrainConfig.from_dict({"algo": "woodbury", "rank": 4})
        >>> cfg.algo_settings.rank, cfg.algo_settings.step_rule.value
        (4, 'fixed')
        >>> cfg.to_dict()["rank"], "cg_iters" in cfg.to_dict()
        (4, False)
        >>> TrainConfig.from_dict({"algo": "smac", "rank": 4})
        Traceback (most recent call last):
        ...
        natpg.config.ConfigError: rank is a woodbury setting; algo=smac does not read it (its settings: damping, \
step_rule, target_kl, backtrack_iters, backtrack_ratio)
    """

    env_id: str = "CartPole-v1"
    """Gymnasium id of the task, e.g. ``"HalfCheetah-v5"``."""
    algo: Algo = Algo.SMAC
    """Actor-update rule: smac, ac-sgd, ac-adam, ac-cg or woodbury."""
    preset: str = ""
    """The preset set this config was built from (``paper`` or ``paper-inferred``); ``""``: built directly.
    A record only: the values themselves are in the other fields."""
    seed: int = 0
    """Seeds torch, the environments' resets and action sampling."""
    total_steps: int = 500_000
    """Training budget in environment steps (summed over the ``n_envs`` copies)."""
    n_steps: int = 1000
    """T: transitions collected per iteration, in total over all copies."""
    n_envs: int = 1
    """Number of environment copies; each contributes ``n_steps / n_envs`` steps per iteration."""
    max_episode_steps: int | None = 1000
    """Episode cap (time-limit truncation). ``None`` keeps the env's registered limit."""
    gamma: float = 0.99
    """Discount factor γ."""
    gae_lambda: float = 0.9
    """GAE λ."""
    actor_lr: float = 5e-3
    """η: the actor's step size (Adam's lr for ac-adam)."""
    critic_lr: float = 1e-3
    """α: the critic's Adam learning rate."""
    critic_epochs: int = 1
    """Passes of the critic over the batch per iteration; each pass is ``T / critic_batch_size`` Adam steps
    (one full-batch step when ``critic_batch_size`` is ``None``). 1 is the literal reading."""
    critic_batch_size: int | None = None
    """Critic mini-batch size; each pass draws a fresh random permutation of the T samples. ``None``: full batch."""
    batch_size: int | None = None
    """M (B for smac): the actor's mini-batch size, for every rule. The T samples are walked in T/M
    consecutive mini-batches in time order, one update of the rule each, at the current θ. ``None`` means
    M = T (one actor update per pass, the literal reading); for smac, 1 is the paper's Algorithm 1."""
    actor_epochs: int = 1
    """E: passes of the actor over the batch per iteration (each walks the T/M mini-batches)."""
    algo_settings: AlgoSettings | None = None
    """The settings only ``algo`` reads: its section (:data:`ALGO_SETTINGS`), e.g.
    ``WoodburySettings(damping=0.1, rank=8)``. ``None`` gives that algorithm's defaults; after
    construction it always holds ``algo``'s section, and another algorithm's is an error."""
    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of both MLPs (tanh)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    normalize_advantages: bool = False
    """Standardise advantages per iteration (off in the paper's setting)."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient added to the policy objective (0 = off)."""
    env_backend: EnvBackend = EnvBackend.GYMNASIUM
    """Environment library."""
    vectorization: Vectorization = Vectorization.SYNC
    """Gymnasium vectorisation of the n_envs copies."""
    torch_threads: int = 1
    """Threads torch may use (1 is fastest for these small networks)."""
    normalize_obs: bool = False
    """Normalise observations by a running mean/std (saved with the model). Off in the paper's presets."""
    normalize_reward: bool = False
    """Divide rewards by a running estimate of the std of the discounted return (per env copy, reset at
    episode ends; saved with checkpoints) before GAE and the critic. Logged returns stay raw."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many iterations (and always at the end); 0 saves only at the end."""
    eval_every: int = 0
    """Evaluate the policy on separately seeded envs every this many iterations (0 = off); logged to eval.csv."""
    eval_episodes: int = 5
    """Episodes per periodic evaluation."""
    tensorboard: bool = False
    """Also write TensorBoard event files (``RUN_DIR/tensorboard``); needs the ``natpg[tensorboard]`` extra."""
    max_consecutive_skips: int = 10
    """K: stop the run with an error after this many consecutive skipped updates (non-finite values)."""

    def __post_init__(self) -> None:
        _coerce_enums(self)
        section = ALGO_SETTINGS[self.algo]
        if self.algo_settings is None:
            object.__setattr__(self, "algo_settings", section())
        elif type(self.algo_settings) is not section:
            given = self.algo_settings
            name = type(given).__name__
            owner = f"{given.algo.value}'s section" if isinstance(given, AlgoSettings) else "not a section"
            raise ConfigError(f"algo_settings={name} is {owner}; algo={self.algo.value} takes {section.__name__}")
        _validate(self)
        self._settings.check_against(self)

    @property
    def _settings(self) -> AlgoSettings:
        """``algo_settings``, never ``None`` (it is filled in when the config is created)."""
        assert self.algo_settings is not None
        return self.algo_settings

    @property
    def steps_per_env(self) -> int:
        """Steps each environment copy takes per iteration."""
        return self.n_steps // self.n_envs

    @property
    def n_iterations(self) -> int:
        """Iterations needed to spend the budget (the last may overshoot it by < T steps)."""
        return max(1, math.ceil(self.total_steps / self.n_steps))

    @property
    def actor_batch_size(self) -> int:
        """The effective actor mini-batch size M (B for smac)."""
        return self.n_steps if self.batch_size is None else self.batch_size

    def to_dict(self) -> dict[str, Any]:
        """The flat, JSON-able form (enums as their values, tuples as lists).

        The common fields, with the algorithm's own in place of ``algo_settings``.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "algo_settings":
                out.update(self._settings.to_dict())
            elif isinstance(v, enum.Enum):
                out[f.name] = v.value
            elif isinstance(v, tuple):
                out[f.name] = list(v)
            else:
                out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (values may be strings as typed on a command line).

        Raises:
            ConfigError: a key is unknown, or is another algorithm's setting (naming it).
        """
        algo = Algo.parse(data.get("algo", cls.algo))
        section = ALGO_SETTINGS[algo]
        own = section.field_names()
        common: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        for k, v in data.items():
            if k in own:
                settings[k] = _coerce_value(k, v)
            elif k in COMMON_FIELDS:
                common[k] = _coerce_value(k, v)
            elif k in _SECTION_FIELDS:
                raise ConfigError(_foreign_key_message(k, algo))
            else:
                raise ConfigError(_unknown_key_message(k))
        return cls(**common, algo_settings=section(**settings))

    def override(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed, by their flat names (values are coerced and validated).

        A new ``algo`` keeps the settings of the old section that it reads too (smac's ``damping``
        for woodbury) and its own defaults for the rest; ``algo_settings=`` replaces the section.
        """
        section = changes.pop("algo_settings", None)
        flat = self.to_dict()
        if "algo" in changes and Algo.parse(changes["algo"]) is not self.algo:
            keep = ALGO_SETTINGS[Algo.parse(changes["algo"])].field_names()
            flat = {k: v for k, v in flat.items() if k in COMMON_FIELDS or k in keep}
        for k in changes:
            if k not in COMMON_FIELDS and k not in _SECTION_FIELDS:
                raise ConfigError(_unknown_key_message(k))
        cfg = TrainConfig.from_dict({**flat, **changes})
        return cfg if section is None else replace(cfg, algo_settings=section)


COMMON_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(TrainConfig) if f.name != "algo_settings")
"""The settings every algorithm reads (and the run's bookkeeping: env, algorithm, preset, seed, ...)."""
_SECTION_FIELDS: dict[str, tuple[Algo, ...]] = {}
"""Each flat name of a section field and the algorithms that read it."""
for _algo, _section in ALGO_SETTINGS.items():
    for _name in _section.field_names():
        _SECTION_FIELDS[_name] = (*_SECTION_FIELDS.get(_name, ()), _algo)


def field_names() -> list[str]:
    """Every flat setting name: the common fields, then each section's (once each)."""
    return [*COMMON_FIELDS, *_SECTION_FIELDS]


def algo_setting_names(algo: str | Algo) -> tuple[str, ...]:
    """The flat names of the settings only ``algo`` reads (its section's fields)."""
    return ALGO_SETTINGS[Algo.parse(algo)].field_names()


def algos_reading(key: str) -> tuple[Algo, ...]:
    """The algorithms whose own section holds ``key`` (none for a common setting or an unknown name)."""
    return _SECTION_FIELDS.get(key, ())


def whose_setting(key: str) -> str:
    """``key``'s owners in words, e.g. ``'a smac and woodbury setting'`` (for one-line messages)."""
    names = [a.value for a in algos_reading(key)]
    owners = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 2 else names)
    return f"{'an' if owners[:1] in tuple('aeiou') else 'a'} {owners} setting"


def _foreign_key_message(key: str, algo: Algo) -> str:
    own = algo_setting_names(algo)
    its = f"its settings: {', '.join(own)}" if own else "it has no settings of its own"
    return f"{key} is {whose_setting(key)}; algo={algo.value} does not read it ({its})"


class SavedConfigWarning(UserWarning):
    """A saved config set another algorithm's field away from its default; it was dropped on reading."""


_LEGACY_CG_FIELDS = {"cg_max_kl": None, "cg_line_search": False, "cg_backtrack_iters": 10}
"""ac-cg's step-size options before they became the step-size rule of every algorithm, and their defaults."""
_RENAMED = {
    "cg_max_kl": "step_rule=kl with target_kl=δ",
    "cg_line_search": "backtrack_iters (the most line-search candidates; 0 = off)",
    "cg_backtrack_iters": "backtrack_iters",
}
"""Settings that no longer exist and what replaced them (for the message of an unknown key)."""


def upgrade_saved_config(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config saved by any natpg version (``config.json``, a checkpoint's or a summary's) in the form this version writes.

    The result loads and compares equal to the same config planned today.

    * Runs written before the settings were split by algorithm recorded every algorithm's fields.
      The fields ``data``'s algorithm does not read are dropped: silently when at their default,
      otherwise with a :class:`SavedConfigWarning` (the run never read them, so dropping them changes
      nothing it did).
    * ac-cg's ``cg_max_kl``, ``cg_line_search`` and ``cg_backtrack_iters`` became the step-size rule:
      ``cg_max_kl=δ`` reads as ``step_rule=kl, target_kl=δ``, and ``cg_line_search`` with
      ``cg_backtrack_iters=n`` as ``backtrack_iters=n`` (0 without the line search): the same steps.
    * A setting of the algorithm that the saved config lacks (it predates the setting) takes its
      default, which is how that run behaved.

    A dict whose ``algo`` is missing or unknown is returned as it is.
    """
    try:
        algo = Algo.parse(data["algo"])
    except (KeyError, ConfigError):
        return dict(data)
    section = ALGO_SETTINGS[algo]
    own = section.field_names()
    legacy = {k: data[k] for k in _LEGACY_CG_FIELDS if k in data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        if k in _LEGACY_CG_FIELDS:
            continue
        if k in _SECTION_FIELDS and k not in own:
            default = getattr(ALGO_SETTINGS[_SECTION_FIELDS[k][0]](), k)
            _warn_dropped(data["algo"], k, v, _plain(default))
            continue
        out[k] = v
    if algo is Algo.AC_CG:
        if legacy.get("cg_max_kl") is not None:
            out.setdefault("step_rule", StepRule.KL.value)
            out.setdefault("target_kl", legacy["cg_max_kl"])
        if "cg_line_search" in legacy:
            searched = legacy["cg_line_search"]
            out.setdefault("backtrack_iters", legacy.get("cg_backtrack_iters", 10) if searched else 0)
    else:
        for k, v in legacy.items():
            _warn_dropped(data["algo"], k, v, _LEGACY_CG_FIELDS[k])
    defaults = section().to_dict()
    for k in own:
        out.setdefault(k, defaults[k])
    return out


def _warn_dropped(algo: Any, key: str, value: Any, default: Any) -> None:
    if value != default:
        warnings.warn(f"a saved config of algo={algo} sets {key}={value!r}, which that algorithm does "
                      f"not read; dropped", SavedConfigWarning, stacklevel=3)


def _plain(value: Any) -> Any:
    """An enum as its value (what JSON holds); anything else as it is."""
    return value.value if isinstance(value, enum.Enum) else value


# --------------------------------------------------------------------------- coercion

_HINTS: dict[str, Any] | None = None


def _hints() -> dict[str, Any]:
    """The type of every flat setting (the common fields' and the sections')."""
    global _HINTS
    if _HINTS is None:
        hints = {k: v for k, v in _type_hints(TrainConfig).items() if k in COMMON_FIELDS}
        for section in ALGO_SETTINGS.values():
            hints.update({k: v for k, v in _type_hints(section).items() if k in section.field_names()})
        _HINTS = hints
    return _HINTS


def _unknown_key_message(key: str) -> str:
    if key in _RENAMED:
        return f"{key} no longer exists; use {_RENAMED[key]} (docs/method.md §2, step size)"
    close = difflib.get_close_matches(key, field_names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(field_names())}"
    return f"unknown setting {key!r}{hint}"


def _coerce_enums(cfg: TrainConfig) -> None:
    for name, enum_cls in (("algo", Algo), ("env_backend", EnvBackend), ("vectorization", Vectorization)):
        value = getattr(cfg, name)
        if not isinstance(value, enum_cls):
            parsed = Algo.parse(value) if enum_cls is Algo else _parse_choice(enum_cls, value, name)
            object.__setattr__(cfg, name, parsed)
    if isinstance(cfg.hidden_sizes, list):
        object.__setattr__(cfg, "hidden_sizes", tuple(cfg.hidden_sizes))


_E = typing.TypeVar("_E", bound=enum.Enum)


def _parse_choice(enum_cls: type[_E], value: Any, name: str,
                  message: str = "{name}={value!r} is not allowed; allowed: {allowed}") -> _E:
    """The member of ``enum_cls`` that ``value`` names (any case), else a :class:`ConfigError`.

    Its text is ``message`` formatted with the setting's ``name``, ``value`` and ``allowed`` (the members' values).
    """
    if isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(str(value).lower())
    except ValueError:
        allowed = ", ".join(e.value for e in enum_cls)
        raise ConfigError(message.format(name=name, value=value, allowed=allowed)) from None


def parse_setting(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override as typed on the command line."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if key not in field_names():
        raise ConfigError(_unknown_key_message(key))
    return key, _coerce_value(key, raw.strip())


def _coerce_value(key: str, value: Any) -> Any:
    """Turn ``value`` (a string from the CLI, or a Python value) into the field's type."""
    hint = _hints()[key]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if origin in (typing.Union, type(int | None)) else hint

    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("none", "null", ""):
            return None
        if base is bool:
            low = text.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{key}={value!r} is not a boolean; allowed: true or false")
        if base in (int, float):
            try:
                num = float(text.replace("_", ""))
            except ValueError:
                raise ConfigError(f"{key}={value!r} is not a number") from None
            value = num
        elif typing.get_origin(base) is tuple:
            try:
                parsed = json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
                return tuple(int(p) for p in parsed)
            except (ValueError, TypeError):
                raise ConfigError(f"{key}={value!r} must be a comma-separated list of integers, e.g. 64,64") from None
        else:
            return text  # enums and strings are checked in validation
    if value is None:
        if not optional:
            raise ConfigError(f"{key} may not be None")
        return None
    if base is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise ConfigError(f"{key}={value!r} must be an integer")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} must be a number")
        return float(value)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false")
    if typing.get_origin(base) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list of integers")
        return tuple(_coerce_value_int(key, v) for v in value)
    return value


def _coerce_value_int(key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer():
        raise ConfigError(f"{key} entries must be integers, got {v!r}")
    return int(v)


# --------------------------------------------------------------------------- validation

def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _positive(obj: Any, name: str) -> None:
    v = getattr(obj, name)
    _require(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
             f"{name}={v!r} must be a finite number > 0")


def _at_least_one(obj: Any, name: str) -> None:
    _require(getattr(obj, name) >= 1, f"{name}={getattr(obj, name)!r} must be an integer >= 1")


_TYPE_HINTS: dict[type, dict[str, Any]] = {}


def _type_hints(cls: type) -> dict[str, Any]:
    if cls not in _TYPE_HINTS:
        _TYPE_HINTS[cls] = typing.get_type_hints(cls)
    return _TYPE_HINTS[cls]


def _check_types(obj: Any) -> None:
    """Each plain int, float, str and bool field of the dataclass ``obj`` holds that type."""
    hints = _type_hints(type(obj))
    for f in fields(obj):
        v = getattr(obj, f.name)
        hint = hints[f.name]
        if hint is int and (isinstance(v, bool) or not isinstance(v, int)):
            raise ConfigError(f"{f.name}={v!r} must be an integer")
        if hint is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{f.name}={v!r} must be a number")
        if hint is str and not isinstance(v, str):
            raise ConfigError(f"{f.name}={v!r} must be a string")
        if hint is bool and not isinstance(v, bool):
            raise ConfigError(f"{f.name}={v!r} must be true or false")


def _validate(cfg: TrainConfig) -> None:
    """The common fields; the algorithm's section checks its own (:meth:`AlgoSettings.check_against`)."""
    _check_types(cfg)  # types first, so later comparisons cannot raise TypeError
    for name in ("actor_lr", "critic_lr"):
        _positive(cfg, name)
    for name in ("total_steps", "n_steps", "n_envs", "critic_epochs", "actor_epochs", "torch_threads",
                 "max_consecutive_skips"):
        _at_least_one(cfg, name)
    _require(0 <= cfg.seed <= SEED_MAX, f"seed={cfg.seed!r} must be an integer >= 0 and <= {SEED_MAX} (2**32 - 1)")
    for name in ("checkpoint_every", "eval_every"):
        _require(getattr(cfg, name) >= 0, f"{name}={getattr(cfg, name)!r} must be an integer >= 0 (0 = off)")
    _require(cfg.eval_episodes >= 1, f"eval_episodes={cfg.eval_episodes!r} must be an integer >= 1")
    for name in ("gamma", "gae_lambda"):
        v = getattr(cfg, name)
        _require(math.isfinite(v) and 0.0 <= v <= 1.0, f"{name}={v!r} must be in [0, 1]")
    _require(math.isfinite(cfg.ent_coef) and cfg.ent_coef >= 0, f"ent_coef={cfg.ent_coef!r} must be a finite number >= 0")
    _require(math.isfinite(cfg.log_std_init), f"log_std_init={cfg.log_std_init!r} must be finite")
    if cfg.max_episode_steps is not None:
        _require(isinstance(cfg.max_episode_steps, int) and cfg.max_episode_steps >= 1,
                 f"max_episode_steps={cfg.max_episode_steps!r} must be an integer >= 1 or None")
    _require(len(cfg.hidden_sizes) >= 1 and all(isinstance(h, int) and h >= 1 for h in cfg.hidden_sizes),
             f"hidden_sizes={cfg.hidden_sizes!r} must be one or more positive integers")
    _require(cfg.n_steps % cfg.n_envs == 0,
             f"n_steps (T) = {cfg.n_steps} is not divisible by n_envs = {cfg.n_envs}; "
             f"T must be a multiple of n_envs (divisors of {cfg.n_steps}: {_divisors(cfg.n_steps)})")
    if cfg.batch_size is not None:
        _require(1 <= cfg.batch_size <= cfg.n_steps and cfg.n_steps % cfg.batch_size == 0,
                 f"batch_size (B) = {cfg.batch_size} must divide n_steps (T) = {cfg.n_steps}; "
                 f"allowed: {_divisors(cfg.n_steps)}")
    if cfg.critic_batch_size is not None:
        _require(1 <= cfg.critic_batch_size <= cfg.n_steps and cfg.n_steps % cfg.critic_batch_size == 0,
                 f"critic_batch_size = {cfg.critic_batch_size} must divide n_steps (T) = {cfg.n_steps}; "
                 f"allowed: {_divisors(cfg.n_steps)} or None (full batch)")
    _require(bool(cfg.env_id.strip()), "env_id must not be empty")
    _require(cfg.preset in ("", "paper", "paper-inferred"),
             f"preset={cfg.preset!r} is not a preset set; allowed: paper, paper-inferred or empty")
    _require(not (cfg.env_backend is EnvBackend.ENVPOOL and cfg.vectorization is Vectorization.ASYNC),
             "vectorization='async' is Gymnasium's; env_backend='envpool' steps its copies in C++ "
             "(allowed with envpool: vectorization=sync)")


def _divisors(n: int, limit: int = 12) -> str:
    divs = [str(d) for d in range(1, n + 1) if n % d == 0]
    shown = divs if len(divs) <= limit else divs[: limit // 2] + ["..."] + divs[-limit // 2:]
    return ", ".join(str(d) for d in shown)
