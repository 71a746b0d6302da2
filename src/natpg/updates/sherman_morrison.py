"""SMAC: rank-1 damped empirical Fisher, solved in closed form (Sherman–Morrison)."""

from __future__ import annotations

import torch

from natpg.curvature import sherman_morrison_solve
from natpg.policies import Actor
from natpg.updates.base import ActorBatch, ActorUpdate, UpdateInfo


class ShermanMorrisonUpdate(ActorUpdate):
    r"""SMAC's actor step (SPEC §2).

    For each mini-batch of ``B`` consecutive samples, at the current θ:

    .. math::

        \bar ℓ = \frac1B \sum_i ℓ_i,\quad g = \frac1B \sum_i ℓ_i A_i,\quad
        θ ← θ + η\,(λI + \bar ℓ \bar ℓ^\top)^{-1} g

    ``B = N`` (the default) is the batch-mean form used for the paper's main
    results; ``B = 1`` is the paper's Algorithm 1, which reduces to
    ``θ ← θ + η A_i ℓ_i / (λ + ℓ_iᵀ ℓ_i)``. ``g`` and ``ℓ̄`` come from one batched
    vector-Jacobian product of the same log-probabilities.
    """

    def __init__(self, actor: Actor, lr: float, damping: float, batch_size: int | None = None,
                 ent_coef: float = 0.0) -> None:
        super().__init__(actor, lr, ent_coef)
        if not damping > 0:
            raise ValueError(f"damping must be > 0, got {damping!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size!r}")
        self.damping = float(damping)
        self.batch_size = batch_size

    def step(self, batch: ActorBatch) -> UpdateInfo:
        n = len(batch)
        b = n if self.batch_size is None else self.batch_size
        if n % b:
            raise ValueError(f"batch_size B={b} must divide the batch length N={n}")
        dtype = batch.advantages.dtype
        total = torch.zeros(self.n_params, dtype=dtype)
        losses, skipped, reason = [], 0, ""
        for start in range(0, n, b):
            mb = batch.slice(start, start + b)
            weights = torch.full((1, b), 1.0 / b, dtype=dtype)
            rows, loss = self.batched_scores(mb, weights)
            g, score_mean = rows[0], rows[1]
            step = self.lr * sherman_morrison_solve(g, score_mean, self.damping)
            norm, why = self.apply(step)
            losses.append(loss)
            if why:
                skipped, reason = skipped + 1, why
            elif b < n:
                total += step
        if b == n:
            update_norm = norm
        else:
            update_norm = float(total.norm())
        return UpdateInfo(actor_loss=sum(losses) / len(losses), update_norm=update_norm, skipped=skipped,
                          skip_reason=reason, extras={"n_substeps": n // b})
