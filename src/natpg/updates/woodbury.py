"""Woodbury: rank-k damped empirical Fisher from group-mean scores, solved with the Woodbury identity (ours)."""

from __future__ import annotations

import math
from typing import Any

import torch

from natpg.curvature import woodbury_solve
from natpg.policies import Actor
from natpg.scores import KernelChoice, ScoreKernel
from natpg.updates.base import ScoreRule, UpdateInfo, policy_loss
from natpg.updates.step_size import StepSize


class WoodburyUpdate(ScoreRule):
    r"""Rank-k generalisation of SMAC (docs/method.md §2).

    Split the N samples into ``k`` contiguous groups ``G_j``; the columns of ``U``
    are the group mean scores scaled by ``1/√k``: ``u_j = (1/√k)(1/|G_j|) Σ_{i∈G_j} ℓ_i``.
    Then ``F̂ = λI + UUᵀ`` and ``θ ← θ + η F̂⁻¹ g``. ``k = 1`` is SMAC exactly;
    ``k = N`` gives ``F̂ = λI + (1/N) Σ ℓ_i ℓ_iᵀ``, the exact damped empirical Fisher.
    ``g`` and ``U`` are the rows of one kernel call with weights :meth:`group_weights`; η comes from
    the step-size rule (:mod:`natpg.updates.step_size`).
    """

    label = "woodbury"

    def __init__(self, policy: Actor | ScoreKernel, lr: float, damping: float, rank: int, ent_coef: float = 0.0,
                 scores: KernelChoice | None = None, step_size: StepSize | None = None) -> None:
        super().__init__(policy, lr, ent_coef, scores, step_size)
        if not damping > 0:
            raise ValueError(f"damping must be > 0, got {damping!r}")
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank!r}")
        self.damping = float(damping)
        self.rank = int(rank)

    def group_weights(self, n: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
        """``(k, n)`` matrix whose row j averages group j and scales by 1/√k (see :func:`group_weights`)."""
        return group_weights(n, self.rank, dtype, device)

    def step(self, batch: Any) -> UpdateInfo:
        """One rank-k Woodbury update of the actor on ``batch`` (see :meth:`ActorUpdate.step`)."""
        weights = self.group_weights(len(batch), batch.advantages.dtype, self.flat.device)
        rows, logp = self.scores.rows(batch, weights, self.ent_coef)
        loss = policy_loss(logp, batch.advantages)
        g, U = rows[0], rows[1:].T
        x = woodbury_solve(g, U, self.damping)
        out = self.move(self.lr * x if self.step_size.folds_lr else x, batch)
        return UpdateInfo(actor_loss=loss, update_norm=out.norm, skipped=int(bool(out.reason)), skip_reason=out.reason,
                          extras=out.extras)


def group_weights(n: int, k: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """``(k, n)`` matrix whose row j averages the j-th of k consecutive groups of n samples and scales by 1/√k.

    ``W ℓ`` is then ``Uᵀ``, the k columns of the Woodbury factor (class docstring of :class:`WoodburyUpdate`).
    """
    if k > n:
        raise ValueError(f"rank k={k} exceeds the batch length N={n}")
    w = torch.zeros(k, n, dtype=dtype, device=device)
    size, extra = divmod(n, k)  # the first n mod k groups hold one sample more (as torch.tensor_split)
    start = 0
    for j in range(k):
        stop = start + size + (j < extra)
        w[j, start:stop] = 1.0 / ((stop - start) * math.sqrt(k))
        start = stop
    return w
