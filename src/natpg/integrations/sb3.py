r"""SMAC as a Stable-Baselines3 algorithm (optional extra ``natpg[sb3]``).

:class:`SMAC` subclasses SB3's ``OnPolicyAlgorithm``: rollout collection (with
SB3's GAE and time-limit bootstrapping), callbacks, ``VecNormalize``, the logger,
``save``/``load``, ``predict`` and ``evaluate_policy`` are SB3's own. Only the
update is replaced, once per rollout, on the whole batch:

* actor (the policy network, action head and ``log_std``):
  ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` with :class:`natpg.optim.SMNG`, O(d);
* critic (the value network and value head): one Adam step (lr = ``learning_rate``,
  which follows SB3's schedules) on ``mean (R_t − V(s_t))²``.

Both steps run under natpg's own guards (:mod:`natpg.guards`): no non-finite value
ever reaches the actor, the critic or the critic's Adam state, skipped updates are
counted and logged, and ``max_consecutive_skips`` skipped updates in a row stop
training with :class:`natpg.guards.TrainingDiverged`. (SB3's own ``VecNormalize``
statistics are SB3's: they are not guarded.)

Example::

    from natpg.integrations.sb3 import SMAC
    model = SMAC("MlpPolicy", "CartPole-v1", actor_lr=5e-3, damping=0.1, seed=0).learn(50_000)
    model.save("smac_cartpole")
    model = SMAC.load("smac_cartpole")

A features extractor with parameters that actor and critic share is moved by the
actor step only; pass ``policy_kwargs=dict(share_features_extractor=False)`` to
give the critic its own.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

try:
    from gymnasium import spaces
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
    from stable_baselines3.common.utils import explained_variance
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("natpg.integrations.sb3 needs Stable-Baselines3: pip install 'natpg[sb3]'") from exc

from natpg.config import TrainConfig
from natpg.guards import SkipCounter, all_finite, guarded_step, restore, rollout_fault, snapshot
from natpg.optim import SMNG


def actor_parameters(policy: ActorCriticPolicy) -> list[nn.Parameter]:
    """θ: the policy branch of an SB3 actor-critic policy, selected by module (never by name)."""
    modules: list[nn.Module] = [policy.mlp_extractor.policy_net, policy.action_net]
    modules.insert(0, policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor)
    params = [p for m in modules for p in m.parameters()]
    if isinstance(getattr(policy, "log_std", None), nn.Parameter):
        params.append(policy.log_std)
    return params


def critic_parameters(policy: ActorCriticPolicy) -> list[nn.Parameter]:
    """φ: the value branch (its own features extractor only when not shared with the actor)."""
    modules: list[nn.Module] = [policy.mlp_extractor.value_net, policy.value_net]
    if not policy.share_features_extractor:
        modules.insert(0, policy.vf_features_extractor)
    return [p for m in modules for p in m.parameters()]


class SMAC(OnPolicyAlgorithm):
    """Sherman–Morrison Actor-Critic with SB3's machinery around it.

    Args:
        policy: ``"MlpPolicy"`` or an ``ActorCriticPolicy`` subclass (separate 64-64 tanh
            actor and critic by default, as in the paper).
        env: a Gymnasium env, an env id, or a ``VecEnv`` (e.g. wrapped in ``VecNormalize``).
        actor_lr: η, the actor's step size.
        damping: λ > 0 of the rank-1 empirical Fisher ``λI + ℓ̄ℓ̄ᵀ``.
        learning_rate: α, the critic's Adam learning rate (a float or an SB3 schedule).
        n_steps: steps per env per rollout (T = ``n_steps · n_envs``; the paper uses T = 1000).
        gamma: discount γ.
        gae_lambda: GAE λ.
        normalize_advantage: standardise advantages per rollout (off in the paper).
        max_consecutive_skips: stop (raise :class:`natpg.guards.TrainingDiverged`) after this many
            updates in a row were skipped because of non-finite values (natpg's default).
        Remaining arguments are SB3's (``policy_kwargs``, ``tensorboard_log``, ``verbose``,
        ``seed``, ``device``, ``stats_window_size``, ``_init_setup_model``).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": ActorCriticPolicy}

    def __init__(self, policy: str | type[ActorCriticPolicy], env: Any, actor_lr: float = 5e-3,
                 damping: float = 0.1, learning_rate: float | Any = 1e-3, n_steps: int = 1000,
                 gamma: float = 0.99, gae_lambda: float = 0.9, normalize_advantage: bool = False,
                 stats_window_size: int = 100, tensorboard_log: str | None = None,
                 policy_kwargs: dict[str, Any] | None = None, verbose: int = 0, seed: int | None = None,
                 device: torch.device | str = "cpu", _init_setup_model: bool = True,
                 max_consecutive_skips: int = TrainConfig.max_consecutive_skips) -> None:
        for name, value in (("actor_lr", actor_lr), ("damping", damping)):
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a finite number > 0")
        if isinstance(max_consecutive_skips, bool) or not isinstance(max_consecutive_skips, int) \
                or max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips={max_consecutive_skips!r} must be an integer >= 1")
        super().__init__(policy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma,
                         gae_lambda=gae_lambda, ent_coef=0.0, vf_coef=1.0, max_grad_norm=float("inf"),
                         use_sde=False, sde_sample_freq=-1, stats_window_size=stats_window_size,
                         tensorboard_log=tensorboard_log, policy_kwargs=policy_kwargs, verbose=verbose,
                         device=device, seed=seed, _init_setup_model=False,
                         supported_action_spaces=(spaces.Box, spaces.Discrete))
        self.actor_lr = float(actor_lr)
        self.damping = float(damping)
        self.normalize_advantage = normalize_advantage
        self.skips = SkipCounter(max_consecutive_skips)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        super()._setup_model()
        # SB3 saves and loads `policy.optimizer`: make it the critic's Adam.
        self.policy.optimizer = torch.optim.Adam(critic_parameters(self.policy), lr=self.lr_schedule(1))
        self.actor_optimizer = SMNG(actor_parameters(self.policy), lr=self.actor_lr, damping=self.damping)

    def _excluded_save_params(self) -> list[str]:
        # The actor optimizer is stateless and holds references to the policy's parameters.
        return [*super()._excluded_save_params(), "actor_optimizer"]

    def train(self) -> None:
        """One critic Adam step and one SMAC actor step on the whole rollout, under natpg's guards.

        Guarantees (as in natpg's own trainer, :mod:`natpg.guards`): the actor, the critic
        and the critic's Adam state never hold a non-finite value. A rollout with a
        non-finite reward, observation, advantage or return is not learned from (both
        steps skipped); a critic step that would write a non-finite value is skipped or
        undone; an actor step that leaves non-finite parameters or log-probabilities is
        undone. Skips are logged (``train/skipped_updates``, ``train/skip_reason``,
        ``train/skipped_total``); after ``max_consecutive_skips`` skipped updates in a row
        :class:`natpg.guards.TrainingDiverged` is raised.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        for name in ("actor_lr", "damping"):  # allow changing them between learn() calls
            self.actor_optimizer.param_groups[0]["lr" if name == "actor_lr" else name] = getattr(self, name)
        rb = self.rollout_buffer
        observations = rb.observations.values() if isinstance(rb.observations, dict) else [rb.observations]
        # SB3 keeps no next observations: a non-finite one reaches the rewards through its bootstrap
        fault = next((f for obs in observations if (f := rollout_fault(rb.rewards, obs, obs))), "")
        if not fault and not (np.isfinite(rb.advantages).all() and np.isfinite(rb.returns).all()):
            fault = "non-finite advantage"
        skipped, reasons = 0, [fault] if fault else []
        value_loss = policy_loss = float("nan")
        update_norm = 0.0
        for data in ([] if fault else rb.get(batch_size=None)):
            actions = data.actions
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.long().flatten()
            values, log_prob, _ = self.policy.evaluate_actions(data.observations, actions)
            advantages = data.advantages
            if self.normalize_advantage:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            loss = (data.returns - values.flatten()).pow(2).mean()
            value_loss = float(loss.detach())
            self.policy.optimizer.zero_grad()
            loss.backward(retain_graph=True)  # the actor step below reuses the shared part of the graph
            critic_reason = guarded_step(self.policy.optimizer, value_loss)
            if critic_reason:
                skipped, reasons = skipped + 1, [*reasons, f"critic: {critic_reason}"]
            theta = actor_parameters(self.policy)
            before = snapshot(theta)
            info = self.actor_optimizer.step(log_prob, advantages)
            policy_loss, update_norm = info.actor_loss, info.update_norm
            skipped += info.skipped
            reasons += [info.skip_reason] if info.skip_reason else []
            if not self._policy_finite(data.observations, actions, theta):
                restore(theta, before)
                skipped, update_norm = skipped + 1, 0.0
                reasons.append("update made the policy non-finite; parameters restored")
        skipped += int(bool(fault))
        reason = "; ".join(reasons)
        self.skips.record(skipped > 0, reason)

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance",
                           explained_variance(rb.values.flatten(), rb.returns.flatten()))
        self.logger.record("train/policy_loss", policy_loss)
        self.logger.record("train/value_loss", value_loss)
        self.logger.record("train/update_norm", update_norm)
        self.logger.record("train/skipped_updates", skipped)
        self.logger.record("train/skip_reason", reason, exclude="tensorboard")
        self.logger.record("train/skipped_total", self.skips.total)
        if isinstance(getattr(self.policy, "log_std", None), nn.Parameter):
            self.logger.record("train/std", float(self.policy.log_std.detach().exp().mean()))
        if self.skips.exhausted:
            raise self.skips.error()

    def _policy_finite(self, observations: Any, actions: torch.Tensor, theta: list[nn.Parameter]) -> bool:
        """Whether θ and the log-probabilities of the rollout's actions under the policy are all finite."""
        with torch.no_grad():
            try:
                _, log_prob, _ = self.policy.evaluate_actions(observations, actions)
            except ValueError:  # torch's argument validation: e.g. a Normal scale that underflowed to 0
                return False
        return all_finite(log_prob, *theta)

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1, tb_log_name: str = "SMAC",
              reset_num_timesteps: bool = True, progress_bar: bool = False) -> "SMAC":
        """SB3's ``learn``; returns the model."""
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)


__all__ = ["SMAC", "actor_parameters", "critic_parameters"]
