r"""Natural gradients in your own PyTorch code: preconditioners for any loss, and drop-in optimizers.

**Preconditioners** (the general path, in the manner of K-FAC preconditioners): you build any
loss you like from the policy — PPO's clipped objective, an entropy bonus, a value loss through
a shared trunk — and call ``loss.backward(retain_graph=True)``; then ``precond.step(log_probs)``
replaces each parameter's ``.grad`` (the gradient ``∇L`` of *your* loss) by the natural-gradient
direction ``x = F̂⁻¹ ∇L`` for the policy's curvature ``F̂``, and any torch optimizer takes the
step (SGD: ``θ ← θ − η F̂⁻¹ ∇L``), after gradient clipping or under an LR scheduler as usual:

* :class:`ShermanMorrisonPreconditioner`: ``F̂ = λI + ℓ̄ℓ̄ᵀ`` with the mean score
  ``ℓ̄ = (1/N) Σ_i ∇_θ log π(a_i|s_i)`` (SMAC), solved in closed form, O(d);
* :class:`WoodburyPreconditioner`: ``F̂ = λI + UUᵀ``, U the mean scores of k groups / √k, O(kd + k³);
* :class:`NaturalCGPreconditioner`: ``F̂ = F + λI``, F the policy's Fisher, by CG, O(iters · d).

``retain_graph=True`` is needed because ``step`` back-propagates the log-probabilities once
more (for their mean score), and ``loss.backward()`` frees the graph they share with the loss;
without it ``step`` says so in one error.

**Optimizers** (the simple path): :class:`SMNG`, :class:`WoodburyNG` and :class:`NaturalCG`
take the per-sample log-probabilities and advantages and move θ by one ascent step on
``J = (1/N) Σ log π(a_i|s_i) A_i`` themselves, ``θ ← θ + η F̂⁻¹ g`` with ``g = ∇J``: the same
step as ``ShermanMorrisonPreconditioner`` + ``torch.optim.SGD`` on ``L = −J``.

Both drive natpg's own parts: the score kernel (:class:`~natpg.scores.AutogradScores` over the
caller's log-probabilities, :class:`LogProbBatch`), the solvers of :mod:`natpg.curvature`, and
for the optimizers the update rules of :mod:`natpg.updates`. All helper tensors are made on the
parameters' device in their dtype; the Sherman–Morrison preconditioner reads nothing back to the
host (Woodbury reads two scalars of its k × k solve, CG its stopping test).

Example:
    >>> import torch
    >>> policy = torch.nn.Linear(4, 2)
    >>> precond = ShermanMorrisonPreconditioner(policy.parameters(), damping=0.1)
    >>> opt = torch.optim.SGD(policy.parameters(), lr=0.01)
    >>> dist = torch.distributions.Categorical(logits=policy(torch.randn(32, 4)))
    >>> log_probs = dist.log_prob(dist.sample())
    >>> loss = -(log_probs * torch.randn(32)).mean() - 0.01 * dist.entropy().mean()
    >>> loss.backward(retain_graph=True)
    >>> bool(precond.step(log_probs))              # .grad is now (λI + ℓ̄ℓ̄ᵀ)⁻¹ ∇L
    True
    >>> opt.step()
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import Tensor
from torch.distributions import Distribution

from natpg.curvature import conjugate_gradient, sherman_morrison_solve, woodbury_solve
from natpg.flat import flatten
from natpg.scores import AutogradScores, PolicyOutputs
from natpg.updates import NaturalCGUpdate, ShermanMorrisonUpdate, UpdateInfo, WoodburyUpdate
from natpg.updates.base import ScoreRule
from natpg.updates.natural_cg import fisher_matvec
from natpg.updates.woodbury import group_weights

# --------------------------------------------------------------------------- input checks


def _positive(name: str, value: Any) -> float:
    """``value`` as a float if it is a finite number > 0 (not a bool), else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} must be a finite number > 0")
    return float(value)


def _count(name: str, value: Any) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be an integer >= 1")
    return value


def _checked_log_probs(log_probs: Any) -> Tensor:
    """``log_probs`` if it is a non-empty 1-D floating tensor with graph, else one ``ValueError`` saying what it is."""
    shape = tuple(getattr(log_probs, "shape", ()))
    if not isinstance(log_probs, Tensor) or log_probs.dim() != 1 or not log_probs.is_floating_point():
        raise ValueError("log_probs must be a 1-D float tensor of per-sample log π(a_i|s_i), "
                         f"got {type(log_probs).__name__} of shape {shape}")
    if log_probs.shape[0] == 0:
        raise ValueError("log_probs is empty: the batch needs at least one sample")
    if not log_probs.requires_grad:
        raise ValueError("log_probs must require grad (computed from the policy's parameters, "
                         "not under torch.no_grad() or detached)")
    return log_probs


def _checked_advantages(advantages: Any, log_probs: Tensor) -> Tensor:
    """``advantages`` as a tensor next to ``log_probs`` (device, dtype), refused unless its shape is theirs."""
    adv = torch.as_tensor(advantages).detach()
    if adv.shape != log_probs.shape:
        raise ValueError(f"advantages has shape {tuple(adv.shape)}, log_probs {tuple(log_probs.shape)}: "
                         "give one advantage per log-probability, in the same order")
    return adv.to(device=log_probs.device, dtype=log_probs.dtype)


def _param_list(params: Any) -> list[Tensor]:
    """The tensors of ``params`` (an iterable of tensors), in order; a ``TypeError`` for anything else."""
    if isinstance(params, Tensor):
        raise TypeError("params must be an iterable of tensors (e.g. model.parameters()), got a single tensor")
    out = list(params)
    bad = [type(p).__name__ for p in out if not isinstance(p, Tensor)]
    if bad:
        raise TypeError(f"params must be an iterable of tensors (e.g. model.parameters()), got a {bad[0]}")
    if not out:
        raise ValueError("params is empty: give the policy's parameters")
    return out


_FREED_GRAPH = "backward through the graph a second time"  # torch's words for a graph already freed
_FREED_GRAPH_MESSAGE = ("precond.step back-propagates the log-probabilities (or the distribution) once more, but "
                        "loss.backward() freed their graph: call loss.backward(retain_graph=True) before "
                        "precond.step(...)")


@dataclass
class LogProbBatch:
    """The caller's batch as the score kernel sees it.

    Per-sample log-probabilities (with graph), advantages (``None`` for a preconditioner, which
    has the gradient already) and, for CG, the distribution they came from. It is evaluated
    once, so it cannot be split.
    """

    log_probs: Tensor
    advantages: Tensor | None
    distribution: Distribution | None = None

    def __len__(self) -> int:
        return int(self.log_probs.shape[0])

    def slice(self, start: int, stop: int) -> "LogProbBatch":
        """Refuse to split: raise :class:`ValueError` (the log-probabilities are evaluated once, on the whole batch)."""
        raise ValueError("the caller's log-probabilities are evaluated once at θ and cannot be split into "
                         "sequential mini-batches")


def given_outputs(batch: LogProbBatch) -> PolicyOutputs:
    """``evaluate`` for :class:`~natpg.scores.AutogradScores`: the caller's log-probabilities and distribution."""
    return PolicyOutputs(batch.log_probs, batch.distribution)


# --------------------------------------------------------------------------- preconditioners


class Preconditioner(abc.ABC):
    """Rewrites ``.grad`` into a natural-gradient direction; a torch optimizer then takes the step.

    Call order, every update: ``loss.backward(retain_graph=True)``, ``precond.step(log_probs)``,
    then (optionally gradient clipping and) ``optimizer.step()``. The sign convention is torch's:
    ``.grad`` holds the gradient of a loss to minimise, and after :meth:`step` it holds the
    preconditioned gradient of that same loss, so a descent step on it descends the loss.

    θ is the parameters given here that have a ``.grad`` at :meth:`step` (the others are left
    alone, as torch optimizers skip them). A parameter that has a gradient but that the
    log-probabilities do not reach (a separate critic) has score 0, so its entries of ``F̂`` are
    ``λI`` and its gradient is divided by λ: give the preconditioner the policy's parameters
    (with a shared trunk, the trunk's too), and keep others out.

    Args:
        params: the parameters to precondition (an iterable of tensors, e.g. ``actor.parameters()``).
        damping: λ, a finite number > 0.
    """

    def __init__(self, params: Iterable[Tensor], damping: float = 0.1) -> None:
        self.params = _param_list(params)
        self.damping = _positive("damping", damping)

    def step(self, log_probs: Tensor | None = None, distribution: Distribution | None = None) -> Tensor:
        """Replace each ``.grad`` by its slice of the natural-gradient direction ``x = F̂⁻¹ ∇L``.

        Args:
            log_probs: ``(N,)`` per-sample ``log π(a_i|s_i)`` of the batch the loss was built
                from, with their graph (``loss.backward(retain_graph=True)`` keeps it).
            distribution: the action distribution they came from, with graph (CG only).

        Returns:
            A 0-dim bool tensor on the parameters' device: ``True`` when the direction was finite
            and written; ``False`` when it held a non-finite value, in which case every ``.grad``
            is set to 0 (no step from this batch). The flag itself is not read here.
        """
        self.damping = _positive("damping", self.damping)  # an attribute a user or a schedule may change
        self._check_inputs(log_probs, distribution)
        active = [p for p in self.params if p.grad is not None and p.requires_grad]
        if not active:
            return torch.ones((), dtype=torch.bool, device=self.params[0].device)
        grads = [p.grad for p in active if p.grad is not None]  # (for mypy: all of them)
        g = flatten(grads)
        kernel = AutogradScores(active, given_outputs)
        batch = LogProbBatch(log_probs, None, distribution) if log_probs is not None else None
        try:
            x = self._direction(g, kernel, batch, distribution)
        except RuntimeError as err:
            if _FREED_GRAPH in str(err):
                raise RuntimeError(_FREED_GRAPH_MESSAGE) from err
            raise
        finite = torch.isfinite(x).all()
        x = torch.where(finite, x, torch.zeros_like(x))
        with torch.no_grad():
            for grad, v in zip(grads, kernel.flat.views(x)):
                grad.copy_(v)
        return finite

    def _check_inputs(self, log_probs: Any, distribution: Any) -> None:
        """The closed-form preconditioners need the log-probabilities (the distribution is not used)."""
        if log_probs is None:
            raise TypeError(f"{type(self).__name__}.step needs the per-sample log-probabilities: "
                            "precond.step(log_probs)")
        _checked_log_probs(log_probs)

    @abc.abstractmethod
    def _direction(self, g: Tensor, kernel: AutogradScores, batch: LogProbBatch | None,
                   distribution: Distribution | None) -> Tensor:
        """``F̂⁻¹ g`` for the flat gradient ``g`` of the active parameters (``kernel.params``)."""


class ShermanMorrisonPreconditioner(Preconditioner):
    r"""SMAC's curvature: ``.grad ← (λI + ℓ̄ℓ̄ᵀ)⁻¹ ∇L``, ``ℓ̄ = (1/N) Σ_i ∇_θ log π(a_i|s_i)``, in O(d).

    ``ℓ̄`` is one backward pass of the mean log-probability; the solve is
    :func:`natpg.curvature.sherman_morrison_solve`. With SGD at lr η and
    ``L = −(1/N) Σ log π_i A_i`` this is exactly :class:`SMNG`'s step.

    Args:
        params: the parameters to precondition.
        damping: λ, a finite number > 0.
    """

    def _direction(self, g: Tensor, kernel: AutogradScores, batch: LogProbBatch | None,
                   distribution: Distribution | None) -> Tensor:
        assert batch is not None
        n = len(batch)
        weights = torch.full((1, n), 1.0 / n, dtype=batch.log_probs.dtype, device=kernel.flat.device)
        score_mean = kernel.score_rows(batch, weights)[0].to(g.dtype)
        return sherman_morrison_solve(g, score_mean, self.damping, out=g)  # g is our own copy


class WoodburyPreconditioner(Preconditioner):
    r"""Rank-k curvature: ``.grad ← (λI + UUᵀ)⁻¹ ∇L``, U = the mean scores of k consecutive groups / √k.

    ``rank = 1`` is :class:`ShermanMorrisonPreconditioner`; ``rank = N`` gives
    ``λI + (1/N) Σ ℓ_i ℓ_iᵀ``, the damped empirical Fisher. U is one batched backward pass;
    the solve is :func:`natpg.curvature.woodbury_solve`, O(kd + k³).

    Args:
        params: the parameters to precondition.
        damping: λ, a finite number > 0.
        rank: k, an integer >= 1 (at most the batch size).
    """

    def __init__(self, params: Iterable[Tensor], damping: float = 0.1, rank: int = 8) -> None:
        super().__init__(params, damping)
        self.rank = _count("rank", rank)

    def _direction(self, g: Tensor, kernel: AutogradScores, batch: LogProbBatch | None,
                   distribution: Distribution | None) -> Tensor:
        assert batch is not None
        weights = group_weights(len(batch), _count("rank", self.rank), batch.log_probs.dtype, kernel.flat.device)
        U = kernel.score_rows(batch, weights).T.to(g.dtype)
        return woodbury_solve(g, U, self.damping)


class NaturalCGPreconditioner(Preconditioner):
    r"""The policy's true Fisher: ``.grad ← x ≈ (F + λI)⁻¹ ∇L`` by ``cg_iters`` conjugate-gradient steps.

    ``F`` is the Hessian of the mean ``KL(π_old ‖ π_θ)`` at θ (TRPO's Fisher), applied
    matrix-free by double back-propagation through ``distribution``; no log-probabilities are
    needed. The distribution must be a ``Categorical`` or an ``Independent(Normal)`` with its
    graph. CG decides when to stop on the host, so this one waits for the device.

    Args:
        params: the parameters to precondition.
        damping: λ, a finite number > 0, added to F.
        cg_iters: conjugate-gradient iterations, an integer >= 1.
    """

    def __init__(self, params: Iterable[Tensor], damping: float = 0.1, cg_iters: int = 10) -> None:
        super().__init__(params, damping)
        self.cg_iters = _count("cg_iters", cg_iters)

    def _check_inputs(self, log_probs: Any, distribution: Any) -> None:
        if not isinstance(distribution, Distribution):
            raise TypeError("NaturalCGPreconditioner.step needs the action distribution (with graph): "
                            f"precond.step(log_probs, distribution), got distribution={type(distribution).__name__}")
        if log_probs is not None:
            _checked_log_probs(log_probs)

    def _direction(self, g: Tensor, kernel: AutogradScores, batch: LogProbBatch | None,
                   distribution: Distribution | None) -> Tensor:
        assert distribution is not None
        _, matvec = fisher_matvec(distribution, kernel.params, self.damping)
        return conjugate_gradient(matvec, g, max_iter=_count("cg_iters", self.cg_iters)).x


# --------------------------------------------------------------------------- optimizers


class _NaturalGradientOptimizer(torch.optim.Optimizer):
    """Shared plumbing: one parameter group, hyper-parameters read from it at every step, one rule."""

    _hyper: tuple[str, ...] = ("lr",)
    _counts: tuple[str, ...] = ()
    _retain_graph = False

    def __init__(self, params: Any, defaults: dict) -> None:
        self._check_group(defaults)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} takes one parameter group (the policy's parameters), "
                             f"got {len(self.param_groups)}: the natural gradient couples all of them")
        # θ = the parameters that can have a gradient; frozen ones stay out, as in torch's optimizers.
        theta = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        if not theta:
            raise ValueError(f"{type(self).__name__}: no parameter requires grad")
        scores = AutogradScores(theta, given_outputs, retain_graph=self._retain_graph)
        self._rule = self._make_rule(scores, self.param_groups[0])

    def _check_group(self, group: dict) -> None:
        """Every hyper-parameter valid (at construction and at each step: schedulers and load_state_dict write them)."""
        for name in ("lr", "damping"):
            if name in group:
                _positive(name, group[name])
        for name in self._counts:
            _count(name, group[name])
        if group.get("max_kl") is not None:
            _positive("max_kl", group["max_kl"])

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        raise NotImplementedError

    def _run(self, log_probs: Any, advantages: Any, dist: Distribution | None = None) -> UpdateInfo:
        if log_probs is None or callable(log_probs) or advantages is None:
            name = type(self).__name__
            raise TypeError(f"{name}.step needs the per-sample log-probabilities and the advantages: "
                            f"opt.step(log_probs, advantages{', dist' if dist is not None else ''}); it computes the "
                            "gradient itself. To precondition the gradient of your own loss after loss.backward(), "
                            "use a natpg.optim preconditioner (e.g. ShermanMorrisonPreconditioner) with any torch "
                            "optimizer")
        log_probs = _checked_log_probs(log_probs)
        advantages = _checked_advantages(advantages, log_probs)
        group = self.param_groups[0]
        self._check_group(group)
        for name in self._hyper:  # follow LR schedulers and load_state_dict
            setattr(self._rule, name, float(group[name]))
        return self._rule.step(LogProbBatch(log_probs, advantages, dist))


class SMNG(_NaturalGradientOptimizer):
    r"""Sherman–Morrison natural gradient: ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` in O(d) (SMAC's actor step).

    ``g`` and ``ℓ̄`` come from one batched backward pass of the given log-probabilities;
    the solve is :func:`natpg.curvature.sherman_morrison_solve`. Parameters the
    log-probabilities do not reach have score 0 and do not move. ``step`` takes the batch
    (``opt.step(log_probs, advantages)``), not a closure: for your own loss, use
    :class:`ShermanMorrisonPreconditioner` with any torch optimizer.

    Args:
        params: the policy's parameters (one group).
        lr: step size η, a finite number > 0.
        damping: λ, a finite number > 0.
    """

    _hyper = ("lr", "damping")

    def __init__(self, params, lr: float = 5e-3, damping: float = 0.1) -> None:
        super().__init__(params, {"lr": lr, "damping": damping})

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        return ShermanMorrisonUpdate(scores, group["lr"], group["damping"])

    def step(self, log_probs: Tensor | None = None, advantages: Tensor | None = None) -> UpdateInfo:  # type: ignore[override]
        """One ascent step from ``(N,)`` per-sample ``log π(a_i|s_i)`` (with graph) and advantages ``A_i`` of shape ``(N,)``."""
        return self._run(log_probs, advantages)


class WoodburyNG(_NaturalGradientOptimizer):
    r"""Rank-k natural gradient: ``θ ← θ + η (λI + UUᵀ)⁻¹ g``, U = the k group-mean scores / √k.

    The batch (in the order given) is split into ``rank`` consecutive groups; ``rank = 1``
    is :class:`SMNG`, ``rank = N`` the exact damped empirical-Fisher step.
    The solve is :func:`natpg.curvature.woodbury_solve`, O(kd + k³).

    Args:
        params: the policy's parameters (one group).
        lr: step size η, a finite number > 0.
        damping: λ, a finite number > 0.
        rank: k, an integer >= 1 (at most the batch size).
    """

    _hyper = ("lr", "damping")
    _counts = ("rank",)

    def __init__(self, params, lr: float = 5e-3, damping: float = 0.1, rank: int = 8) -> None:
        super().__init__(params, {"lr": lr, "damping": damping, "rank": rank})

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        return WoodburyUpdate(scores, group["lr"], group["damping"], group["rank"])

    def step(self, log_probs: Tensor | None = None, advantages: Tensor | None = None) -> UpdateInfo:  # type: ignore[override]
        """One ascent step from ``(N,)`` per-sample ``log π(a_i|s_i)`` (with graph) and advantages ``A_i`` of shape ``(N,)``."""
        assert isinstance(self._rule, WoodburyUpdate)
        self._rule.rank = int(self.param_groups[0]["rank"])
        return self._run(log_probs, advantages)


class NaturalCG(_NaturalGradientOptimizer):
    r"""Natural gradient with the true Fisher: ``x ≈ (F + λI)⁻¹ g`` by conjugate gradient, ``θ ← θ + η x``.

    ``F`` is the Hessian of the mean ``KL(π_old ‖ π_θ)`` at θ (TRPO's Fisher), applied by
    :func:`natpg.curvature.damped_hvp`; no matrix is formed. The step therefore also
    needs the action distribution the log-probabilities came from (a ``Categorical`` or
    an ``Independent(Normal)``, still attached to the graph).

    Args:
        params: the policy's parameters (one group).
        lr: step size η, a finite number > 0 (ignored when ``max_kl`` is set).
        damping: λ, a finite number > 0, added to F.
        cg_iters: conjugate-gradient iterations, an integer >= 1.
        max_kl: if set, scale the step to this KL instead (TRPO's rule), a finite number > 0.
    """

    _hyper = ("lr",)
    _counts = ("cg_iters",)
    _retain_graph = True  # the Fisher-vector products reuse the graph of the caller's distribution

    def __init__(self, params, lr: float = 1e-2, damping: float = 0.1, cg_iters: int = 10,
                 max_kl: float | None = None) -> None:
        super().__init__(params, {"lr": lr, "damping": damping, "cg_iters": cg_iters, "max_kl": max_kl})

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        return NaturalCGUpdate(scores, group["lr"], group["damping"], group["cg_iters"], group["max_kl"])

    def step(self, log_probs: Tensor | None = None, advantages: Tensor | None = None,  # type: ignore[override]
             dist: Distribution | None = None) -> UpdateInfo:
        """One ascent step; ``dist`` is the distribution with ``log_probs = dist.log_prob(actions)``."""
        if log_probs is not None and not callable(log_probs) and not isinstance(dist, Distribution):
            raise TypeError("NaturalCG.step needs the action distribution too: opt.step(log_probs, advantages, dist)")
        group = self.param_groups[0]
        assert isinstance(self._rule, NaturalCGUpdate)
        self._rule.cg_damping = _positive("damping", group["damping"])
        self._rule.cg_iters = _count("cg_iters", group["cg_iters"])
        self._rule.max_kl = group["max_kl"]
        return self._run(log_probs, advantages, dist)


__all__ = [
    "Preconditioner", "ShermanMorrisonPreconditioner", "WoodburyPreconditioner", "NaturalCGPreconditioner",
    "SMNG", "WoodburyNG", "NaturalCG", "LogProbBatch",
]
