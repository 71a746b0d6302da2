r"""SMAC (and AC-CG) as Stable-Baselines3 algorithms (optional extra ``natpg[sb3]``).

:class:`SMAC` subclasses SB3's ``OnPolicyAlgorithm``: rollout collection (with
SB3's GAE and time-limit bootstrapping), callbacks, ``VecNormalize``, the logger,
``save``/``load``, ``predict``, ``evaluate_policy`` and the progress bar are SB3's own.
Only the update is replaced, once per rollout of ``n_steps`` samples (summed over the
envs), by natpg's own parts:

* actor (the policy network, action head and ``log_std``): one step
  ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` on the whole rollout, O(d), by the rule that natpg's
  trainer runs (:class:`natpg.updates.ShermanMorrisonUpdate`), ``g`` and ``ℓ̄`` from one
  batched backward pass of the rollout's log-probabilities;
* critic (the value network and value head): ``critic_epochs`` passes over the rollout in
  random mini-batches of ``critic_batch_size``, one step of the policy's optimizer (SB3's
  default: Adam) each on ``mean (R_t − V(s_t))²``, by :class:`natpg.critic.CriticUpdate`.

The defaults are natpg's ``paper-inferred`` reading (γ = 0.99, GAE λ = 0.9, λ = 0.1,
α = 1e-3, T = 1000 samples per update, the critic in mini-batches of 100 for 10 epochs),
except the actor's step size: one η for every task at SB3-sized budgets (see ``actor_lr``).

Both steps run under natpg's own guards (:mod:`natpg.guards`): no non-finite value
ever reaches the actor, the critic or the critic's optimizer state, skipped updates are
counted and logged, and ``max_consecutive_skips`` skipped updates in a row stop
training with :class:`natpg.guards.TrainingDiverged`. (SB3's own ``VecNormalize``
statistics are SB3's: they are not guarded.)

Example::

    from natpg.integrations.sb3 import SMAC
    model = SMAC("MlpPolicy", "CartPole-v1", seed=0).learn(50_000)
    model.save("smac_cartpole")
    model = SMAC.load("smac_cartpole")

A features extractor with parameters that actor and critic share is moved by the
actor step only; pass ``policy_kwargs=dict(share_features_extractor=False)`` to
give the critic its own.

:class:`ACCG` is the same class with natpg's ``ac-cg`` actor step instead: the natural
direction by conjugate gradient on the policy's true Fisher (:class:`natpg.updates.NaturalCGUpdate`),
scaled by default to a target KL (TRPO's step without its line search). It costs about 10
Fisher-vector products per update where SMAC's costs one pass, and it learns Pendulum-v1 in
100 k steps, which SMAC's rank-1 Fisher does not (benchmarks/results/sb3_vs_a2c.md).
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn
from torch.distributions import Distribution, Independent

try:
    from gymnasium import spaces
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
    from stable_baselines3.common.utils import FloatSchedule, explained_variance
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("natpg.integrations.sb3 needs Stable-Baselines3: pip install 'natpg[sb3]'") from exc

from natpg.config import TrainConfig
from natpg.critic import CriticUpdate
from natpg.guards import SkipCounter, all_finite, restore, rollout_fault, snapshot
from natpg.scores import AutogradScores, PolicyOutputs
from natpg.updates import NaturalCGUpdate, ShermanMorrisonUpdate
from natpg.updates.base import ActorBatch, ScoreRule
from natpg.updates.step_size import StepRule, StepSize

#: What an SB3 or RL Zoo user may pass that :class:`SMAC` and :class:`ACCG` do not take, and what to pass instead.
REFUSED: dict[str, str] = {
    "learning_rate": "pass critic_lr (the critic's optimizer) and actor_lr (η, the natural-gradient step)",
    "vf_coef": "the critic has its own optimizer and step size (critic_lr); a loss weight would change nothing",
    "use_sde": "the actor samples from the policy's own distribution; only use_sde=False is allowed",
    "sde_sample_freq": "gSDE is not supported (use_sde=False)",
    "use_rms_prop": "choose the critic's optimizer with policy_kwargs=dict(optimizer_class=..., optimizer_kwargs=...)",
    "rms_prop_eps": "choose the critic's optimizer with policy_kwargs=dict(optimizer_class=..., optimizer_kwargs=...)",
    "batch_size": "the actor takes one step on the whole rollout; the critic's mini-batches are critic_batch_size",
    "n_epochs": "the actor takes one step per rollout; the critic's passes are critic_epochs",
    "clip_range": "there is no clipped objective; actor_lr or target_kl set the step",
    "clip_range_vf": "the value function is not clipped",
}


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


def action_distribution(policy: ActorCriticPolicy, obs: Any) -> Distribution:
    """The policy's action distribution at ``obs`` as a torch ``Distribution`` over whole actions (with graph).

    A diagonal Gaussian becomes ``Independent(Normal, 1)``, so that ``log_prob`` and ``entropy`` sum over
    the action's dimensions as SB3's own do.
    """
    dist = policy.get_distribution(obs)
    if isinstance(dist, DiagGaussianDistribution):
        return Independent(dist.distribution, 1)
    if not isinstance(dist.distribution, Distribution):  # MultiCategorical: a list (its action spaces are refused)
        raise ValueError(f"SMAC and ACCG support Box and Discrete action spaces, not {type(dist).__name__}")
    return dist.distribution


class _SB3Critic:
    """The value branch of an SB3 policy as :class:`natpg.critic.CriticUpdate` sees it (a ``ValueFunction``)."""

    def __init__(self, policy: ActorCriticPolicy, max_grad_norm: float | None) -> None:
        self.policy = policy
        self.params = critic_parameters(policy)
        self.max_grad_norm = max_grad_norm

    def parameters(self) -> list[nn.Parameter]:
        return self.params

    def value_loss_backward(self, obs: Any, returns: torch.Tensor) -> torch.Tensor:
        for p in self.params:
            p.grad = None
        loss = (returns - self.policy.predict_values(obs).flatten()).pow(2).mean()
        loss.backward()
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        return loss.detach()


class _Rows:
    """Row indexing for a dict of observation tensors (``MultiInputPolicy``), as a tensor's rows index."""

    def __init__(self, obs: dict[str, torch.Tensor]) -> None:
        self.obs = obs

    def __getitem__(self, idx: Any) -> dict[str, torch.Tensor]:
        return {k: v[idx] for k, v in self.obs.items()}


class _ClippedScores(AutogradScores):
    """The autograd score kernel with the policy gradient ``g`` scaled to norm ≤ ``max_grad_norm``.

    Row 0 of :meth:`rows` (SMAC) and :meth:`gradient` (AC-CG) are ``g``. Both solves are linear in
    ``g``, so under the fixed step this scales the whole step by ``min(1, c/‖g‖)``.
    """

    max_grad_norm: float | None = None

    def _clip(self, g: torch.Tensor) -> None:
        if self.max_grad_norm is not None:
            norm = float(torch.linalg.vector_norm(g))
            if math.isfinite(norm) and norm > self.max_grad_norm:
                g.mul_(self.max_grad_norm / norm)

    def rows(self, batch: Any, weights: torch.Tensor, ent_coef: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        rows, logp = super().rows(batch, weights, ent_coef)
        self._clip(rows[0])
        return rows, logp

    def gradient(self, batch: Any, ent_coef: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        g, logp = super().gradient(batch, ent_coef)
        self._clip(g)
        return g, logp


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be a finite number > 0" + (" or None" if allow_none else ""))


def _count(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1" + (" or None" if allow_none else ""))


class NaturalActorCritic(OnPolicyAlgorithm):
    """What :class:`SMAC` and :class:`ACCG` share: SB3's rollouts around natpg's actor step and critic.

    A subclass builds the actor's update rule (:meth:`_make_actor_update`); everything else —
    arguments, validation, the critic, the guards, logging, ``save``/``load`` — is this class's.

    Args:
        policy: ``"MlpPolicy"`` or an ``ActorCriticPolicy`` subclass (separate 64-64 tanh
            actor and critic by default, as in the paper).
        env: a Gymnasium env, an env id, or a ``VecEnv`` (e.g. wrapped in ``VecNormalize``).
        actor_lr: η, the actor's fixed step size (read when ``target_kl`` is ``None``): a number, or
            a schedule (a callable of SB3's ``progress_remaining``, 1 → 0). Logged as ``train/actor_lr``.
        target_kl: ``None``: the fixed step η = ``actor_lr``. A number δ > 0: natpg's trust-region
            step instead — each natural direction ``x`` is scaled to the KL target,
            η = √(2δ / xᵀFx) with ``F`` the policy's Fisher (one extra pass; ``actor_lr`` is then
            unused), and ``train/actor_lr`` logs the η taken. Not PPO's early-stopping ``target_kl``:
            here δ sets every step.
        critic_lr: α, the learning rate of the critic's optimizer (a number or an SB3 schedule);
            SB3 logs it as ``train/learning_rate``. It does not touch the actor.
        n_steps: T, the samples per rollout **summed over the envs** (one actor update each):
            every env runs ``n_steps / n_envs`` steps, so ``n_steps`` must be a multiple of
            ``n_envs``. (SB3's A2C and PPO count per env; ``model.n_steps`` keeps SB3's
            per-env count, which its rollout buffer reads, and ``model.rollout_steps`` this T.)
        gamma: discount γ.
        gae_lambda: GAE λ.
        ent_coef: entropy bonus ``c ≥ 0``: the actor ascends ``(1/T) Σ A_t log π_t + c·(1/T) Σ H_t``.
        max_grad_norm: if set, each gradient is scaled to at most this norm before its step:
            the critic's, and the actor's ``g`` before the solve (so the actor's step shrinks by
            the same factor). ``None`` (the default, as in the paper): no clipping.
        normalize_advantage: standardise advantages per rollout (off in the paper).
        critic_epochs: passes of the critic over each rollout.
        critic_batch_size: samples per critic mini-batch (a fresh random permutation each pass; the
            last mini-batch of a pass is smaller when it does not divide ``n_steps``); ``None``, or a
            size of at least ``n_steps``: one full-batch step per pass.
        max_consecutive_skips: stop (raise :class:`natpg.guards.TrainingDiverged`) after this many
            updates in a row were skipped because of non-finite values (natpg's default).
        rollout_buffer_class, rollout_buffer_kwargs, stats_window_size, tensorboard_log,
            monitor_wrapper, policy_kwargs, verbose, seed, device, _init_setup_model: SB3's.
            The critic's optimizer is the policy's ``optimizer_class`` with ``optimizer_kwargs``
            (``policy_kwargs``; SB3's default Adam with ``eps=1e-5``) over the critic's
            parameters only.
        **refused: arguments of SB3's A2C and PPO that are not taken (``learning_rate``,
            ``vf_coef``, ``use_sde=True``, ``batch_size``, ``n_epochs``, ...): each raises
            ``TypeError`` in one line naming it and what to pass instead (see :data:`REFUSED`).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": ActorCriticPolicy}

    def __init__(self, policy: str | type[ActorCriticPolicy], env: Any,
                 actor_lr: float | Callable[[float], float] = 2e-2,
                 target_kl: float | None = None, critic_lr: float | Callable[[float], float] = 1e-3,
                 n_steps: int = 1000, gamma: float = 0.99,
                 gae_lambda: float = 0.9, ent_coef: float = 0.0, max_grad_norm: float | None = None,
                 normalize_advantage: bool = False, critic_epochs: int = 10, critic_batch_size: int | None = 100,
                 max_consecutive_skips: int = TrainConfig.max_consecutive_skips,
                 rollout_buffer_class: Any = None, rollout_buffer_kwargs: dict[str, Any] | None = None,
                 stats_window_size: int = 100, tensorboard_log: str | None = None, monitor_wrapper: bool = True,
                 policy_kwargs: dict[str, Any] | None = None, verbose: int = 0, seed: int | None = None,
                 device: torch.device | str = "cpu", _init_setup_model: bool = True, **refused: Any) -> None:
        name_ = type(self).__name__
        for name, value in refused.items():
            if (name, value) in (("use_sde", False), ("sde_sample_freq", -1)):
                continue  # SB3's own defaults, passed explicitly
            if name not in REFUSED:
                raise TypeError(f"{name_} got an unexpected argument {name!r} "
                                f"(see help({name_}) for the arguments it takes)")
            raise TypeError(f"{name_} does not take {name}={value!r}: {REFUSED[name]}")
        if not callable(actor_lr):
            _positive("actor_lr", actor_lr)
        if not callable(critic_lr):
            _positive("critic_lr", critic_lr)
        _positive("target_kl", target_kl, allow_none=True)
        _positive("max_grad_norm", max_grad_norm, allow_none=True)
        if isinstance(ent_coef, bool) or not (isinstance(ent_coef, (int, float)) and math.isfinite(ent_coef)
                                              and ent_coef >= 0):
            raise ValueError(f"ent_coef={ent_coef!r} must be a finite number >= 0")
        for name, count in (("n_steps", n_steps), ("critic_epochs", critic_epochs),
                            ("max_consecutive_skips", max_consecutive_skips)):
            _count(name, count)
        _count("critic_batch_size", critic_batch_size, allow_none=True)
        if not isinstance(normalize_advantage, bool):
            raise ValueError(f"normalize_advantage={normalize_advantage!r} must be True or False")
        super().__init__(policy, env, learning_rate=critic_lr, n_steps=n_steps, gamma=gamma,
                         gae_lambda=gae_lambda, ent_coef=float(ent_coef), vf_coef=0.0,
                         max_grad_norm=math.inf if max_grad_norm is None else float(max_grad_norm),
                         use_sde=False, sde_sample_freq=-1, rollout_buffer_class=rollout_buffer_class,
                         rollout_buffer_kwargs=rollout_buffer_kwargs, stats_window_size=stats_window_size,
                         tensorboard_log=tensorboard_log, monitor_wrapper=monitor_wrapper,
                         policy_kwargs=policy_kwargs, verbose=verbose, device=device, seed=seed,
                         _init_setup_model=False, supported_action_spaces=(spaces.Box, spaces.Discrete))
        self.rollout_steps = n_steps
        self.actor_lr = actor_lr
        self.target_kl = None if target_kl is None else float(target_kl)
        self.normalize_advantage = normalize_advantage
        self.critic_epochs = critic_epochs
        self.critic_batch_size = critic_batch_size
        self.skips = SkipCounter(max_consecutive_skips)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        total, n_envs = self.rollout_steps, self.n_envs
        if total % n_envs:
            raise ValueError(f"n_steps={total} is the samples per rollout summed over the envs and must be a "
                             f"multiple of n_envs={n_envs} (e.g. {n_envs * max(1, round(total / n_envs))})")
        if self.normalize_advantage and total < 2:
            raise ValueError("normalize_advantage=True needs n_steps >= 2 (a standard deviation of one sample is 0)")
        self.n_steps = total // n_envs  # SB3's count, per env: its rollout buffer and rollout loop read it
        super()._setup_model()
        self.actor_lr_schedule = FloatSchedule(self.actor_lr)
        # SB3 saves and loads `policy.optimizer`: make it the critic's, of the policy's optimizer class.
        optimizer_class: Any = self.policy.optimizer_class
        self.policy.optimizer = optimizer_class(critic_parameters(self.policy), lr=self.lr_schedule(1),
                                                **self.policy.optimizer_kwargs)
        clip = None if math.isinf(self.max_grad_norm) else self.max_grad_norm
        self.critic_update = CriticUpdate(_SB3Critic(self.policy, clip), self.lr_schedule(1), self.critic_epochs,
                                          self.critic_batch_size, optimizer=self.policy.optimizer)
        scores = _ClippedScores(list[torch.Tensor](actor_parameters(self.policy)), self._actor_outputs)
        scores.max_grad_norm = clip
        step_size = None if self.target_kl is None else StepSize(StepRule.KL, self.target_kl)
        self.actor_update = self._make_actor_update(scores, step_size)

    def _make_actor_update(self, scores: _ClippedScores, step_size: StepSize | None) -> ScoreRule:
        """The actor's update rule over ``scores`` (``step_size`` ``None``: the fixed step η)."""
        raise NotImplementedError(f"{type(self).__name__} must build its actor update (use SMAC or ACCG)")

    def _sync_actor_update(self, rule: Any) -> None:
        """Copy the hyper-parameters a user may have changed since the last update onto ``rule``."""
        rule.lr, rule.ent_coef = self._actor_step_size(), self.ent_coef

    def _actor_outputs(self, batch: ActorBatch) -> PolicyOutputs:
        dist = action_distribution(self.policy, batch.obs)
        return PolicyOutputs(dist.log_prob(batch.actions), dist)

    def _excluded_save_params(self) -> list[str]:
        # The update objects are rebuilt by _setup_model and hold references to the policy's parameters.
        return [*super()._excluded_save_params(), "actor_update", "critic_update", "actor_lr_schedule"]

    def _actor_step_size(self) -> float:
        eta = self.actor_lr_schedule(self._current_progress_remaining)
        if not (math.isfinite(eta) and eta > 0):
            raise ValueError(f"the actor_lr schedule gave {eta!r} at progress_remaining="
                             f"{self._current_progress_remaining:.3f}; it must give finite numbers > 0")
        return eta

    def train(self) -> None:
        """One actor step on the whole rollout, then the critic's epochs, under natpg's guards.

        Guarantees (as in natpg's own trainer, :mod:`natpg.guards`): the actor, the critic
        and the critic's optimizer state never hold a non-finite value. A rollout with a
        non-finite reward, observation, advantage or return is not learned from (both
        steps skipped); a critic step that would write a non-finite value is skipped or
        undone; an actor step that leaves non-finite parameters or log-probabilities is
        undone. Skips are logged (``train/skipped_updates``, ``train/skip_reason``,
        ``train/skipped_total``); after ``max_consecutive_skips`` skipped updates in a row
        :class:`natpg.guards.TrainingDiverged` is raised.
        """
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)  # critic_lr's schedule; logs train/learning_rate
        rule = self.actor_update
        self._sync_actor_update(rule)  # a user may have changed actor_lr, ent_coef, ... since the last update
        rb = self.rollout_buffer
        observations = rb.observations.values() if isinstance(rb.observations, dict) else [rb.observations]
        # SB3 keeps no next observations: a non-finite one reaches the rewards through its bootstrap
        fault = next((f for obs in observations if (f := rollout_fault(rb.rewards, obs, obs))), "")
        if not fault and not (np.isfinite(rb.advantages).all() and np.isfinite(rb.returns).all()):
            fault = "non-finite advantage"
        skipped, reasons = int(bool(fault)), [fault] if fault else []
        value_loss = policy_loss = float("nan")
        update_norm = 0.0
        step_taken = rule.lr if self.target_kl is None else 0.0  # the KL step's η, when one is taken
        if not fault:
            data = next(rb.get(batch_size=None))
            actions = data.actions.long().flatten() if isinstance(self.action_space, spaces.Discrete) else data.actions
            advantages = data.advantages
            if self.normalize_advantage:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            theta = actor_parameters(self.policy)
            before = snapshot(theta)
            info = rule.step(ActorBatch(data.observations, actions, advantages))
            policy_loss, update_norm = info.actor_loss, info.update_norm
            step_taken = info.extras.get("step_size", step_taken)
            skipped += info.skipped
            reasons += [info.skip_reason] if info.skip_reason else []
            if not self._policy_finite(data.observations, actions, theta):
                restore(theta, before)
                skipped, update_norm = skipped + 1, 0.0
                reasons.append("update made the policy non-finite; parameters restored")
            obs = _Rows(data.observations) if isinstance(data.observations, dict) else data.observations
            critic = self.critic_update.step(obs, data.returns)
            value_loss = critic.loss
            skipped += critic.skipped
            reasons += [critic.skip_reason] if critic.skip_reason else []
        reason = "; ".join(reasons)
        self.skips.record(skipped > 0, reason)

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance",
                           explained_variance(rb.values.flatten(), rb.returns.flatten()))
        self.logger.record("train/actor_lr", step_taken)
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
                log_prob = action_distribution(self.policy, observations).log_prob(actions)
            except ValueError:  # torch's argument validation: e.g. a Normal scale that underflowed to 0
                return False
        return all_finite(log_prob, *theta)

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int = 1, tb_log_name: str | None = None,
              reset_num_timesteps: bool = True, progress_bar: bool = False) -> "NaturalActorCritic":
        """SB3's ``learn`` (TensorBoard runs named after the class by default); returns the model."""
        return super().learn(total_timesteps=total_timesteps, callback=callback, log_interval=log_interval,
                             tb_log_name=tb_log_name or type(self).__name__, reset_num_timesteps=reset_num_timesteps,
                             progress_bar=progress_bar)


class SMAC(NaturalActorCritic):
    """Sherman–Morrison Actor-Critic with SB3's machinery around it.

    Args:
        actor_lr: η (see :class:`NaturalActorCritic`). The default, 2e-2, is 4× the ``paper-inferred``
            preset's CartPole η: that preset's per-task η are set for budgets of 0.5–5 M steps, this
            one was chosen on CartPole-v1 at 50 k steps (``benchmarks/sb3_vs_a2c.py``). Pendulum-v1 is
            not learned at 100 k steps by any setting tried (there and in ``benchmarks/pendulum_search.py``:
            SMAC's rank-1 Fisher is too weak a preconditioner on this task), nor by SB3's A2C with its
            defaults; :class:`ACCG`, with the policy's true Fisher, learns it.
        damping: λ > 0 of the rank-1 empirical Fisher ``λI + ℓ̄ℓ̄ᵀ``.
        target_kl: ``None`` (the default): the fixed step η. δ > 0: the KL step (see
            :class:`NaturalActorCritic`); δ = 0.03 is the value natpg's own study chose on classic
            control (docs/results/trust-region).
        **kwargs: the arguments of :class:`NaturalActorCritic` (``critic_lr``, ``n_steps``, ``gamma``, ...).
    """

    def __init__(self, policy: str | type[ActorCriticPolicy], env: Any,
                 actor_lr: float | Callable[[float], float] = 2e-2, damping: float = 0.1,
                 target_kl: float | None = None, **kwargs: Any) -> None:
        _positive("damping", damping)
        self.damping = float(damping)
        super().__init__(policy, env, actor_lr=actor_lr, target_kl=target_kl, **kwargs)

    def _make_actor_update(self, scores: _ClippedScores, step_size: StepSize | None) -> ScoreRule:
        return ShermanMorrisonUpdate(scores, self.actor_lr_schedule(1), self.damping, ent_coef=self.ent_coef,
                                     step_size=step_size)

    def _sync_actor_update(self, rule: Any) -> None:
        super()._sync_actor_update(rule)
        rule.damping = self.damping


class ACCG(NaturalActorCritic):
    """Natural actor-critic by conjugate gradient on the policy's Fisher (natpg's ``ac-cg``), in SB3.

    The actor's direction is ``x ≈ (F + λ_cg I)⁻¹ g`` by ``cg_iters`` conjugate-gradient iterations on
    Fisher-vector products of the true Fisher ``F`` (the Hessian of the mean KL between the old and
    the new policy), scaled by default to a target KL: TRPO's step without its line search. Rollouts,
    critic, guards and logging are :class:`SMAC`'s (see :class:`NaturalActorCritic`).

    Args:
        actor_lr: η of the fixed step, read only with ``target_kl=None``; the default is the paper's
            CartPole-v1 η for AC-CG.
        target_kl: δ > 0 of the KL step, or ``None`` for the fixed step η.
        gamma: discount γ. The defaults δ = 0.01 and γ = 0.97 were chosen together on CartPole-v1 at
            50 k and Pendulum-v1 at 100 k steps, seeds 100–101, from δ ∈ {0.005, 0.01, 0.03} and
            γ ∈ {0.95, 0.97, 0.99} (``benchmarks/results/accg_sel_cp.md``, ``accg_sel_pd.md``): γ = 0.99
            leaves Pendulum half-learned at 100 k, γ = 0.95 costs CartPole a little.
        cg_damping: λ_cg > 0 added to the Fisher.
        cg_iters: conjugate-gradient iterations per update (≥ 1).
        **kwargs: the other arguments of :class:`NaturalActorCritic` (``critic_lr``, ``n_steps``, ...);
            every default not named here is :class:`SMAC`'s.
    """

    def __init__(self, policy: str | type[ActorCriticPolicy], env: Any,
                 actor_lr: float | Callable[[float], float] = 8e-2, target_kl: float | None = 0.01,
                 gamma: float = 0.97, cg_damping: float = 0.1, cg_iters: int = 10, **kwargs: Any) -> None:
        _positive("cg_damping", cg_damping)
        _count("cg_iters", cg_iters)
        self.cg_damping, self.cg_iters = float(cg_damping), cg_iters
        super().__init__(policy, env, actor_lr=actor_lr, target_kl=target_kl, gamma=gamma, **kwargs)

    def _make_actor_update(self, scores: _ClippedScores, step_size: StepSize | None) -> ScoreRule:
        return NaturalCGUpdate(scores, self.actor_lr_schedule(1), self.cg_damping, self.cg_iters,
                               ent_coef=self.ent_coef, step_size=step_size)

    def _sync_actor_update(self, rule: Any) -> None:
        super()._sync_actor_update(rule)
        rule.cg_damping, rule.cg_iters = self.cg_damping, self.cg_iters


__all__ = ["ACCG", "NaturalActorCritic", "SMAC", "REFUSED", "action_distribution", "actor_parameters", "critic_parameters"]
