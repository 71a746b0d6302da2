"""Build the (vector) environment: episode cap, seeding and autoreset mode.

natpg steps Gymnasium vector environments in ``AutoresetMode.SAME_STEP``: when a
copy's episode ends, ``step`` returns the first observation of the next episode
and puts the real last observation in ``info["final_obs"]``. The rollout uses
that final observation to bootstrap truncated episodes, so no transition ever
crosses an episode boundary.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass
from functools import partial

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from natpg.config import ConfigError, EnvBackend, TrainConfig, Vectorization
from natpg.policies import UnsupportedSpaceError, flat_obs_dim


@dataclass(frozen=True)
class EnvSpaces:
    """The spaces of one environment copy."""

    observation_space: gym.Space
    action_space: gym.Space


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` unless ``env_id`` is a registered Gymnasium id."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown env id {env_id!r}{hint} (see gymnasium.pprint_registry())")


class MuJoCoWarning(UserWarning):
    """A warning raised by the MuJoCo engine."""


#: MuJoCo warnings that come from Gymnasium's bundled model files, not from anything a user did.
_IGNORED_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)
_mujoco_handler_installed = False


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings through Python's :mod:`warnings` instead of stderr and a
    ``MUJOCO_LOG.TXT`` file in the working directory; drop the known deprecation notices of
    Gymnasium's bundled models. Safe to call many times; a no-op without MuJoCo."""
    global _mujoco_handler_installed
    if _mujoco_handler_installed:
        return
    try:
        import mujoco
    except ImportError:  # pragma: no cover - mujoco is a core dependency
        return

    def handler(message: str) -> None:
        if not any(m in message for m in _IGNORED_MUJOCO_WARNINGS):
            warnings.warn(message, MuJoCoWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)
    _mujoco_handler_installed = True


def make_env(env_id: str, max_episode_steps: int | None, **kwargs) -> gym.Env:
    """One environment copy with the episode cap applied (overriding the registered limit)."""
    route_mujoco_warnings()
    if max_episode_steps is None:
        return gym.make(env_id, **kwargs)
    return gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)


def probe_spaces(env_id: str) -> EnvSpaces:
    """Build one copy, read its spaces, close it. Checks that natpg can act in them."""
    check_env_id(env_id)
    route_mujoco_warnings()
    try:
        env = gym.make(env_id)
    except gym.error.DependencyNotInstalled as exc:
        raise ConfigError(f"env {env_id!r} needs a package that is not installed: {exc}") from None
    try:
        spaces = EnvSpaces(env.observation_space, env.action_space)
    finally:
        env.close()
    check_spaces(spaces)
    return spaces


def check_spaces(spaces: EnvSpaces) -> None:
    """Raise :class:`ConfigError` for an observation or action space natpg cannot handle."""
    try:
        flat_obs_dim(spaces.observation_space)
    except UnsupportedSpaceError as exc:
        raise ConfigError(str(exc)) from None
    a = spaces.action_space
    if not (isinstance(a, gym.spaces.Discrete) or (isinstance(a, gym.spaces.Box) and len(a.shape) == 1)):
        raise ConfigError(f"action space {a} is not supported; allowed: Discrete(n) or a 1-D Box")


def make_vector_env(cfg: TrainConfig) -> gym.vector.VectorEnv:
    """The ``cfg.n_envs`` copies of ``cfg.env_id`` as one SAME_STEP-autoreset vector env (not yet reset)."""
    if cfg.env_backend is not EnvBackend.GYMNASIUM:  # pragma: no cover - only one backend so far
        raise ConfigError(f"env_backend={cfg.env_backend.value!r} is not available")
    fns = [partial(make_env, cfg.env_id, cfg.max_episode_steps) for _ in range(cfg.n_envs)]
    cls = gym.vector.SyncVectorEnv if cfg.vectorization is Vectorization.SYNC else gym.vector.AsyncVectorEnv
    return cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)
