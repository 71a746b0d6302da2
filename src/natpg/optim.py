r"""Drop-in natural-gradient optimizers for any PyTorch policy-gradient code.

Each optimizer takes what a policy-gradient loop has at hand — the per-sample
log-probabilities ``log π_θ(a_i|s_i)`` (still attached to the graph) and the
advantages ``A_i`` — and moves the parameters by one natural-gradient step
(docs/method.md §2) with ascent on the return:

================  ===============================================  ===================
optimizer         step                                             cost in d
================  ===============================================  ===================
:class:`SMNG`     ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g``  (Sherman–Morrison)   O(d)
:class:`WoodburyNG` ``θ ← θ + η (λI + UUᵀ)⁻¹ g``  (Woodbury, rank k)  O(kd + k³)
:class:`NaturalCG`  ``θ ← θ + η CG(F + λI, g)`` (true Fisher)       O(iters · d)
================  ===============================================  ===================

with ``g = (1/N) Σ ℓ_i A_i``, ``ℓ_i = ∇_θ log π_θ(a_i|s_i)`` and ``ℓ̄ = (1/N) Σ ℓ_i``.
The math is not repeated here: each optimizer drives the matching update rule of
:mod:`natpg.updates` (which calls the solvers of :mod:`natpg.curvature`), fed by an
:class:`~natpg.scores.AutogradScores` kernel over the caller's log-probabilities
(:class:`LogProbBatch`) instead of a natpg actor.

Example:
    >>> import torch
    >>> policy = torch.nn.Linear(4, 2)
    >>> opt = SMNG(policy.parameters(), lr=0.01, damping=0.1)
    >>> obs = torch.randn(32, 4)
    >>> dist = torch.distributions.Categorical(logits=policy(obs))
    >>> actions = dist.sample()
    >>> info = opt.step(dist.log_prob(actions), advantages=torch.randn(32))
    >>> info.update_norm > 0
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from natpg.scores import AutogradScores, PolicyOutputs
from natpg.updates import NaturalCGUpdate, ShermanMorrisonUpdate, UpdateInfo, WoodburyUpdate
from natpg.updates.base import ScoreRule


@dataclass
class LogProbBatch:
    """The caller's batch as the rules see it.

    Per-sample log-probabilities (with graph), advantages and, for CG, the distribution they came
    from. It is evaluated once, so it cannot be split.
    """

    log_probs: Tensor
    advantages: Tensor
    distribution: Distribution | None = None

    def __len__(self) -> int:
        return int(self.advantages.shape[0])

    def slice(self, start: int, stop: int) -> "LogProbBatch":
        """Refuse to split: raise :class:`ValueError` (the log-probabilities are evaluated once, on the whole batch)."""
        raise ValueError("the caller's log-probabilities are evaluated once at θ and cannot be split into "
                         "sequential mini-batches")


def given_outputs(batch: LogProbBatch) -> PolicyOutputs:
    """``evaluate`` for :class:`~natpg.scores.AutogradScores`: the caller's log-probabilities and distribution."""
    return PolicyOutputs(batch.log_probs, batch.distribution)


class _NaturalGradientOptimizer(torch.optim.Optimizer):
    """Shared plumbing: one parameter group, hyper-parameters read from it at every step, one rule."""

    _hyper: tuple[str, ...] = ("lr",)
    _retain_graph = False

    def __init__(self, params: Any, defaults: dict) -> None:
        for name, value in defaults.items():
            if name in ("lr", "damping") and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name}={value!r} must be a number > 0")
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} takes one parameter group (the policy's parameters), "
                             f"got {len(self.param_groups)}: the natural gradient couples all of them")
        scores = AutogradScores(list(self.param_groups[0]["params"]), given_outputs, retain_graph=self._retain_graph)
        self._rule = self._make_rule(scores, self.param_groups[0])

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        raise NotImplementedError

    def _run(self, log_probs: Tensor, advantages: Tensor, dist: Distribution | None = None) -> UpdateInfo:
        if not isinstance(log_probs, Tensor) or log_probs.dim() != 1 or not log_probs.requires_grad:
            raise ValueError("log_probs must be a 1-D tensor of per-sample log π(a_i|s_i) that requires grad "
                             f"(got {type(log_probs).__name__} of shape {tuple(getattr(log_probs, 'shape', ()))})")
        advantages = torch.as_tensor(advantages).detach().to(log_probs.dtype).reshape(-1)
        if advantages.shape != log_probs.shape:
            raise ValueError(f"advantages has {advantages.numel()} entries, log_probs {log_probs.numel()}")
        group = self.param_groups[0]
        for name in self._hyper:  # follow LR schedulers and load_state_dict
            setattr(self._rule, name, float(group[name]))
        return self._rule.step(LogProbBatch(log_probs, advantages, dist))


class SMNG(_NaturalGradientOptimizer):
    r"""Sherman–Morrison natural gradient: ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` in O(d) (SMAC's actor step).

    ``g`` and ``ℓ̄`` come from one batched backward pass of the given log-probabilities;
    the solve is :func:`natpg.curvature.sherman_morrison_solve`.

    Args:
        params: the policy's parameters (one group).
        lr: step size η > 0.
        damping: λ > 0.
    """

    _hyper = ("lr", "damping")

    def __init__(self, params, lr: float = 5e-3, damping: float = 0.1) -> None:
        super().__init__(params, {"lr": lr, "damping": damping})

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        return ShermanMorrisonUpdate(scores, group["lr"], group["damping"])

    def step(self, log_probs: Tensor, advantages: Tensor) -> UpdateInfo:  # type: ignore[override]
        """One ascent step from per-sample ``log π(a_i|s_i)`` (with graph) and advantages ``A_i``."""
        return self._run(log_probs, advantages)


class WoodburyNG(_NaturalGradientOptimizer):
    r"""Rank-k natural gradient: ``θ ← θ + η (λI + UUᵀ)⁻¹ g``, U = the k group-mean scores / √k.

    The batch (in the order given) is split into ``rank`` consecutive groups; ``rank = 1``
    is :class:`SMNG`, ``rank = N`` the exact damped empirical-Fisher step.
    The solve is :func:`natpg.curvature.woodbury_solve`, O(kd + k³).

    Args:
        params: the policy's parameters (one group).
        lr: step size η > 0.
        damping: λ > 0.
        rank: k >= 1 (at most the batch size).
    """

    _hyper = ("lr", "damping")

    def __init__(self, params, lr: float = 5e-3, damping: float = 0.1, rank: int = 8) -> None:
        if not (isinstance(rank, int) and rank >= 1):
            raise ValueError(f"rank={rank!r} must be an integer >= 1")
        super().__init__(params, {"lr": lr, "damping": damping, "rank": rank})

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        return WoodburyUpdate(scores, group["lr"], group["damping"], group["rank"])

    def step(self, log_probs: Tensor, advantages: Tensor) -> UpdateInfo:  # type: ignore[override]
        """One ascent step from per-sample ``log π(a_i|s_i)`` (with graph) and advantages ``A_i``."""
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
        lr: step size η > 0 (ignored when ``max_kl`` is set).
        damping: λ > 0 added to F.
        cg_iters: conjugate-gradient iterations.
        max_kl: if set, scale the step to this KL instead (TRPO's rule).
    """

    _hyper = ("lr",)

    def __init__(self, params, lr: float = 1e-2, damping: float = 0.1, cg_iters: int = 10,
                 max_kl: float | None = None) -> None:
        if not (isinstance(cg_iters, int) and cg_iters >= 1):
            raise ValueError(f"cg_iters={cg_iters!r} must be an integer >= 1")
        if max_kl is not None and not max_kl > 0:
            raise ValueError(f"max_kl={max_kl!r} must be > 0 or None")
        super().__init__(params, {"lr": lr, "damping": damping, "cg_iters": cg_iters, "max_kl": max_kl})

    _retain_graph = True  # the Fisher-vector products reuse the graph of the caller's distribution

    def _make_rule(self, scores: AutogradScores, group: dict) -> ScoreRule:
        return NaturalCGUpdate(scores, group["lr"], group["damping"], group["cg_iters"], group["max_kl"])

    def step(self, log_probs: Tensor, advantages: Tensor, dist: Distribution) -> UpdateInfo:  # type: ignore[override]
        """One ascent step; ``dist`` is the distribution with ``log_probs = dist.log_prob(actions)``."""
        group = self.param_groups[0]
        assert isinstance(self._rule, NaturalCGUpdate)
        self._rule.cg_damping = float(group["damping"])
        self._rule.cg_iters = int(group["cg_iters"])
        self._rule.max_kl = group["max_kl"]
        return self._run(log_probs, advantages, dist)


__all__ = ["SMNG", "WoodburyNG", "NaturalCG", "LogProbBatch"]
