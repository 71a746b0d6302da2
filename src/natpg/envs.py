"""Build the (vector) environment: episode cap, seeding and autoreset mode.

natpg steps Gymnasium vector environments in ``AutoresetMode.SAME_STEP``: when a
copy's episode ends, ``step`` returns the first observation of the next episode
and puts the real last observation in ``info["final_obs"]``. The rollout uses
that final observation to bootstrap truncated episodes, so no transition ever
crosses an episode boundary. Synchronous Gymnasium copies run in
:class:`SameStepSyncVectorEnv` (SyncVectorEnv's results without its per-step info
merging), asynchronous ones in Gymnasium's ``AsyncVectorEnv``, envpool's in
:class:`EnvPoolVectorEnv`.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from dataclasses import dataclass
from functools import partial
from typing import cast

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from natpg.config import ConfigError, EnvBackend, TrainConfig, Vectorization
from natpg.policies import UnsupportedSpaceError, flat_obs_dim


@dataclass(frozen=True)
class EnvSpaces:
    """The spaces of one environment copy."""

    observation_space: gym.Space
    action_space: gym.Space


def check_env_id(env_id: str) -> None:
    """Raise :class:`ConfigError` unless ``env_id`` is a registered Gymnasium id.

    Gymnasium's ``"module:EnvId"`` form is accepted: the module is imported (it registers
    its envs on import) and ``EnvId`` is checked.
    """
    if ":" in env_id:
        module, _, env_id = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"env id {module}:{env_id}: cannot import module {module!r} ({exc})") from None
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
    """Send MuJoCo's warnings through Python's :mod:`warnings`.

    They no longer go to stderr and a ``MUJOCO_LOG.TXT`` file in the working directory; the known
    deprecation notices of Gymnasium's bundled models are dropped. Safe to call many times; a no-op
    without MuJoCo.
    """
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
    if cfg.env_backend is EnvBackend.ENVPOOL:
        return EnvPoolVectorEnv(cfg.env_id, cfg.n_envs, cfg.max_episode_steps, cfg.seed)
    fns = [partial(make_env, cfg.env_id, cfg.max_episode_steps) for _ in range(cfg.n_envs)]
    if cfg.vectorization is Vectorization.SYNC:
        return SameStepSyncVectorEnv(fns)
    return gym.vector.AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)


_FLOAT64, _BOOL = np.dtype(np.float64), np.dtype(np.bool_)


class SameStepSyncVectorEnv(gym.vector.VectorEnv):
    """The copies stepped in this process, in order, with SAME_STEP autoreset and no per-copy infos.

    Same observations, rewards, flags and final observations as
    ``gymnasium.vector.SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)``,
    step for step: when copy ``i``'s episode ends (terminated or truncated), it is
    reset in the same step, its first observation is returned, and the real last
    observation goes to ``info["final_obs"][i]`` (an object array, ``None`` for the
    copies that did not end) with the mask ``info["_final_obs"]``. ``info`` is
    ``{}`` when no copy ended. ``reset`` seeds copy ``i`` with ``seed + i`` (a list
    gives one seed per copy, ``None`` leaves them unseeded), passes ``options`` on,
    honours ``options["reset_mask"]`` (only the masked copies are reset) and
    returns the copies' reset infos merged as Gymnasium does.

    What it leaves out: the info dicts of ``step``. Gymnasium merges every key of
    every copy's info (Hopper: 6 keys) into batched arrays with masks on every
    step, adds ``final_info`` at episode ends, and deep-copies the batch; natpg
    reads only ``final_obs``, so a step costs little more than calling the
    ``gym.make`` env itself (figures: ``benchmarks/throughput.py``, in
    ``benchmarks/results/``).
    ``tests/test_vector_env.py`` checks, step by step, that everything else equals
    ``SyncVectorEnv``'s.

    Observations must be a ``Box`` (natpg accepts no other); each step writes them
    into one preallocated batch and returns a copy of it, so a caller may keep or
    change the array. The copies are in :attr:`envs`, and the object pickles with
    their state like ``SyncVectorEnv`` (the trainer's checkpoints rely on it).
    """

    def __init__(self, env_fns) -> None:
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        first = self.envs[0]
        self.metadata = {**first.metadata, "autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        if not isinstance(self.single_observation_space, gym.spaces.Box):
            raise TypeError(f"SameStepSyncVectorEnv needs a Box observation space, got {self.single_observation_space}")
        for env in self.envs[1:]:
            if env.observation_space != self.single_observation_space or env.action_space != self.single_action_space:
                raise RuntimeError(f"the copies' spaces differ: {env.observation_space}, {env.action_space} vs "
                                   f"{self.single_observation_space}, {self.single_action_space}")
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._obs = np.zeros(tuple(self.observation_space.shape or ()), dtype=self.observation_space.dtype or np.float32)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        """Reset the copies (copy ``i`` seeded ``seed + i``; only the ``reset_mask`` ones if given); return ``(obs, infos)``."""
        n = self.num_envs
        seeds = [None] * n if seed is None else [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise ValueError(f"{len(seeds)} seeds for {n} copies")
        mask = None
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = options.pop("reset_mask")
            if not (isinstance(mask, np.ndarray) and mask.dtype == np.bool_):
                raise TypeError(f"options['reset_mask'] must be a bool numpy array, got {mask!r}")
            if mask.shape != (n,) or not mask.any():
                raise ValueError(f"options['reset_mask'] must have shape ({n},) and a True entry, got {mask}")
        infos: dict = {}
        for i, (env, s) in enumerate(zip(self.envs, seeds)):
            if mask is None or mask[i]:
                self._obs[i], env_info = env.reset(seed=s, options=options)
                infos = self._add_info(infos, env_info, i)
        return self._obs.copy(), infos

    def step(self, actions):
        """Step every copy once, resetting the ones that ended in this step (``final_obs`` in ``info``); return the 5-tuple."""
        n = self.num_envs
        if len(actions) != n:
            raise ValueError(f"{len(actions)} actions for {n} copies")
        obs = self._obs
        rewards = np.empty(n, _FLOAT64)
        terminated = np.empty(n, _BOOL)
        truncated = np.empty(n, _BOOL)
        final_obs = None
        # indexing beats zip(envs, actions, strict=True), which costs ~0.7 µs a step on a NumPy batch
        for i, env in enumerate(self.envs):
            o, r, term, trunc, _ = env.step(actions[i])
            if term or trunc:
                if final_obs is None:
                    final_obs = np.full(n, None, dtype=object)
                final_obs[i] = o
                o, _ = env.reset()
            obs[i] = o
            rewards[i] = r
            terminated[i] = term
            truncated[i] = trunc
        info = {} if final_obs is None else {"final_obs": final_obs, "_final_obs": terminated | truncated}
        return obs.copy(), rewards, terminated, truncated, info

    def close_extras(self, **kwargs) -> None:
        """Close every copy's environment."""
        for env in self.envs:
            env.close()


class EnvPoolVectorEnv(gym.vector.VectorEnv):
    """envpool's C++ simulator behind the same vector-env contract as the Gymnasium backend.

    The observation and action spaces are the Gymnasium env's (checked against
    envpool's: same shapes and bounds; actions are cast to envpool's dtype), the
    episode cap is ``max_episode_steps`` (a time-limit truncation, as in
    Gymnasium), and autoreset follows ``AutoresetMode.SAME_STEP``: envpool itself
    resets on the step *after* an episode ends (NEXT_STEP), so this adapter
    resets the finished copies at once, returns their first observation, and puts
    the real last observation in ``info["final_obs"]``. The rollout therefore
    counts episodes exactly as with Gymnasium, and no step is wasted on a reset.

    envpool fixes seeds when the pool is built, so ``reset(seed=s)`` rebuilds the
    pool with seed ``s``. The pool steps its copies on one worker thread.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env_id: str, num_envs: int, max_episode_steps: int | None, seed: int = 0) -> None:
        try:
            import envpool
        except ImportError:
            raise ConfigError("env_backend='envpool' needs the envpool package: "
                              "pip install 'natpg[bench]' (or pick env_backend=gymnasium)") from None
        if env_id not in envpool.list_all_envs():
            raise ConfigError(f"envpool {envpool.__version__} does not provide {env_id!r}; "
                              f"use env_backend=gymnasium for it")
        spaces = probe_spaces(env_id)
        self._envpool = envpool
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.max_episode_steps = (max_episode_steps if max_episode_steps is not None
                                  else gym.spec(env_id).max_episode_steps)
        self.single_observation_space = spaces.observation_space
        self.single_action_space = spaces.action_space
        self.observation_space = gym.vector.utils.batch_space(spaces.observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(spaces.action_space, self.num_envs)
        self._seed = int(seed)
        self._pool = self._make_pool(self._seed)
        with warnings.catch_warnings():  # envpool builds float64 Box bounds that Gymnasium casts to float32
            warnings.simplefilter("ignore", UserWarning)
            _check_same_spaces(env_id, spaces, self._pool)
            self._act_dtype = getattr(self._pool.action_space, "dtype", None)
        self._obs_dtype = spaces.observation_space.dtype

    def _make_pool(self, seed: int):
        kwargs = {"num_envs": self.num_envs, "batch_size": self.num_envs, "seed": seed, "num_threads": 1}
        if self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = int(self.max_episode_steps)
        with warnings.catch_warnings():  # envpool builds float64 Box bounds that Gymnasium casts to float32
            warnings.simplefilter("ignore", UserWarning)
            return self._envpool.make_gymnasium(self.env_id, **kwargs)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Reset the pool (rebuilt with the new seed when ``seed`` differs); return ``(obs, {})``."""
        if seed is not None and int(seed) != self._seed:
            self._pool.close()
            self._seed = int(seed)
            self._pool = self._make_pool(self._seed)
        obs, _ = self._pool.reset()
        return np.asarray(obs, dtype=self._obs_dtype), {}

    def step(self, actions):
        """Step the pool once, resetting the copies that ended in this step (``final_obs`` in ``info``); return the 5-tuple."""
        actions = np.asarray(actions, dtype=self._act_dtype)
        obs, reward, terminated, truncated, _ = self._pool.step(actions)
        obs = np.asarray(obs, dtype=self._obs_dtype)
        done = np.logical_or(terminated, truncated)
        info: dict = {}
        if done.any():
            ids = np.flatnonzero(done).astype(np.int32)
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in ids:
                final_obs[i] = obs[i].copy()
            first_obs, reset_info = self._pool.reset(ids)
            obs[np.asarray(reset_info["env_id"])] = first_obs
            info = {"final_obs": final_obs, "_final_obs": done}
        return obs, np.asarray(reward, dtype=np.float64), np.asarray(terminated, bool), np.asarray(truncated, bool), info

    def close(self, **kwargs) -> None:
        """Close the pool (idempotent)."""
        if not getattr(self, "_closed", False):
            self._pool.close()
            self._closed = True


def _check_same_spaces(env_id: str, spaces: EnvSpaces, pool) -> None:
    """Raise :class:`ConfigError` unless envpool's spaces have the Gymnasium env's shapes and bounds."""
    o_gym, o_pool = spaces.observation_space, pool.observation_space
    a_gym, a_pool = spaces.action_space, pool.action_space
    same_obs = o_gym.shape == o_pool.shape
    if isinstance(a_gym, gym.spaces.Discrete):
        same_act = isinstance(a_pool, gym.spaces.Discrete) and a_gym.n == a_pool.n
    else:
        box_gym, box_pool = cast(gym.spaces.Box, a_gym), cast(gym.spaces.Box, a_pool)
        same_act = (box_gym.shape == box_pool.shape and np.allclose(box_gym.low, box_pool.low)
                    and np.allclose(box_gym.high, box_pool.high))
    if not (same_obs and same_act):
        raise ConfigError(f"envpool's {env_id!r} differs from Gymnasium's: observation {o_pool} vs {o_gym}, "
                          f"action {a_pool} vs {a_gym}; use env_backend=gymnasium")
