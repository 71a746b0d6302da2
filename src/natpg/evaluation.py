"""Evaluate a policy on separately seeded environments, optionally recording a video.

Evaluation never disturbs training: it builds its own environment (one copy,
the run's episode cap), seeds episode ``k`` with ``seed + k`` where the default
``seed`` is the run's seed plus :data:`EVAL_SEED_OFFSET` (training resets use
``seed + i`` for its ``n_envs`` copies), samples stochastic actions inside
``torch.random.fork_rng`` so torch's global RNG is left as it was, and leaves
the observation normaliser's statistics frozen.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from natpg.checkpoint import checkpoint_path, load_checkpoint, require_keys
from natpg.config import ConfigError, TrainConfig
from natpg.envs import make_env, probe_spaces
from natpg.normalization import ObsNormalizer
from natpg.policies import Actor, flat_obs_dim

EVAL_SEED_OFFSET = 1_000_000
"""Added to the run's seed to seed evaluation episodes apart from training ones."""

VIDEO_SUFFIXES = (".gif", ".mp4")


@dataclass(frozen=True)
class EvalResult:
    """Returns and lengths of the evaluation episodes."""

    returns: tuple[float, ...]
    lengths: tuple[int, ...]

    @property
    def mean_return(self) -> float:
        """Mean of the episode returns."""
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        """Population standard deviation of the returns (0 for one episode)."""
        return float(np.std(self.returns))

    @property
    def mean_length(self) -> float:
        """Mean episode length, in steps."""
        return float(np.mean(self.lengths))

    def row(self) -> dict[str, float | int]:
        """The ``eval/…`` entries logged to ``eval.csv`` and TensorBoard."""
        return {"eval/mean_return": self.mean_return, "eval/std_return": self.std_return,
                "eval/mean_length": self.mean_length, "eval/episodes": len(self.returns)}


@dataclass
class LoadedPolicy:
    """A trained actor with what it needs to act: its config and (if used) observation statistics."""

    config: TrainConfig
    actor: Actor
    normalizer: ObsNormalizer | None
    global_step: int


def load_policy(run_dir: str | Path) -> LoadedPolicy:
    """The actor (and observation normaliser) of the latest checkpoint of ``run_dir``."""
    state = load_checkpoint(run_dir)
    require_keys(run_dir, state, ("config", "actor", "global_step"))
    cfg = TrainConfig.from_dict(state["config"])
    spaces = probe_spaces(cfg.env_id)
    actor = Actor(flat_obs_dim(spaces.observation_space), spaces.action_space, cfg.hidden_sizes, cfg.log_std_init)
    try:
        actor.load_state_dict(state["actor"])
        normalizer = None
        if state.get("obs_rms") is not None:
            normalizer = ObsNormalizer(tuple(spaces.observation_space.shape or ()))
            normalizer.load_state_dict(state["obs_rms"])
        global_step = int(state["global_step"])
    except (KeyError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"checkpoint {str(checkpoint_path(run_dir))!r} is damaged: it does not fit its config "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return LoadedPolicy(cfg, actor, normalizer, global_step)


def evaluate(actor: Actor, env_id: str, n_episodes: int, seed: int, deterministic: bool = False,
             max_episode_steps: int | None = 1000, normalizer: ObsNormalizer | None = None,
             video: str | Path | None = None) -> EvalResult:
    """Run ``n_episodes`` full episodes of ``actor`` and return their returns and lengths.

    Args:
        actor: the policy; stochastic actions are sampled unless ``deterministic``
            (then the mode: argmax for categorical, the mean for Gaussian).
        env_id: Gymnasium id.
        n_episodes: number of episodes (>= 1); episode ``k`` is reset with ``seed + k``.
        seed: base seed of the evaluation episodes and of action sampling.
        deterministic: act with the distribution's mode.
        max_episode_steps: the episode cap (``None`` keeps the registered one).
        normalizer: observation statistics the actor was trained with (used frozen).
        video: write the first episode to this ``.gif`` or ``.mp4`` file (via imageio).

    Raises:
        ConfigError: bad ``n_episodes`` or ``video`` suffix, or the env cannot render offscreen.
    """
    if not (isinstance(n_episodes, int) and n_episodes >= 1):
        raise ConfigError(f"episodes={n_episodes!r} must be an integer >= 1")
    if not (isinstance(seed, int) and 0 <= seed and seed + n_episodes <= 2**63 - 1):
        raise ConfigError(f"seed={seed!r} must be an integer >= 0 with seed + episodes <= 2**63 - 1 "
                          f"(episode k is seeded with seed + k)")
    writer = None
    if video is not None:
        video = Path(video)
        if video.suffix.lower() not in VIDEO_SUFFIXES:
            raise ConfigError(f"--video {str(video)!r} must end in {' or '.join(VIDEO_SUFFIXES)}")
        if not video.parent.is_dir():
            raise ConfigError(f"--video {str(video)!r}: folder {str(video.parent)!r} does not exist")
    env = _make_eval_env(env_id, max_episode_steps, render=video is not None)
    returns, lengths = [], []
    try:
        if video is not None:
            env.reset(seed=seed)
            _render(env, env_id)  # fail with a clear message before any file is created
            writer = _open_video(video, env)
        low = high = None
        if isinstance(env.action_space, gym.spaces.Box):
            low, high = env.action_space.low, env.action_space.high
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for k in range(n_episodes):
                obs, _ = env.reset(seed=seed + k)
                ret, length, done = 0.0, 0, False
                while not done:
                    if writer is not None and k == 0:
                        writer.append_data(_render(env, env_id))
                    x = np.asarray(obs, dtype=np.float32).reshape(1, -1)
                    if normalizer is not None:
                        x = normalizer.normalize(x)
                    action = actor.act(torch.from_numpy(x), deterministic=deterministic)[0].numpy()
                    if low is not None:
                        action = np.clip(action, low, high)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    ret += float(reward)
                    length += 1
                    done = terminated or truncated
                if writer is not None and k == 0:
                    writer.append_data(_render(env, env_id))
                returns.append(ret)
                lengths.append(length)
    finally:
        if writer is not None:
            writer.close()
        env.close()
    return EvalResult(tuple(returns), tuple(lengths))


def evaluate_run(run_dir: str | Path, n_episodes: int = 10, deterministic: bool = False, seed: int | None = None,
                 video: str | Path | None = None) -> EvalResult:
    """Evaluate the latest checkpoint of a run folder (what ``natpg eval`` calls)."""
    loaded = load_policy(run_dir)
    cfg = loaded.config
    base = cfg.seed + EVAL_SEED_OFFSET if seed is None else seed
    return evaluate(loaded.actor, cfg.env_id, n_episodes, base, deterministic, cfg.max_episode_steps,
                    loaded.normalizer, video)


def format_result(result: EvalResult) -> str:
    """``mean ± std`` over the episodes, e.g. ``return 187.40 ± 12.03 over 10 episodes``."""
    std = result.std_return if math.isfinite(result.std_return) else float("nan")
    return f"return {result.mean_return:.2f} ± {std:.2f} over {len(result.returns)} episodes " \
           f"(mean length {result.mean_length:.1f})"


def _make_eval_env(env_id: str, max_episode_steps: int | None, render: bool) -> gym.Env:
    if not render:
        return make_env(env_id, max_episode_steps)
    # Offscreen frames need no display: SDL's dummy video driver (pygame, classic control) draws into
    # memory and does not complain about a missing XDG_RUNTIME_DIR. A driver the user chose is kept.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        with warnings.catch_warnings():  # an env without 'rgb_array' gets the clear error below instead
            warnings.filterwarnings("ignore", message=".*render_mode.*")
            env = make_env(env_id, max_episode_steps, render_mode="rgb_array")
    except Exception as exc:  # noqa: BLE001 - gymnasium raises several types here
        raise ConfigError(f"env {env_id!r} cannot render offscreen (render_mode='rgb_array'): {exc}") from None
    modes = env.metadata.get("render_modes") or []
    if "rgb_array" not in modes:
        env.close()
        raise ConfigError(f"env {env_id!r} cannot render offscreen: its render modes are {list(modes)}, "
                          f"a video needs 'rgb_array'")
    return env


def _render(env: gym.Env, env_id: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():  # GLFW/pygame warn before failing; the error below says it once
            warnings.simplefilter("ignore")
            frame = env.render()
    except Exception as exc:  # noqa: BLE001 - OpenGL/pygame failures come in many types
        hint = " (MuJoCo renders headless with MUJOCO_GL=egl or MUJOCO_GL=osmesa)" if "mujoco" in repr(
            type(env.unwrapped)).lower() else ""
        raise ConfigError(f"env {env_id!r} cannot render offscreen on this machine: "
                          f"{type(exc).__name__}: {exc}{hint}") from None
    if not isinstance(frame, np.ndarray) or frame.ndim != 3:
        raise ConfigError(f"env {env_id!r} returned no RGB frame from render(); it cannot record a video")
    return frame


def _open_video(path: Path, env: gym.Env):
    try:
        import imageio.v2 as imageio
    except ImportError:
        raise ConfigError("--video needs imageio; install it with: pip install 'natpg[video]'") from None
    fps = int(env.metadata.get("render_fps") or 30)
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ConfigError("an .mp4 video needs imageio-ffmpeg (pip install 'natpg[video]'); "
                              "or write a .gif") from None
        return imageio.get_writer(path, fps=fps, macro_block_size=1)
    return imageio.get_writer(path, mode="I", duration=1000.0 / fps, loop=0)
