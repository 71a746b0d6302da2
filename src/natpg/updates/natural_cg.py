"""AC-CG: natural gradient by conjugate gradient on Fisher-vector products of the true Fisher (TRPO's KL Hessian)."""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import torch
from torch.distributions import Categorical, Distribution, Independent, Normal, kl_divergence

from natpg.curvature import conjugate_gradient, damped_hvp
from natpg.policies import Actor
from natpg.scores import AutogradScores, KernelChoice, ScoreKernel
from natpg.updates.base import ScoreRule, UpdateInfo, policy_loss


class NaturalCGUpdate(ScoreRule):
    r"""``x ≈ (F + λ_cg I)⁻¹ g`` by ``cg_iters`` CG iterations, then ``θ ← θ + η x`` (docs/method.md §2).

    ``F`` is the Fisher of the policy distribution at θ: the Hessian of the mean
    ``KL(π_old ‖ π_θ)`` at ``θ = θ_old`` (as in TRPO), applied matrix-free. ``g`` comes from
    the (autograd) score kernel, which also gives the distribution the KL is built from.

    Options (off by default):
      * ``max_kl``: replace η by the TRPO scale ``√(2 δ / xᵀ(F+λI)x)``, so that the
        second-order model of the KL, ``½ stepᵀ F step``, equals ``δ``.
      * ``line_search``: halve the step up to ``backtrack_iters`` times until the
        importance-weighted surrogate ``mean(π_θ/π_old · A)`` strictly improves and, if
        ``max_kl`` is set, the measured mean KL is at most ``1.5 · max_kl`` (a tolerance over
        the quadratic model, as in TRPO implementations); if no step is accepted the old
        parameters are restored. The line search re-evaluates the policy at each candidate,
        so the kernel must evaluate it (a kernel over given log-probabilities cannot).
    """

    default_scores: ClassVar[KernelChoice] = "autograd"
    label = "ac-cg"

    def __init__(self, policy: Actor | ScoreKernel, lr: float, cg_damping: float = 0.1, cg_iters: int = 10,
                 max_kl: float | None = None, line_search: bool = False, backtrack_iters: int = 10,
                 ent_coef: float = 0.0, scores: KernelChoice | None = None) -> None:
        super().__init__(policy, lr, ent_coef, scores)
        if not isinstance(self.scores, AutogradScores):
            raise ValueError("ac-cg needs the autograd score kernel (its Fisher-vector products are double backward)")
        self.kernel: AutogradScores = self.scores
        if not cg_damping > 0:
            raise ValueError(f"cg_damping must be > 0, got {cg_damping!r}")
        self.cg_damping = float(cg_damping)
        self.cg_iters = int(cg_iters)
        self.max_kl = max_kl
        self.line_search = line_search
        self.backtrack_iters = int(backtrack_iters)

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
        scale = self.lr
        if self.max_kl is not None:
            xFx = float(torch.dot(x, matvec(x)))
            if not (math.isfinite(xFx) and xFx > 0):
                return UpdateInfo(loss, 0.0, 1, "non-positive curvature xᵀFx", extras)
            scale = math.sqrt(2.0 * self.max_kl / xFx)
        step = scale * x
        if not self.line_search:
            norm, reason = self.apply(step)
            return UpdateInfo(loss, norm, int(bool(reason)), reason, extras)
        return self._line_search(batch, old, step, loss, extras)

    def _line_search(self, batch: Any, old: Distribution, step: torch.Tensor, loss: float,
                     extras: dict[str, float]) -> UpdateInfo:
        if not bool(torch.isfinite(step).all()):
            return UpdateInfo(loss, 0.0, 1, "non-finite step", extras)
        with torch.no_grad():
            theta_old = self.flat.get().clone()
            old_logp = old.log_prob(batch.actions)
            base = float((batch.advantages).mean())  # surrogate at θ_old: mean(ratio·A) with ratio = 1
            frac = 1.0
            for i in range(self.backtrack_iters):
                self.flat.set_(theta_old + frac * step)
                dist = self.kernel.distribution(batch)  # σ underflowed to 0: non-finite surrogate, rejected
                ratio = (dist.log_prob(batch.actions) - old_logp).exp()
                surr = float((ratio * batch.advantages).mean())
                kl = float(kl_divergence(old, dist).mean())
                ok_kl = self.max_kl is None or kl <= 1.5 * self.max_kl
                if math.isfinite(surr) and surr > base and ok_kl:
                    extras.update({"line_search_steps": float(i + 1), "line_search_failed": 0.0})
                    return UpdateInfo(loss, float(frac * step.norm()), 0, "", extras)
                frac *= 0.5
            self.flat.set_(theta_old)
        extras.update({"line_search_steps": float(self.backtrack_iters), "line_search_failed": 1.0})
        return UpdateInfo(loss, 0.0, 1, "line search found no improving step; parameters restored", extras)


def fisher_matvec(dist: Distribution, params: list[torch.Tensor],
                  damping: float) -> tuple[Distribution, Callable[[torch.Tensor], torch.Tensor]]:
    r"""The policy's damped Fisher as a product ``v ↦ (F + λI) v``, and the detached ("old") distribution.

    ``F`` is the Hessian of the mean ``KL(π_old ‖ π_θ)`` at ``θ = θ_old``
    (:func:`natpg.curvature.damped_hvp`), ``dist`` the distribution at θ with its graph.
    """
    old = _detached(dist)
    return old, damped_hvp(kl_divergence(old, dist).mean(), params, damping)


def _detached(dist: Distribution) -> Distribution:
    """A copy of ``dist`` whose parameters carry no graph (the 'old' policy), unvalidated (no host read)."""
    if isinstance(dist, Categorical):
        return Categorical(logits=dist.logits.detach(), validate_args=False)
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        return Independent(Normal(dist.base_dist.loc.detach(), dist.base_dist.scale.detach(), validate_args=False),
                           dist.reinterpreted_batch_ndims, validate_args=False)
    raise TypeError(f"cannot detach a {type(dist).__name__}")
