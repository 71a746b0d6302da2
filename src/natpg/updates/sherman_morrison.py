"""SMAC: rank-1 damped empirical Fisher, solved in closed form (Sherman–Morrison)."""

from __future__ import annotations

import math

import numpy as np
import torch

from natpg.curvature import sherman_morrison_solve
from natpg.policies import Actor
from natpg.updates.base import ActorBatch, ActorUpdate, UpdateInfo, flatten


class ShermanMorrisonUpdate(ActorUpdate):
    r"""SMAC's actor step (docs/method.md §2).

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
        if b == 1 and self.ent_coef == 0:
            info = self._single_sample_steps(batch)
            if info is not None:
                return info
        dtype = batch.advantages.dtype
        total = torch.zeros(self.n_params, dtype=dtype) if b < n else None
        losses, skipped, reason = [], 0, ""
        for start in range(0, n, b):
            mb = batch.slice(start, start + b)
            weights = torch.full((1, b), 1.0 / b, dtype=dtype)
            rows, loss = self.batched_scores(mb, weights)
            g, score_mean = rows[0], rows[1]
            step = sherman_morrison_solve(g, score_mean, self.damping, scale=self.lr, out=g)  # g's row is scratch
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

    def _single_sample_steps(self, batch: ActorBatch) -> UpdateInfo | None:
        r"""Algorithm 1 (B = 1) on the per-sample fast path; ``None`` if the actor has none.

        For ``i = 1..N`` in order, at the current θ: ``ℓ_i`` from the actor's
        hand-derived backward pass (:meth:`natpg.policies.NumpyPolicy.score`),
        ``g_i = A_i ℓ_i`` and ``θ ← θ + η (λI + ℓ_i ℓ_iᵀ)⁻¹ g_i``, which for ``u = ℓ_i``
        is the Sherman–Morrison closed form ``θ ← θ + η A_i ℓ_i / (λ + ℓ_iᵀ ℓ_i)``
        (docs/method.md §2; the identity ``(g − u uᵀg/(λ+uᵀu))/λ = A ℓ/(λ+ℓᵀℓ)`` for ``g = A ℓ``).
        Nothing is batched: each step sees the θ left by the previous one. What is
        saved is per-step overhead (autograd graph, Distribution objects, slicing,
        small-tensor dispatch), not arithmetic: θ lives in one flat array during the
        loop (the policy reads it through views), so a step is one multiply and one add
        over d, and the parameters receive θ once at the end (≈ 27 µs a sample on a
        64-64 HalfCheetah actor, d = 5,708, against 45 µs with a per-parameter update).
        """
        if [id(p) for p in self.params] != [id(p) for p in self.actor.parameters()]:
            return None
        obs, actions, adv = batch.obs.numpy(), batch.actions.numpy(), batch.advantages.numpy()
        numpy_policy = getattr(self.actor, "numpy_policy", None)
        if numpy_policy is None or obs.dtype != adv.dtype:
            return None
        # θ as one flat array that the NumPy policy reads through views: a step is one multiply and one
        # add over d, and the parameters get θ back once at the end.
        theta = flatten([p.detach() for p in self.params]).numpy()
        policy = numpy_policy(obs.dtype, theta=theta)
        if policy is None:
            return None
        start = theta.copy()
        ell = np.empty_like(theta)
        step = np.empty_like(theta)
        lr, damping = self.lr, self.damping
        loss_sum, skipped, reason = 0.0, 0, ""
        # A non-finite sample is skipped and counted below; NumPy need not warn about it as well.
        with np.errstate(invalid="ignore", over="ignore"):
            for i in range(len(batch)):
                logp = policy.score(obs[i], actions[i], ell)
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
        with torch.no_grad():
            offset = 0
            for p in self.params:
                p.copy_(torch.from_numpy(theta[offset:offset + p.numel()]).view_as(p))
                offset += p.numel()
        np.subtract(theta, start, out=step)
        return UpdateInfo(actor_loss=loss_sum / len(batch), update_norm=float(np.linalg.norm(step)),
                          skipped=skipped, skip_reason=reason, extras={"n_substeps": len(batch)})
