"""AC-CG: natural gradient by conjugate gradient on Fisher-vector products (true Fisher)."""

from __future__ import annotations

import math

import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from natpg.curvature import conjugate_gradient, damped_hvp
from natpg.policies import Actor
from natpg.updates.base import ActorBatch, ActorUpdate, UpdateInfo, flatten


class NaturalCGUpdate(ActorUpdate):
    r"""``x ≈ (F + λ_cg I)⁻¹ g`` by ``cg_iters`` CG iterations, then ``θ ← θ + η x`` (docs/method.md §2).

    ``F`` is the Fisher of the policy distribution at θ: the Hessian of the mean
    ``KL(π_old ‖ π_θ)`` at ``θ = θ_old`` (as in TRPO), applied matrix-free.

    Options (off by default):
      * ``max_kl``: replace η by the TRPO scale ``√(2 δ / xᵀ(F+λI)x)``.
      * ``line_search``: halve the step up to ``backtrack_iters`` times until the
        importance-weighted surrogate improves (and the KL is within ``max_kl`` if
        set); if no step is accepted the old parameters are restored.
    """

    def __init__(self, actor: Actor, lr: float, cg_damping: float = 0.1, cg_iters: int = 10,
                 max_kl: float | None = None, line_search: bool = False, backtrack_iters: int = 10,
                 ent_coef: float = 0.0) -> None:
        super().__init__(actor, lr, ent_coef)
        if not cg_damping > 0:
            raise ValueError(f"cg_damping must be > 0, got {cg_damping!r}")
        self.cg_damping = float(cg_damping)
        self.cg_iters = int(cg_iters)
        self.max_kl = max_kl
        self.line_search = line_search
        self.backtrack_iters = int(backtrack_iters)

    def step(self, batch: ActorBatch) -> UpdateInfo:
        g, loss = self.policy_gradient(batch)
        if not bool(torch.isfinite(g).all()):
            return UpdateInfo(loss, 0.0, 1, "non-finite gradient")
        dist = self.actor.distribution(batch.obs)
        old = _detached(dist)
        kl = kl_divergence(old, dist).mean()
        matvec = damped_hvp(kl, self.params, self.cg_damping)
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

    def _line_search(self, batch: ActorBatch, old, step: torch.Tensor, loss: float, extras: dict) -> UpdateInfo:
        if not bool(torch.isfinite(step).all()):
            return UpdateInfo(loss, 0.0, 1, "non-finite step", extras)
        with torch.no_grad():
            theta_old = flatten([p.detach() for p in self.params]).clone()
            old_logp = old.log_prob(batch.actions)
            base = float((batch.advantages).mean())  # surrogate at θ_old: mean(ratio·A) with ratio = 1
            frac = 1.0
            for i in range(self.backtrack_iters):
                self._set(theta_old + frac * step)
                dist = self.actor.distribution(batch.obs)  # σ underflowed to 0: non-finite surrogate, rejected
                ratio = (dist.log_prob(batch.actions) - old_logp).exp()
                surr = float((ratio * batch.advantages).mean())
                kl = float(kl_divergence(old, dist).mean())
                ok_kl = self.max_kl is None or kl <= 1.5 * self.max_kl
                if math.isfinite(surr) and surr > base and ok_kl:
                    extras.update({"line_search_steps": float(i + 1), "line_search_failed": 0.0})
                    return UpdateInfo(loss, float(frac * step.norm()), 0, "", extras)
                frac *= 0.5
            self._set(theta_old)
        extras.update({"line_search_steps": float(self.backtrack_iters), "line_search_failed": 1.0})
        return UpdateInfo(loss, 0.0, 1, "line search found no improving step; parameters restored", extras)

    @torch.no_grad()
    def _set(self, flat: torch.Tensor) -> None:
        offset = 0
        for p in self.params:
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n


def _detached(dist):
    """A copy of ``dist`` whose parameters carry no graph (the 'old' policy)."""
    if isinstance(dist, Categorical):
        return Categorical(logits=dist.logits.detach())
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        return Independent(Normal(dist.base_dist.loc.detach(), dist.base_dist.scale.detach()),
                           dist.reinterpreted_batch_ndims)
    raise TypeError(f"cannot detach a {type(dist).__name__}")
