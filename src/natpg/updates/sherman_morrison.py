"""SMAC: rank-1 damped empirical Fisher ``λI + ℓ̄ℓ̄ᵀ``, solved in closed form (Sherman–Morrison), per mini-batch of B."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from natpg.curvature import sherman_morrison_solve
from natpg.policies import Actor
from natpg.scores import KernelChoice, MLPScores, ScoreKernel
from natpg.updates.base import ScoreRule, UpdateInfo, policy_loss
from natpg.updates.step_size import StepSize


class ShermanMorrisonUpdate(ScoreRule):
    r"""SMAC's actor step (docs/method.md §2).

    For each mini-batch of ``B`` consecutive samples, at the current θ:

    .. math::

        \bar ℓ = \frac1B \sum_i ℓ_i,\quad g = \frac1B \sum_i ℓ_i A_i,\quad
        θ ← θ + η\,(λI + \bar ℓ \bar ℓ^\top)^{-1} g

    ``B = N`` (the default) is the batch-mean form used for the paper's main
    results; ``B = 1`` is the paper's Algorithm 1, which reduces to
    ``θ ← θ + η A_i ℓ_i / (λ + ℓ_iᵀ ℓ_i)``. ``g`` and ``ℓ̄`` are the two rows of one
    kernel call (weights ``1/B``). With B = 1 and the MLP kernel
    (:attr:`single_sample_path`) the loop runs on the kernel's NumPy per-sample scores. η comes
    from the step-size rule (:mod:`natpg.updates.step_size`), once per mini-batch; the NumPy
    B = 1 loop serves the plain fixed step only.
    """

    label = "smac"

    def __init__(self, policy: Actor | ScoreKernel, lr: float, damping: float, batch_size: int | None = None,
                 ent_coef: float = 0.0, scores: KernelChoice | None = None, step_size: StepSize | None = None) -> None:
        super().__init__(policy, lr, ent_coef, scores, step_size)
        if not damping > 0:
            raise ValueError(f"damping must be > 0, got {damping!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size!r}")
        self.damping = float(damping)
        self.batch_size = batch_size

    @property
    def single_sample_path(self) -> bool:
        """Whether B = 1 runs on NumPy per-sample scores (else on kernel rows of mini-batches of one)."""
        return isinstance(self.scores, MLPScores) and not self.scores.single_sample_unsupported

    def step(self, batch: Any) -> UpdateInfo:
        """One SMAC update of the actor on ``batch``, mini-batch by mini-batch (see :meth:`ActorUpdate.step`)."""
        n = len(batch)
        b = n if self.batch_size is None else self.batch_size
        if n % b:
            raise ValueError(f"batch_size B={b} must divide the batch length N={n}")
        size = self.step_size
        if b == 1 and self.single_sample_path and size.plain:
            return self._single_sample_steps(batch)
        dtype, device = batch.advantages.dtype, self.flat.device
        # fixed: the sum of the steps taken; otherwise (steps scaled or searched) θ's change, read at the end
        total = torch.zeros(self.n_params, dtype=dtype, device=device) if b < n and size.folds_lr else None
        before = self.flat.get() if b < n and not size.folds_lr else None
        losses, skipped, reason = [], 0, ""
        norm = 0.0
        extras: dict[str, float] = {}
        scale = self.lr if size.folds_lr else 1.0
        for start in range(0, n, b):
            mb = batch if b == n else batch.slice(start, start + b)
            rows, logp = self.scores.rows(mb, torch.full((1, b), 1.0 / b, dtype=dtype, device=device), self.ent_coef)
            g, score_mean = rows[0], rows[1]
            step = sherman_morrison_solve(g, score_mean, self.damping, scale=scale, out=g)  # g's row is scratch
            out = self.move(step, mb)
            norm, why = out.norm, out.reason
            extras.update(out.extras)
            losses.append(policy_loss(logp, mb.advantages))
            if why:
                skipped, reason = skipped + 1, why
            elif total is not None:
                total += step
        if b == n:
            update_norm = norm
        elif total is not None:
            update_norm = float(total.norm())
        else:
            assert before is not None
            update_norm = float((self.flat.get() - before).norm())
        return UpdateInfo(actor_loss=sum(losses) / len(losses), update_norm=update_norm, skipped=skipped,
                          skip_reason=reason, extras={"n_substeps": n // b, **extras})

    def _single_sample_steps(self, batch: Any) -> UpdateInfo:
        r"""Algorithm 1 (B = 1) on the MLP kernel's NumPy per-sample scores.

        For ``i = 1..N`` in order, at the current θ: ``ℓ_i`` (:meth:`natpg.scores.MLPScores.single_sample`),
        ``g_i = A_i ℓ_i`` and ``θ ← θ + η (λI + ℓ_i ℓ_iᵀ)⁻¹ g_i``, which for ``u = ℓ_i`` is the
        Sherman–Morrison closed form ``θ ← θ + η A_i ℓ_i / (λ + ℓ_iᵀ ℓ_i)`` (the identity
        ``(g − u uᵀg/(λ+uᵀu))/λ = A ℓ/(λ+ℓᵀℓ)`` for ``g = A ℓ``). Nothing is batched: each
        step sees the θ left by the previous one. θ lives in one flat array during the loop
        (the kernel reads it through views), so a step is one multiply and one add over d,
        and the parameters receive θ once at the end.
        """
        assert isinstance(self.scores, MLPScores)
        theta = self.flat.get().numpy()
        obs, actions, adv = batch.obs.numpy(), batch.actions.numpy(), batch.advantages.numpy()
        if obs.dtype != theta.dtype or adv.dtype != theta.dtype:
            raise ValueError(f"observations ({obs.dtype}) and advantages ({adv.dtype}) must have the "
                             f"parameters' dtype ({theta.dtype})")
        score = self.scores.single_sample(theta)
        start = theta.copy()
        ell = np.empty_like(theta)
        step = np.empty_like(theta)
        lr, damping = self.lr, self.damping
        loss_sum, skipped, reason = 0.0, 0, ""
        # A non-finite sample is skipped and counted below; NumPy need not warn about it as well.
        with np.errstate(invalid="ignore", over="ignore"):
            for i in range(len(batch)):
                logp = score(obs[i], actions[i], ell)
                a_i = float(adv[i])
                # (λI + ℓℓᵀ)⁻¹ (A ℓ) = A ℓ / (λ + ℓᵀℓ): Sherman–Morrison with u = ℓ, g = A ℓ, in closed form.
                sq = float(ell @ ell)
                c = lr * a_i / (damping + sq)
                loss_sum -= logp * a_i
                # |c ℓ_k| ≤ |c|·‖ℓ‖ for every k, and NaN or ±inf anywhere reaches this bound: one test, no pass over d
                bound = c * math.sqrt(sq) if sq >= 0 else math.nan
                if not math.isfinite(bound):
                    skipped, reason = skipped + 1, "non-finite step"
                    continue
                np.multiply(ell, c, out=step)
                theta += step
        self.flat.set_(torch.from_numpy(theta))
        np.subtract(theta, start, out=step)
        return UpdateInfo(actor_loss=loss_sum / len(batch), update_norm=float(np.linalg.norm(step)),
                          skipped=skipped, skip_reason=reason, extras={"n_substeps": len(batch)})
