"""AC-SGD: plain policy-gradient ascent, ``θ ← θ + η g``."""

from __future__ import annotations

from typing import Any, ClassVar

from natpg.scores import KernelChoice
from natpg.updates.base import ScoreRule, UpdateInfo, policy_loss


class SGDUpdate(ScoreRule):
    """``θ ← θ + η g`` with ``g = (1/N) Σ ℓ_i A_i`` (docs/method.md §2, AC-SGD); η by the step-size rule."""

    default_scores: ClassVar[KernelChoice] = "autograd"
    label = "ac-sgd"

    def step(self, batch: Any) -> UpdateInfo:
        """One AC-SGD update of the actor on ``batch`` (see :meth:`ActorUpdate.step`)."""
        g, logp = self.scores.gradient(batch, self.ent_coef)
        loss = policy_loss(logp, batch.advantages)
        out = self.move(self.lr * g if self.step_size.folds_lr else g, batch)
        return UpdateInfo(actor_loss=loss, update_norm=out.norm, skipped=int(bool(out.reason)), skip_reason=out.reason,
                          extras=out.extras)
