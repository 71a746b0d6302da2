"""The actor-critic loop: rollout → GAE → actor update → critic update → logs.

The trainer builds the actor update from the config through
:func:`natpg.updates.make_update` and only ever calls its ``step``: it does not
know which rule it runs.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.distributions import kl_divergence

from natpg.advantages import compute_gae
from natpg.config import ConfigError, TrainConfig
from natpg.envs import make_vector_env, probe_spaces
from natpg.guards import SkipCounter, TrainingDiverged, all_finite, restore, rollout_fault, snapshot
from natpg.policies import Actor, Critic, flat_obs_dim
from natpg.rollout import Episode, RolloutCollector
from natpg.runlog import RunLog
from natpg.updates import ActorBatch, UpdateInfo, make_update


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
        return [e.ret for e in self.episodes]

    @property
    def final_return(self) -> float:
        """Mean return of the last 10 finished episodes (NaN if none finished)."""
        tail = self.returns[-10:]
        return float(np.mean(tail)) if tail else float("nan")

    @property
    def steps_per_second(self) -> float:
        return self.global_step / self.wall_time_s if self.wall_time_s > 0 else float("nan")


def prepare_run_dir(run_dir: Path, overwrite: bool) -> Path:
    """Refuse to write into a folder that already holds files, unless ``overwrite``."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {str(run_dir)!r} exists and is not a folder")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise ConfigError(f"run folder {str(run_dir)!r} already holds files; choose another --out "
                              f"or pass --overwrite to replace it")
        shutil.rmtree(run_dir)
    return run_dir


class Trainer:
    """One actor-critic training run.

    Building a Trainer validates everything that can be checked before training
    (config, env id, action space) and then creates the networks, the update rule
    and the environments. Call :meth:`run` to train.
    """

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        spaces = probe_spaces(cfg.env_id)  # raises ConfigError before any vector env is built
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        obs_dim = flat_obs_dim(spaces.observation_space)
        self.actor = Actor(obs_dim, spaces.action_space, cfg.hidden_sizes, cfg.log_std_init)
        self.critic = Critic(obs_dim, cfg.hidden_sizes)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.update = make_update(cfg, self.actor)
        self.envs = make_vector_env(cfg)
        self.collector = RolloutCollector(self.envs, cfg.seed)
        self.iteration = 0
        self.skips = SkipCounter(cfg.max_consecutive_skips)

    def update_critic(self, obs: torch.Tensor, returns: torch.Tensor) -> float:
        """``cfg.critic_epochs`` full-batch Adam steps on ``mean (R − V)²``; a step whose loss or
        gradient is not finite is skipped. Returns the last loss."""
        loss_value = math.nan
        for _ in range(self.cfg.critic_epochs):
            loss = (returns - self.critic(obs)).pow(2).mean()
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            loss_value = float(loss.detach())
            grads = [p.grad for p in self.critic.parameters() if p.grad is not None]
            if math.isfinite(loss_value) and all_finite(*grads):
                self.critic_opt.step()
        return loss_value

    def close(self) -> None:
        """Close the environments (also done at the end of :meth:`run`)."""
        self.envs.close()

    @property
    def global_step(self) -> int:
        return self.collector.global_step

    def train_iteration(self) -> tuple[dict[str, float | int | str], list[Episode]]:
        """Collect T transitions and update actor and critic once. Returns the log row and finished episodes."""
        cfg = self.cfg
        t0 = time.perf_counter()
        ro = self.collector.collect(self.actor, cfg.steps_per_env)
        t1 = time.perf_counter()

        n = ro.n_transitions
        obs = torch.from_numpy(ro.obs.reshape(n, -1))
        next_obs = torch.from_numpy(ro.next_obs.reshape(n, -1))
        actions = torch.from_numpy(ro.actions.reshape((n,) + ro.actions.shape[2:]))
        fault = rollout_fault(ro.rewards, ro.obs, ro.next_obs)
        adv = np.full(ro.rewards.shape, np.nan)
        if not fault:
            with torch.no_grad():
                values = self.critic(obs).double().numpy().reshape(ro.rewards.shape)
                next_values = self.critic(next_obs).double().numpy().reshape(ro.rewards.shape)
            adv, ret = compute_gae(ro.rewards, values, next_values, ro.terminated, ro.truncated,
                                   cfg.gamma, cfg.gae_lambda)
            advantages = torch.as_tensor(adv.reshape(n), dtype=torch.float32)
            returns = torch.as_tensor(ret.reshape(n), dtype=torch.float32)
            if not all_finite(advantages, returns):
                fault = "non-finite advantage"
            elif cfg.normalize_advantages:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        with torch.no_grad():
            old_dist = self.actor.distribution(torch.nan_to_num(obs, nan=0.0, posinf=0.0, neginf=0.0))
            mean_logprob = float(old_dist.log_prob(actions).mean())
        kl = math.nan
        critic_loss = math.nan
        if fault:
            info = UpdateInfo(actor_loss=math.nan, update_norm=0.0, skipped=1, skip_reason=fault)
        else:
            before = snapshot(self.actor)
            info = self.update.step(ActorBatch(obs, actions, advantages))
            with torch.no_grad():
                new_dist = self.actor.distribution(obs)
                new_logp = new_dist.log_prob(actions)
                if not all_finite(new_logp) or not all_finite(*self.actor.parameters()):
                    restore(self.actor, before)
                    info = UpdateInfo(info.actor_loss, 0.0, 1,
                                      "update made the policy non-finite; parameters restored")
                    new_dist = self.actor.distribution(obs)
                kl = float(kl_divergence(old_dist, new_dist).mean())
            critic_loss = self.update_critic(obs, returns)
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
            "train/critic_loss": critic_loss,
            "train/update_norm": info.update_norm,
            "train/kl": kl,
            "train/skipped_updates": info.skipped,
            "train/skip_reason": info.skip_reason,
            "time/rollout_s": t1 - t0,
            "time/update_s": t2 - t1,
        }
        return row, ro.episodes

    def run(self, run_dir: Path | None = None, progress: bool = False,
            on_iteration: Callable[[dict], None] | None = None) -> TrainResult:
        """Train for ``cfg.total_steps`` steps; log into ``run_dir`` if given."""
        cfg = self.cfg
        log = RunLog(run_dir) if run_dir is not None else None
        if log is not None:
            log.write_config(cfg.to_dict())
        episodes: list[Episode] = []
        recent: deque[float] = deque(maxlen=20)
        start = time.perf_counter()
        bar = _ProgressBar(cfg.total_steps, enabled=progress)
        try:
            with bar:
                while self.global_step < cfg.total_steps:
                    row, new_eps = self.train_iteration()
                    row["time/elapsed_s"] = time.perf_counter() - start
                    episodes.extend(new_eps)
                    recent.extend(e.ret for e in new_eps)
                    if log is not None:
                        log.episodes.write_many(
                            {"global_step": e.global_step, "return": e.ret, "length": e.length,
                             "terminated": e.terminated} for e in new_eps)
                        log.iterations.write(row)
                    if on_iteration is not None:
                        on_iteration(row)
                    bar.update(self.global_step, float(np.mean(recent)) if recent else math.nan)
                    if self.skips.exhausted:
                        raise self.skips.error()
        finally:
            self.close()
            if log is not None:
                log.close()
        wall = time.perf_counter() - start
        result = TrainResult(cfg, Path(run_dir) if run_dir is not None else None, self.global_step,
                             self.iteration, wall, episodes)
        if log is not None:
            log.write_summary({
                "env_id": cfg.env_id, "algo": cfg.algo.value, "seed": cfg.seed,
                "global_step": result.global_step, "iterations": result.iterations,
                "episodes": len(episodes), "final_return_last10": result.final_return,
                "wall_time_s": wall, "steps_per_second": result.steps_per_second,
                "skipped_updates": self.skips.total,
            })
        return result


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
    if run_dir is not None:
        try:
            run_dir = prepare_run_dir(Path(run_dir), overwrite)
        except BaseException:
            trainer.close()
            raise
    return trainer.run(run_dir, progress=progress)


class _ProgressBar:
    """A rich progress bar with steps/s and the recent mean return; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

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
