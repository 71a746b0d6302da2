"""The actor-critic loop: rollout → GAE → actor update → critic update → logs → checkpoint.

:meth:`Trainer.run` is the loop, to be read top to bottom; :meth:`Trainer.train_iteration`
is one iteration of it. What the loop ties together lives elsewhere: the actor's update rule
(built from the config by :func:`natpg.updates.make_update`; the trainer only calls its
``step`` and does not know which rule it runs), the critic's update (:mod:`natpg.critic`),
GAE (:mod:`natpg.advantages`), the logs (:mod:`natpg.logger`) and the checkpoints
(:mod:`natpg.checkpoint`).

A run folder gets a checkpoint every ``checkpoint_every`` iterations and at the end;
:func:`resume` continues a run from it and appends to the same logs. What a resume restores:

* bit-identically: actor, critic, the critic's and any update rule's optimizer
  state (Adam moments), observation-normaliser statistics, the RNG states of
  torch, numpy and Python, and the counters (iteration, global step, elapsed time);
* the environments, bit-identically, when every copy survives a pickle round trip
  with its state (synchronous vectorisation of envs that are not ``EzPickle``, such
  as the classic-control tasks): then the resumed run is the same run as one that
  never stopped, episode for episode;
* otherwise (MuJoCo envs, whose ``EzPickle`` rebuilds a fresh simulator, and
  ``vectorization=async``) the environments cannot be restored: they are reset
  with seed ``seed + RESUME_SEED_STRIDE · iteration`` and the episodes that were in
  progress at the checkpoint are dropped (they never reach ``episodes.csv``).
"""

from __future__ import annotations

import math
import pickle
import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.distributions import Distribution, kl_divergence

from natpg.advantages import compute_gae
from natpg.checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FILE,
    Checkpointer,
    checkpoint_path,
    load_checkpoint,
    pickle_envs,
    save_checkpoint,
    unpickle_envs,
)
from natpg.config import ConfigError, TrainConfig
from natpg.critic import CriticInfo, CriticUpdate
from natpg.envs import make_vector_env, probe_spaces
from natpg.evaluation import EVAL_SEED_OFFSET, EvalResult, evaluate
from natpg.guards import SkipCounter, all_finite, restore, rollout_fault, snapshot
from natpg.interrupt import Interrupted, pending
from natpg.logger import Logger, check_tensorboard, read_episodes, truncate_logs
from natpg.normalization import ObsNormalizer, ObsNormalizeWrapper, RewardScaler
from natpg.policies import Actor, Critic, flat_obs_dim
from natpg.rollout import Episode, Rollout, RolloutCollector
from natpg.runfolder import (
    RunLock,
    canonical,
    check_out_path,
    clear_run_folder,
    describe_os_error,
    holds_files,
    is_run_folder,
    read_config,
    remove_temp_files,
)
from natpg.runlog import CONFIG_FILE, EPISODES_FILE, EVAL_FILE, ITERATIONS_FILE, SUMMARY_FILE, write_summary
from natpg.updates import ActorBatch, UpdateInfo, make_update

RESUME_SEED_STRIDE = 10_007
"""Environments that cannot be restored are reset on resume with ``seed + RESUME_SEED_STRIDE · iteration``."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    config: TrainConfig
    run_dir: Path | None
    global_step: int
    iterations: int
    wall_time_s: float
    episodes: list[Episode] = field(default_factory=list)

    @property
    def returns(self) -> list[float]:
        """The returns of the finished episodes, in the order they finished."""
        return [e.ret for e in self.episodes]

    @property
    def final_return(self) -> float:
        """Mean return of the last 10 finished episodes (NaN if none finished)."""
        tail = self.returns[-10:]
        return float(np.mean(tail)) if tail else float("nan")

    @property
    def steps_per_second(self) -> float:
        """Environment steps per wall-clock second (NaN if no time was measured)."""
        return self.global_step / self.wall_time_s if self.wall_time_s > 0 else float("nan")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> RunLock:
    """Create and lock ``run_dir`` for a new run; return the held :class:`~natpg.runfolder.RunLock`.

    A folder that already holds files is refused unless ``overwrite``; with ``overwrite``
    only a recognisable natpg run folder is accepted, and only the files natpg wrote are
    deleted (after the lock is held, so a live run is never touched). Nothing is written
    before every check has passed.

    Raises:
        ConfigError: the path is a file or runs through one, the folder holds files (without
            ``overwrite``), is not a natpg run (with it), is locked by another process, or
            cannot be written.
    """
    run_dir = Path(run_dir)
    check_out_path(run_dir)
    if holds_files(run_dir):
        if not overwrite:
            raise ConfigError(f"run folder {str(run_dir)!r} already holds files; choose another --out "
                              f"or pass --overwrite to replace it")
        if not is_run_folder(run_dir):
            raise ConfigError(f"--overwrite refused: {str(run_dir)!r} is not a natpg run folder (no natpg "
                              f"{CONFIG_FILE}); natpg only ever deletes its own run folders")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run folder {describe_os_error(exc)}") from None
    lock = RunLock.acquire(run_dir)
    try:
        if overwrite:
            clear_run_folder(run_dir)
    except OSError as exc:
        lock.release()
        raise ConfigError(f"--overwrite cannot clear the run folder: {describe_os_error(exc)}") from None
    return lock


class Trainer:
    """One actor-critic training run.

    Building a Trainer validates everything that can be checked before training
    (config, env id, action space) and then creates the networks, the update rules
    and the environments. Call :meth:`run` to train.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        spaces = probe_spaces(cfg.env_id)  # raises ConfigError before any vector env is built
        if cfg.tensorboard:
            check_tensorboard()
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        obs_dim = flat_obs_dim(spaces.observation_space)
        self.actor = Actor(obs_dim, spaces.action_space, cfg.hidden_sizes, cfg.log_std_init)
        self.critic = Critic(obs_dim, cfg.hidden_sizes)
        self.critic_update = CriticUpdate(self.critic, cfg.critic_lr, cfg.critic_epochs, cfg.critic_batch_size)
        self.update = make_update(cfg, self.actor)
        self.envs = make_vector_env(cfg)
        self.normalizer: ObsNormalizer | None = None
        if cfg.normalize_obs:
            self.envs = ObsNormalizeWrapper(self.envs)
            self.normalizer = self.envs.normalizer
        self.collector = RolloutCollector(self.envs, cfg.seed)
        self.reward_scaler = RewardScaler(cfg.n_envs, cfg.gamma) if cfg.normalize_reward else None
        self.iteration = 0
        self.skips = SkipCounter(cfg.max_consecutive_skips)
        self.elapsed_s = 0.0
        """Wall time of the iterations run so far, earlier sessions of a resumed run included."""
        self.episodes: list[Episode] = []
        """Every finished episode of the run (read back from ``episodes.csv`` on resume)."""
        self.env_state_restored: bool | None = None
        """After :meth:`load_state_dict`: whether the environments were restored bit-identically."""

    @property
    def global_step(self) -> int:
        """Environment steps taken so far, over all env copies."""
        return self.collector.global_step

    # ------------------------------------------------------------------ the loop

    def run(self, run_dir: Path | None = None, progress: bool = False,
            on_iteration: Callable[[dict], None] | None = None, resumed: bool = False) -> TrainResult:
        """Train until ``cfg.total_steps`` steps; log into ``run_dir`` if given.

        With a ``run_dir``, a checkpoint is saved before the first iteration, every
        ``cfg.checkpoint_every`` iterations and at the end, each after that iteration's rows
        are on disk. ``resumed`` (set by :func:`resume`) appends to the existing logs.
        ``on_iteration`` gets each iteration's row (with the evaluation's keys when one ran).
        """
        cfg = self.cfg
        logger, checkpoints = Logger(), Checkpointer(run_dir, cfg.checkpoint_every)  # no folder: nothing written
        recent: deque[float] = deque((e.ret for e in self.episodes[-20:]), maxlen=20)
        start = time.perf_counter() - self.elapsed_s
        bar = _ProgressBar(cfg.total_steps, enabled=progress)
        try:
            if run_dir is not None:
                logger = Logger.open(run_dir, cfg.to_dict(), tensorboard=cfg.tensorboard,
                                     purge_step=self.global_step + 1 if resumed else None)
            if not resumed and self.iteration == 0:
                checkpoints.save(self)  # before the first iteration: a run killed at any later moment is resumable
            with bar:
                while self.global_step < cfg.total_steps:
                    signum = pending()
                    if signum is not None:  # SIGINT/SIGTERM: checkpoint what is logged, then stop
                        checkpoints.save_if_unsaved(self)
                        raise Interrupted(signum, checkpoint_saved=run_dir is not None, global_step=self.global_step)

                    row, new_episodes = self.train_iteration()
                    self.elapsed_s = time.perf_counter() - start
                    row["time/elapsed_s"] = self.elapsed_s
                    self.episodes.extend(new_episodes)
                    recent.extend(e.ret for e in new_episodes)
                    evaluation = None
                    if cfg.eval_every and self.iteration % cfg.eval_every == 0:
                        evaluation = {"iteration": self.iteration, "global_step": self.global_step,
                                      **self.evaluate().row()}

                    logger.log_episodes(new_episodes)
                    logger.log(self.global_step, row)
                    if evaluation is not None:
                        logger.log_eval(self.global_step, evaluation)
                        row.update(evaluation)
                    logger.flush()
                    checkpoints.save_if_due(self)  # after the rows it covers are on disk

                    if on_iteration is not None:
                        on_iteration(row)
                    bar.update(self.global_step, float(np.mean(recent)) if recent else math.nan)
                    if self.skips.exhausted:
                        checkpoints.save_if_unsaved(self)  # final checkpoint, then stop
                        raise self.skips.error()
            checkpoints.save_if_unsaved(self)
        finally:
            self.close()
            logger.close()
        result = TrainResult(cfg, Path(run_dir) if run_dir is not None else None, self.global_step,
                             self.iteration, self.elapsed_s, list(self.episodes))
        if run_dir is not None:
            write_summary(run_dir, {
                "env_id": cfg.env_id, "algo": cfg.algo.value, "seed": cfg.seed,
                "global_step": result.global_step, "iterations": result.iterations,
                "episodes": len(result.episodes), "final_return_last10": result.final_return,
                "wall_time_s": result.wall_time_s, "steps_per_second": result.steps_per_second,
                "skipped_updates": self.skips.total,
                "config": cfg.to_dict(),  # "finished" means finished at this config (natpg.runfolder.finished_at)
            })
        return result

    def train_iteration(self) -> tuple[dict[str, float | int | str], list[Episode]]:
        """One iteration: collect T transitions, GAE, one actor update, the critic's epochs.

        A rollout with a non-finite reward or observation, or non-finite advantages, is not
        learned from (both updates skipped). Returns the log row (the update rule's extras
        under ``train/``) and the episodes that finished.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        ro = self.collector.collect(self.actor, cfg.steps_per_env)
        t1 = time.perf_counter()

        n = ro.n_transitions
        obs = torch.from_numpy(ro.obs.reshape(n, -1))
        actions = torch.from_numpy(ro.actions.reshape((n,) + ro.actions.shape[2:]))
        fault = rollout_fault(ro.rewards, ro.obs, ro.next_obs)
        adv = np.full(ro.rewards.shape, np.nan)
        if not fault:
            adv, advantages, returns = self._advantages(ro, obs)
            if not all_finite(advantages, returns):
                fault = "non-finite advantage"
            elif cfg.normalize_advantages:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        with torch.no_grad():
            # only a faulty rollout needs its non-finite observations replaced (a copy of the batch)
            safe_obs = torch.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0) if fault else obs
            old_dist = self.actor.distribution(safe_obs)
            mean_logprob = float(old_dist.log_prob(actions).mean())
        if fault:
            info, kl, critic = UpdateInfo(math.nan, 0.0, 1, fault), math.nan, CriticInfo(math.nan, 0, "")
        else:
            info, kl = self.update_actor(ActorBatch(obs, actions, advantages), old_dist)
            critic = self.critic_update.step(obs, returns)
            if critic.skipped:
                reason = "; ".join(r for r in (info.skip_reason, critic.skip_reason) if r)
                info = UpdateInfo(info.actor_loss, info.update_norm, info.skipped + critic.skipped, reason, info.extras)
        self.skips.record(info.skipped > 0, info.skip_reason)
        t2 = time.perf_counter()

        self.iteration += 1
        row: dict[str, float | int | str] = {
            "iteration": self.iteration,
            "global_step": self.global_step,
            "rollout/mean_logprob": mean_logprob,
            "rollout/mean_advantage": float(adv.mean()),
            "rollout/episodes": len(ro.episodes),
            "train/actor_loss": info.actor_loss,
            "train/critic_loss": critic.loss,
            "train/update_norm": info.update_norm,
            "train/kl": kl,
            "train/skipped_updates": info.skipped,
            "train/skip_reason": info.skip_reason,
            **{f"train/{key}": value for key, value in info.extras.items()},
            "time/rollout_s": t1 - t0,
            "time/update_s": t2 - t1,
        }
        return row, ro.episodes

    def _advantages(self, ro: Rollout, obs: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """GAE on the critic's values (of the rewards scaled by ``normalize_reward`` if set).

        Returns:
            the advantages as computed (for the log), and the advantages and returns as
            float32 tensors of the flattened batch.
        """
        n = ro.n_transitions
        next_obs = torch.from_numpy(ro.next_obs.reshape(n, -1))
        with torch.no_grad():
            values = self.critic(obs).double().numpy().reshape(ro.rewards.shape)
            next_values = self.critic(next_obs).double().numpy().reshape(ro.rewards.shape)
        rewards = ro.rewards
        if self.reward_scaler is not None:
            rewards = self.reward_scaler.scale(rewards, ro.terminated, ro.truncated)
        adv, ret = compute_gae(rewards, values, next_values, ro.terminated, ro.truncated,
                               self.cfg.gamma, self.cfg.gae_lambda)
        return (adv, torch.as_tensor(adv.reshape(n), dtype=torch.float32),
                torch.as_tensor(ret.reshape(n), dtype=torch.float32))

    def update_actor(self, batch: ActorBatch, old_dist: Distribution) -> tuple[UpdateInfo, float]:
        """One ``step`` of the update rule, undone if the policy it leaves is not finite.

        Returns:
            the rule's :class:`~natpg.updates.UpdateInfo` (a skip when the parameters were
            restored) and the mean ``KL(π_old ‖ π_new)`` over the batch.
        """
        before = snapshot(self.actor)
        info = self.update.step(batch)
        with torch.no_grad():
            # σ underflowing to 0 after a huge but finite step gives non-finite log-probabilities too
            new_dist = self.actor.distribution(batch.obs)
            if not all_finite(new_dist.log_prob(batch.actions), *self.actor.parameters()):
                restore(self.actor, before)
                info = UpdateInfo(info.actor_loss, 0.0, 1, "update made the policy non-finite; parameters restored",
                                  info.extras)
                new_dist = self.actor.distribution(batch.obs)
            kl = float(kl_divergence(old_dist, new_dist).mean())
        return info, kl

    def evaluate(self) -> EvalResult:
        """Evaluate the current actor on ``cfg.eval_episodes`` separately seeded episodes (RNG-neutral)."""
        cfg = self.cfg
        return evaluate(self.actor, cfg.env_id, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET,
                        max_episode_steps=cfg.max_episode_steps, normalizer=self.normalizer)

    def close(self) -> None:
        """Close the environments (also done at the end of :meth:`run`)."""
        self.envs.close()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Everything a resume needs (see the module docstring for what is bit-identical)."""
        c = self.collector
        return {
            "config": self.cfg.to_dict(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            "elapsed_s": self.elapsed_s,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_opt": self.critic_update.state_dict(),
            "update": self.update.state_dict(),
            "obs_rms": self.normalizer.state_dict() if self.normalizer is not None else None,
            "reward_rms": self.reward_scaler.state_dict() if self.reward_scaler is not None else None,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
            "collector": {"obs": c.obs.copy(), "ep_return": c.ep_return.copy(), "ep_length": c.ep_length.copy()},
            "envs": pickle_envs(self.envs, self.cfg),
            "skips": {"consecutive": self.skips.consecutive, "total": self.skips.total,
                      "last_reason": self.skips.last_reason},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`: networks, optimizers, statistics, RNGs, counters, envs if possible."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_update.load_state_dict(state["critic_opt"])
        self.update.load_state_dict(state["update"])
        c = self.collector
        self.iteration = int(state["iteration"])
        self.elapsed_s = float(state["elapsed_s"])
        self.skips = SkipCounter(self.cfg.max_consecutive_skips, **state.get("skips", {}))
        if self.reward_scaler is not None:
            self.reward_scaler.load_state_dict(state["reward_rms"])
        if state["envs"] is not None:
            self.envs.close()
            self.envs = unpickle_envs(state["envs"])
            c.envs = self.envs
            self.normalizer = getattr(self.envs, "normalizer", None)
            c.obs = state["collector"]["obs"].copy()
            c.ep_return = state["collector"]["ep_return"].copy()
            c.ep_length = state["collector"]["ep_length"].copy()
            self.env_state_restored = True
        else:
            if self.normalizer is not None:
                self.normalizer.load_state_dict(state["obs_rms"])
                self.normalizer.frozen = True  # the reset below must not move the saved statistics
            obs, _ = self.envs.reset(seed=self.cfg.seed + RESUME_SEED_STRIDE * self.iteration)
            if self.normalizer is not None:
                self.normalizer.frozen = False
            c.obs = np.asarray(obs, dtype=np.float32).reshape(c.n_envs, -1)
            c.ep_return = np.zeros(c.n_envs, dtype=np.float64)
            c.ep_length = np.zeros(c.n_envs, dtype=np.int64)
            if self.reward_scaler is not None:
                self.reward_scaler.reset_returns()
            self.env_state_restored = False
        c.global_step = int(state["global_step"])
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])


def train(cfg: TrainConfig, run_dir: str | Path | None = None, progress: bool = False,
          overwrite: bool = False) -> TrainResult:
    """Train one run of ``cfg``; the public entry point used by the CLI and the experiments layer.

    Args:
        cfg: a validated config (see :func:`natpg.presets.make_config`).
        run_dir: folder for config, logs and summary; ``None`` keeps everything in memory.
        progress: show a live progress bar.
        overwrite: replace ``run_dir`` if it already holds files.
    """
    trainer = Trainer(cfg)  # validates env and spaces before anything on disk is touched
    if run_dir is None:
        return trainer.run(None, progress=progress)
    try:
        lock = prepare_run_dir(Path(run_dir), overwrite)
    except BaseException:
        trainer.close()
        raise
    with lock:
        return trainer.run(Path(run_dir), progress=progress)


def resume(run_dir: str | Path, total_steps: int | None = None, progress: bool = False) -> TrainResult:
    """Continue the run in ``run_dir`` from its latest checkpoint until its budget is spent.

    The run folder is locked for the whole resume (:class:`~natpg.runfolder.RunLock`). The
    run's CSVs are first cut back to the rows logged up to the checkpoint (a run killed after
    it wrote rows but before its next checkpoint logged rows that the resumed run will log
    again), then appended to. A ``summary.json`` is removed before training goes on, so a run
    extended with a new ``total_steps`` and killed midway does not look finished.

    Args:
        run_dir: a folder written by :func:`train` (or ``natpg train``).
        total_steps: a new training budget (e.g. to extend a finished run); default: the run's own.
        progress: show a live progress bar.

    Raises:
        ConfigError: ``run_dir`` has no readable checkpoint, has logs but no checkpoint, holds a
            damaged file, is locked by another process, stopped on diverged training, or
            ``total_steps`` is invalid or below the steps already trained.
    """
    run_dir = Path(run_dir)
    if not checkpoint_path(run_dir).is_file() and read_config(run_dir) is None:
        load_checkpoint(run_dir)  # not a run folder: raises the reason, before a lock file is created in it
    with RunLock.acquire(run_dir):
        return resume_locked(run_dir, total_steps, progress)


def resume_locked(run_dir: Path, total_steps: int | None = None, progress: bool = False) -> TrainResult:
    """:func:`resume` for a caller that already holds the run folder's lock (the grid's workers)."""
    run_dir = Path(run_dir)
    saved_config = read_config(run_dir)  # a damaged config.json is refused here, before anything is written
    if not checkpoint_path(run_dir).is_file() and saved_config is not None:
        logged = [name for name in (ITERATIONS_FILE, EPISODES_FILE, EVAL_FILE, SUMMARY_FILE)
                  if _has_rows(run_dir / name)]
        if logged:
            raise ConfigError(f"run folder {str(run_dir)!r} has logs ({', '.join(logged)}) but no checkpoint "
                              f"({CHECKPOINT_DIR}/{CHECKPOINT_FILE} is missing), so it cannot be resumed; "
                              f"start a new run with another --out")
        return _restart(run_dir, saved_config, total_steps, progress)
    state = Checkpointer(run_dir).load()
    cfg = TrainConfig.from_dict(state["config"])
    if total_steps is not None:
        cfg = cfg.override(total_steps=total_steps)
        if cfg.total_steps < int(state["global_step"]):
            raise ConfigError(f"--steps {cfg.total_steps} is below the {int(state['global_step'])} steps this run "
                              f"has already trained; give --steps >= {int(state['global_step'])}")
    skips = SkipCounter(cfg.max_consecutive_skips, **state.get("skips", {}))
    if skips.exhausted and int(state["global_step"]) < cfg.total_steps:
        raise ConfigError(f"run {str(run_dir)!r} stopped because training diverged ({skips.consecutive} consecutive "
                          f"updates skipped; last reason: {skips.last_reason}); resuming would stop again at once, "
                          f"so start a new run with other settings")
    trainer = Trainer(cfg)
    try:
        try:
            trainer.load_state_dict(state)
        except (KeyError, RuntimeError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as exc:
            raise ConfigError(f"checkpoint {str(checkpoint_path(run_dir))!r} is damaged: it does not fit its config "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        remove_temp_files(run_dir)
        truncate_logs(run_dir, trainer.iteration, trainer.global_step)
        trainer.episodes = read_episodes(run_dir)
        # "Finished" means finished at the config asked for: the old summary goes before anything else
        # changes, then the checkpoint records the new budget (so a kill from here on leaves an unfinished run).
        (run_dir / SUMMARY_FILE).unlink(missing_ok=True)
        if canonical(cfg.to_dict()) != canonical(state["config"]):
            save_checkpoint(run_dir, {**{k: v for k, v in state.items() if k != "format"}, "config": cfg.to_dict()})
    except BaseException:
        trainer.close()
        raise
    return trainer.run(run_dir, progress=progress, resumed=True)


def _has_rows(path: Path) -> bool:
    """Whether a log file holds more than a header line (a summary counts when present)."""
    if not path.is_file():
        return False
    if path.suffix == ".json":
        return True
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip()) > 1


def _restart(run_dir: Path, saved: dict, total_steps: int | None, progress: bool) -> TrainResult:
    """Start a run over in its own folder.

    The run was killed before its first checkpoint was on disk (between creating the folder and
    saving the iteration-0 checkpoint), so it has logged nothing.
    """
    cfg = TrainConfig.from_dict(saved)
    if total_steps is not None:
        cfg = cfg.override(total_steps=total_steps)
    trainer = Trainer(cfg)
    remove_temp_files(run_dir)
    for name in (ITERATIONS_FILE, EVAL_FILE, EPISODES_FILE):
        (run_dir / name).unlink(missing_ok=True)
    return trainer.run(run_dir, progress=progress)


class _ProgressBar:
    """A rich progress bar with steps/s and the recent mean return; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[sps]:>7.0f} steps/s"), TextColumn("return {task.fields[ret]:>8.2f}"),
                TimeElapsedColumn(), TimeRemainingColumn(),
            )
            self._task = self._progress.add_task("train", total=total, sps=0.0, ret=float("nan"))
            self._t0 = time.perf_counter()

    def __enter__(self) -> "_ProgressBar":
        if self.enabled:
            self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._progress.__exit__(*exc)

    def update(self, step: int, recent_return: float) -> None:
        if self.enabled:
            sps = step / max(time.perf_counter() - self._t0, 1e-9)
            self._progress.update(self._task, completed=step, sps=sps, ret=recent_return)
