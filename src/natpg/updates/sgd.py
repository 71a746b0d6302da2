"""AC-SGD: plain policy-gradient ascent, ``θ ← θ + η g``."""

from __future__ import annotations

from natpg.updates.base import ActorBatch, ActorUpdate, UpdateInfo


class SGDUpdate(ActorUpdate):
    """``θ ← θ + η g`` with ``g = (1/N) Σ ℓ_i A_i`` (docs/method.md §2, AC-SGD)."""

    def step(self, batch: ActorBatch) -> UpdateInfo:
        g, loss = self.policy_gradient(batch)
        norm, reason = self.apply(self.lr * g)
        return UpdateInfo(actor_loss=loss, update_norm=norm, skipped=int(bool(reason)), skip_reason=reason)
