r"""The step-size part of an actor update: how far θ moves along a rule's direction ``x`` (docs/method.md §2).

A direction-producing rule (ac-sgd, smac, woodbury, ac-cg) hands its ``x`` to :func:`take_step`,
which moves θ by one of two rules (:class:`~natpg.config.StepRule`):

* ``fixed``: ``θ ← θ + η x`` with the rule's ``lr`` (the rule folds η into ``x`` itself, see
  :attr:`StepSize.folds_lr`, so this is exactly the step it took before the rule existed);
* ``kl`` (TRPO's scaling): ``θ ← θ + η x`` with

  .. math:: η = \sqrt{2δ / x^\top F x},

  so that the second-order model of the mean ``KL(π_old ‖ π_new)``, ``½ η² xᵀFx``, equals the
  target ``δ``. F is the Fisher information of the policy's action distribution at θ, and
  ``xᵀFx`` costs one forward-mode pass (:class:`PolicyFisher`); no matrix is formed.

Either may be followed by a backtracking line search (:attr:`StepSize.backtrack_iters` > 0): the
candidates ``θ_old + r^j · step`` (``r`` = :attr:`StepSize.backtrack_ratio`, ``j = 0, 1, …``) are
tried in turn, and the first whose surrogate ``mean(π_new/π_old · A)`` exceeds its value at θ_old
(``mean(A)``) and, under ``kl``, whose measured mean KL is at most ``1.5 δ`` is kept; if none is,
θ is restored bit for bit and the step counts as skipped.

The Fisher's quadratic form. For a policy whose distribution at state ``s`` has parameters
``o(s; θ)`` (logits, or the Gaussian's mean and log σ), the Fisher is ``F = mean_s J_sᵀ M_s J_s``
with ``J_s = ∂o/∂θ`` and ``M_s`` the Fisher of the distribution family in ``o`` (the KL's
Hessian is exactly this Gauss–Newton form at θ_old: the KL's gradient in ``o`` vanishes there). So
``xᵀFx = mean_s (J_s x)ᵀ M_s (J_s x)`` needs only the Jacobian-vector product ``J_s x``:

* categorical over logits ``o`` with probabilities ``p``: ``vᵀMv = Σ_k p_k v_k² − (Σ_k p_k v_k)²``;
* diagonal Gaussian, mean μ, log σ: ``vᵀMv = Σ_k v_{μ,k}²/σ_k² + 2 Σ_k v_{log σ,k}²``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, Normal, kl_divergence

from natpg.config import StepRule, StepSizeSettings
from natpg.flat import FlatParams
from natpg.policies import Actor
from natpg.scores import MLPScores

KL_TOLERANCE = 1.5
"""Under ``kl``, the line search rejects a candidate whose measured mean KL exceeds this many δ.

The quadratic model is exact only to second order; TRPO implementations allow this margin."""


@dataclass(frozen=True)
class StepSize:
    """The step-size rule of one update rule (the fields of :class:`~natpg.config.StepSizeSettings`).

    Attributes:
        rule: ``fixed`` (``η = lr``) or ``kl`` (``η = √(2 target_kl / xᵀFx)``).
        target_kl: δ > 0, read by ``kl``.
        backtrack_iters: line-search candidates, 0 for none.
        backtrack_ratio: the line search's shrink factor, in (0, 1).
    """

    rule: StepRule = StepRule.FIXED
    target_kl: float = 0.01
    backtrack_iters: int = 0
    backtrack_ratio: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "rule", StepRule(self.rule))
        if not (math.isfinite(self.target_kl) and self.target_kl > 0):
            raise ValueError(f"target_kl must be a finite number > 0, got {self.target_kl!r}")
        if not (isinstance(self.backtrack_iters, int) and self.backtrack_iters >= 0):
            raise ValueError(f"backtrack_iters must be an integer >= 0, got {self.backtrack_iters!r}")
        if not (math.isfinite(self.backtrack_ratio) and 0 < self.backtrack_ratio < 1):
            raise ValueError(f"backtrack_ratio must be in (0, 1), got {self.backtrack_ratio!r}")

    @classmethod
    def from_settings(cls, s: StepSizeSettings) -> "StepSize":
        """The rule a config section asks for."""
        return cls(s.step_rule, s.target_kl, s.backtrack_iters, s.backtrack_ratio)

    @property
    def folds_lr(self) -> bool:
        """Whether the caller scales its direction by η itself (``fixed``): the step is then ``x`` as given."""
        return self.rule is StepRule.FIXED

    @property
    def plain(self) -> bool:
        """``θ ← θ + η x`` and nothing else (``fixed``, no line search): no policy evaluation needed."""
        return self.folds_lr and not self.backtrack_iters


@dataclass
class StepOutcome:
    """What :func:`take_step` did: ``‖θ_new − θ_old‖``, the reason it skipped (``""`` if it did not), extras to log."""

    norm: float
    reason: str = ""
    extras: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- the policy's Fisher

class PolicyFisher(abc.ABC):
    """The policy as the step-size rule sees it: its distribution on a batch, and ``xᵀFx`` there."""

    def __init__(self, flat: FlatParams) -> None:
        self.flat = flat

    @abc.abstractmethod
    def quadratic(self, batch: Any, x: Tensor) -> tuple[float, Distribution]:
        """``xᵀFx`` at the current θ on ``batch.obs`` (a mean over the states), and the distribution there (no graph)."""

    @abc.abstractmethod
    def distribution(self, batch: Any) -> Distribution:
        """The action distribution at the current θ on ``batch`` (no graph: call under ``torch.no_grad``)."""


class MLPFisher(PolicyFisher):
    r"""``xᵀFx`` for a Linear/Tanh :class:`~natpg.policies.Actor` by a hand-written forward-mode pass.

    Each layer ``z = W h + b`` carries its tangent ``ż = Ẇ h + W ḣ + ḃ`` (``ḣ = 0`` at the
    observations, ``ḣ = (1 − h²) ⊙ ż`` after a tanh), with ``(Ẇ, ḃ)`` the slices of ``x``; the
    body's output tangent and ``x``'s log σ slice then go into the family's metric (module docstring).
    Cost: two matrix products per layer, plus the forward pass unless ``kernel`` (the MLP score kernel
    of the rule) has just run it on the same observations at the same θ (:meth:`MLPScores.forward_of`).
    No graph.
    """

    def __init__(self, actor: Actor, flat: FlatParams, kernel: MLPScores | None = None) -> None:
        super().__init__(flat)
        layers = actor.linear_layers()
        if layers is None:
            raise ValueError("MLPFisher needs an actor whose body is a Linear/Tanh stack")
        self.actor = actor
        self.layers = layers
        self.kernel = kernel

    def _slice(self, x: Tensor, p: Tensor) -> Tensor:
        return x[slice(*self.flat.span(p))].view_as(p)

    @torch.no_grad()
    def quadratic(self, batch: Any, x: Tensor) -> tuple[float, Distribution]:
        """``mean_s (J_s x)ᵀ M_s (J_s x)`` by one forward pass with tangents (see the class docstring)."""
        cached = None if self.kernel is None else self.kernel.forward_of(batch.obs)
        h: Tensor = batch.obs
        h_dot: Tensor | None = None
        last = len(self.layers) - 1
        for i, lin in enumerate(self.layers):
            w_dot = self._slice(x, lin.weight)
            b_dot = None if lin.bias is None else self._slice(x, lin.bias)
            z_dot = torch.nn.functional.linear(h, w_dot, b_dot)
            if h_dot is not None:
                z_dot.addmm_(h_dot, lin.weight.T)
            z = cached[i + 1] if cached is not None else torch.nn.functional.linear(h, lin.weight, lin.bias)
            if i < last:
                h = z if cached is not None else z.tanh_()
                h_dot = torch.ops.aten.tanh_backward.grad_input(z_dot, h, grad_input=z_dot)
            else:
                h = z.clone() if cached is not None else z  # a kernel buffer must not escape in the distribution
                h_dot = z_dot
        assert h_dot is not None
        dist = self.actor.head(h)
        log_std = self.actor.log_std
        log_std_dot = None if log_std is None else self._slice(x, log_std)
        return float(_metric(dist, h_dot, log_std_dot).mean()), dist

    @torch.no_grad()
    def distribution(self, batch: Any) -> Distribution:
        """The actor's distribution at ``batch.obs``."""
        return self.actor.distribution(batch.obs)


class AutogradFisher(PolicyFisher):
    r"""``xᵀFx`` for any policy whose distribution is built with autograd (the reference for :class:`MLPFisher`).

    ``J x`` comes from reverse-over-reverse differentiation: with ``u`` a dummy cotangent of the
    distribution's parameters ``o``, ``v(u) = Jᵀu`` is linear in ``u``, so ``∇_u ⟨v(u), x⟩ = J x``.
    Cost: the forward pass and two backward passes (one of them of a backward graph).

    Args:
        flat: θ's layout.
        distribution: the action distribution on a batch, attached to the graph of θ.
    """

    def __init__(self, flat: FlatParams, distribution: Callable[[Any], Distribution]) -> None:
        super().__init__(flat)
        self._distribution = distribution

    def quadratic(self, batch: Any, x: Tensor) -> tuple[float, Distribution]:
        """``mean_s (J_s x)ᵀ M_s (J_s x)`` with ``J x`` by double backward (see the class docstring)."""
        dist = self._distribution(batch)
        outs = _parameters(dist)
        dummies = [torch.zeros_like(o, requires_grad=True) for o in outs]
        vjp = torch.autograd.grad(outs, self.flat.params, grad_outputs=dummies, create_graph=True, allow_unused=True)
        used = [(v, t) for v, t in zip(vjp, self.flat.views(x)) if v is not None and v.requires_grad]
        jx = torch.autograd.grad([v for v, _ in used], dummies, grad_outputs=[t for _, t in used], allow_unused=True)
        tangents = [torch.zeros_like(o) if j is None else j for o, j in zip(outs, jx)]
        old = detached(dist)
        if isinstance(old, Categorical):
            per_state = _metric(old, tangents[0], None)
        else:  # (μ, σ): the tangent of log σ is σ̇ / σ
            per_state = _metric(old, tangents[0], tangents[1] / outs[1].detach())
        return float(per_state.mean()), old

    def distribution(self, batch: Any) -> Distribution:
        """The policy's distribution on ``batch``, detached."""
        with torch.no_grad():
            return detached(self._distribution(batch))


def _parameters(dist: Distribution) -> list[Tensor]:
    """The tensors a distribution of a supported family is built from: logits, or (mean, σ)."""
    if isinstance(dist, Categorical):
        return [dist.logits]
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        return [dist.base_dist.loc, dist.base_dist.scale]
    raise TypeError(f"no Fisher metric for a {type(dist).__name__}; supported: Categorical, Independent(Normal)")


def _metric(dist: Distribution, out_dot: Tensor, log_std_dot: Tensor | None) -> Tensor:
    """Per state, ``vᵀ M v`` for the tangent ``v`` of the distribution's parameters (module docstring).

    Args:
        dist: the distribution at θ (categorical, or diagonal Gaussian).
        out_dot: ``(N, K)`` tangent of the logits or of the mean.
        log_std_dot: tangent of log σ (``(K,)`` or ``(N, K)``); ``None`` for a categorical.
    """
    if isinstance(dist, Categorical):
        p = dist.probs
        return (p * out_dot.square()).sum(-1) - (p * out_dot).sum(-1).square()
    if not (isinstance(dist, Independent) and isinstance(dist.base_dist, Normal)) or log_std_dot is None:
        raise TypeError(f"no Fisher metric for a {type(dist).__name__}; supported: Categorical, Independent(Normal)")
    mean_part = (out_dot / dist.base_dist.scale).square().sum(-1)
    return mean_part + 2.0 * log_std_dot.square().expand_as(out_dot).sum(-1)


def detached(dist: Distribution) -> Distribution:
    """A copy of ``dist`` whose parameters carry no graph (the 'old' policy)."""
    if isinstance(dist, Categorical):
        return Categorical(logits=dist.logits.detach(), validate_args=False)
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        return Independent(Normal(dist.base_dist.loc.detach(), dist.base_dist.scale.detach(), validate_args=False),
                           dist.reinterpreted_batch_ndims, validate_args=False)
    raise TypeError(f"cannot detach a {type(dist).__name__}")


# --------------------------------------------------------------------------- the step

def take_step(size: StepSize, x: Tensor, batch: Any, lr: float, flat: FlatParams,
              apply: Callable[[Tensor], tuple[float, str]], fisher: PolicyFisher | None,
              quadratic: Callable[[Tensor], float] | None = None, old: Distribution | None = None) -> StepOutcome:
    """Move θ along ``x`` by the rule ``size`` (module docstring).

    Args:
        size: the step-size rule.
        x: under ``fixed`` the step ``η x`` already scaled (:attr:`StepSize.folds_lr`), else the direction.
        batch: the samples ``x`` was computed on (``obs``, ``actions``, ``advantages``).
        lr: η (recorded only; under ``fixed`` it is already in ``x``).
        flat: θ's layout (the line search writes θ through it).
        apply: ``θ ← θ + step``, guarded: returns ``(‖step‖, skip reason)`` (:meth:`ScoreRule.apply`).
        fisher: the policy, for ``xᵀFx`` and the line search's evaluations (unused by a plain rule).
        quadratic: ``v ↦ vᵀFv`` to use instead of ``fisher`` (ac-cg's damped product, already built).
        old: the distribution at θ_old, if the caller has it.

    Returns:
        the outcome; ``extras`` holds ``step_size`` (the η applied to ``x``) under ``kl`` and
        ``line_search_steps``, ``line_search_failed`` with a line search. A non-finite or
        non-positive ``xᵀFx`` skips the step (θ untouched).
    """
    extras: dict[str, float] = {}
    step = x
    scale = lr
    if size.rule is StepRule.KL:
        extras["step_size"] = 0.0
        if quadratic is not None:
            xfx = quadratic(x)
        else:
            assert fisher is not None, "step_rule=kl needs the policy's Fisher"
            xfx, old = fisher.quadratic(batch, x)
        if not math.isfinite(xfx):
            return StepOutcome(0.0, "non-finite curvature xᵀFx", extras)
        if not xfx > 0:
            return StepOutcome(0.0, "non-positive curvature xᵀFx", extras)
        scale = math.sqrt(2.0 * size.target_kl / xfx)
        step = scale * x
        extras["step_size"] = scale
    if not size.backtrack_iters:
        norm, reason = apply(step)
        if reason and "step_size" in extras:
            extras["step_size"] = 0.0
        return StepOutcome(norm, reason, extras)
    assert fisher is not None, "a line search needs the policy's distribution"
    return _line_search(size, step, scale, batch, flat, fisher, old, extras)


def _line_search(size: StepSize, step: Tensor, scale: float, batch: Any, flat: FlatParams, fisher: PolicyFisher,
                 old: Distribution | None, extras: dict[str, float]) -> StepOutcome:
    """Backtrack along ``step`` from θ_old (module docstring); θ_old is restored exactly if nothing is accepted."""
    if not bool(torch.isfinite(step).all()):
        extras.update({"line_search_steps": 0.0, "line_search_failed": 1.0})
        return StepOutcome(0.0, "non-finite step", extras)
    bounded = size.rule is StepRule.KL
    with torch.no_grad():
        theta_old = flat.get()
        if old is None:
            old = fisher.distribution(batch)
        old_logp = old.log_prob(batch.actions)
        base = float(batch.advantages.mean())  # the surrogate at θ_old: mean(ratio · A) with ratio = 1
        frac = 1.0
        for i in range(size.backtrack_iters):
            flat.set_(theta_old + frac * step)
            dist = fisher.distribution(batch)  # σ underflowed to 0: a non-finite surrogate, rejected
            ratio = (dist.log_prob(batch.actions) - old_logp).exp()
            surr = float((ratio * batch.advantages).mean())
            kl = float(kl_divergence(old, dist).mean())
            if math.isfinite(surr) and surr > base and (not bounded or kl <= KL_TOLERANCE * size.target_kl):
                extras.update({"line_search_steps": float(i + 1), "line_search_failed": 0.0})
                if "step_size" in extras:
                    extras["step_size"] = scale * frac
                return StepOutcome(float(frac * step.norm()), "", extras)
            frac *= size.backtrack_ratio
        flat.set_(theta_old)
    extras.update({"line_search_steps": float(size.backtrack_iters), "line_search_failed": 1.0})
    if "step_size" in extras:
        extras["step_size"] = 0.0
    return StepOutcome(0.0, "line search found no improving step; parameters restored", extras)
