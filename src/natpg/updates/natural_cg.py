"""AC-CG: natural gradient by conjugate gradient on Fisher-vector products of the true Fisher (TRPO's KL Hessian)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, ClassVar

import torch
from torch.distributions import Distribution, kl_divergence

from natpg.config import StepRule
from natpg.curvature import conjugate_gradient, damped_hvp
from natpg.policies import Actor
from natpg.scores import AutogradScores, KernelChoice, ScoreKernel
from natpg.updates.base import ScoreRule, UpdateInfo, policy_loss
from natpg.updates.step_size import StepSize, detached


class NaturalCGUpdate(ScoreRule):
    r"""``x ≈ (F + λ_cg I)⁻¹ g`` by ``cg_iters`` CG iterations, then ``θ ← θ + η x`` (docs/method.md §2).

    ``F`` is the Fisher of the policy distribution at θ: the Hessian of the mean
    ``KL(π_old ‖ π_θ)`` at ``θ = θ_old`` (as in TRPO), applied matrix-free. ``g`` comes from
    the (autograd) score kernel, which also gives the distribution the KL is built from.

    η comes from the step-size rule (:mod:`natpg.updates.step_size`). TRPO's step is
    ``StepSize(StepRule.KL, δ, backtrack_iters=10)``; under ``kl`` ac-cg measures ``xᵀFx`` with
    the damped product ``xᵀ(F + λ_cg I)x`` it solved with (as TRPO implementations do; one more
    product on the graph it already built), so ``½ stepᵀ(F + λ_cg I) step = δ``. The line search
    re-evaluates the policy at each candidate, so the kernel must evaluate it (a kernel over
    given log-probabilities cannot).

    ``max_kl``, ``line_search`` and ``backtrack_iters`` are a shorthand for ``step_size``:
    ``max_kl=δ`` is ``step_rule=kl, target_kl=δ`` and ``line_search=True`` is ``backtrack_iters``
    candidates (0 without); ``step_size``, when given, wins.
    """

    default_scores: ClassVar[KernelChoice] = "autograd"
    label = "ac-cg"

    def __init__(self, policy: Actor | ScoreKernel, lr: float, cg_damping: float = 0.1, cg_iters: int = 10,
                 max_kl: float | None = None, line_search: bool = False, backtrack_iters: int = 10,
                 ent_coef: float = 0.0, scores: KernelChoice | None = None, step_size: StepSize | None = None) -> None:
        if step_size is None:
            step_size = StepSize(StepRule.FIXED if max_kl is None else StepRule.KL,
                                 StepSize.target_kl if max_kl is None else max_kl,
                                 int(backtrack_iters) if line_search else 0)
        super().__init__(policy, lr, ent_coef, scores, step_size)
        if not isinstance(self.scores, AutogradScores):
            raise ValueError("ac-cg needs the autograd score kernel (its Fisher-vector products are double backward)")
        self.kernel: AutogradScores = self.scores
        if not cg_damping > 0:
            raise ValueError(f"cg_damping must be > 0, got {cg_damping!r}")
        self.cg_damping = float(cg_damping)
        self.cg_iters = int(cg_iters)

    @property
    def max_kl(self) -> float | None:
        """δ under ``step_rule=kl``, ``None`` under ``fixed``; setting it switches the rule (the line search stays)."""
        return self.step_size.target_kl if self.step_size.rule is StepRule.KL else None

    @max_kl.setter
    def max_kl(self, value: float | None) -> None:
        size = self.step_size
        self.step_size = (replace(size, rule=StepRule.FIXED) if value is None
                          else replace(size, rule=StepRule.KL, target_kl=float(value)))

    def step(self, batch: Any) -> UpdateInfo:
        """One natural-gradient (CG) update of the actor on ``batch`` (see :meth:`ActorUpdate.step`)."""
        g, logp = self.kernel.gradient(batch, self.ent_coef)
        loss = policy_loss(logp, batch.advantages)
        if not bool(torch.isfinite(g).all()):
            return UpdateInfo(loss, 0.0, 1, "non-finite gradient")
        old, matvec = fisher_matvec(self.kernel.distribution(batch), self.params, self.cg_damping)
        res = conjugate_gradient(matvec, g, max_iter=self.cg_iters)
        x = res.x
        if res.iterations <= 1 and res.nonpositive_curvature:
            return UpdateInfo(loss, 0.0, 1, "non-positive curvature pᵀFp ≤ 0 on the first CG step",
                              {"cg_nonpositive_curvature": 1.0})
        extras = {"cg_iterations": float(res.iterations), "cg_residual": res.residual_norm,
                  "cg_nonpositive_curvature": float(res.nonpositive_curvature)}
        folds = self.step_size.folds_lr
        out = self.move(self.lr * x if folds else x, batch, old=old,
                        quadratic=None if folds else (lambda v: float(torch.dot(v, matvec(v)))))
        extras.update(out.extras)
        return UpdateInfo(loss, out.norm, int(bool(out.reason)), out.reason, extras)


def fisher_matvec(dist: Distribution, params: list[torch.Tensor],
                  damping: float) -> tuple[Distribution, Callable[[torch.Tensor], torch.Tensor]]:
    r"""The policy's damped Fisher as a product ``v ↦ (F + λI) v``, and the detached ("old") distribution.

    ``F`` is the Hessian of the mean ``KL(π_old ‖ π_θ)`` at ``θ = θ_old``
    (:func:`natpg.curvature.damped_hvp`), ``dist`` the distribution at θ with its graph.
    """
    old = detached(dist)
    return old, damped_hvp(kl_divergence(old, dist).mean(), params, damping)
