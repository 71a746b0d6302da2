"""AC-Adam: Adam (torch defaults except lr) on the policy-gradient loss, fed with ``g`` by the score kernel."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from natpg.guards import guarded_step
from natpg.policies import Actor
from natpg.scores import KernelChoice, ScoreKernel
from natpg.updates.base import ScoreRule, UpdateInfo, policy_loss


class AdamUpdate(ScoreRule):
    """One Adam step on ``L = -(1/N) Σ log π(a_i|s_i) A_i`` per iteration (docs/method.md §2, AC-Adam).

    The kernel gives ``g = ∇J = -∇L``; each parameter's ``.grad`` is set to its slice of
    ``-g`` and :class:`torch.optim.Adam` takes the step.
    """

    default_scores: ClassVar[KernelChoice] = "autograd"
    label = "ac-adam"

    def __init__(self, policy: Actor | ScoreKernel, lr: float, ent_coef: float = 0.0,
                 scores: KernelChoice | None = None) -> None:
        super().__init__(policy, lr, ent_coef, scores)
        self.optimizer = torch.optim.Adam(self.params, lr=self.lr)

    def step(self, batch: Any) -> UpdateInfo:
        """One Adam step through :func:`natpg.guards.guarded_step`.

        The actor's parameters and Adam's moments never hold a non-finite value (such a step is
        skipped and reported).
        """
        g, logp = self.scores.gradient(batch, self.ent_coef)
        loss = policy_loss(logp, batch.advantages)
        for p, grad in zip(self.params, self.flat.views(g.neg())):
            p.grad = grad
        before = self.flat.get()
        reason = guarded_step(self.optimizer)
        if reason:
            self.optimizer.zero_grad(set_to_none=True)
            return UpdateInfo(actor_loss=loss, update_norm=0.0, skipped=1, skip_reason=reason)
        return UpdateInfo(actor_loss=loss, update_norm=float((self.flat.get() - before).norm()))

    def state_dict(self) -> dict:
        """The Adam optimizer's state (see :meth:`ActorUpdate.state_dict`)."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the Adam optimizer's state saved by :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
