"""AC-Adam: Adam (torch defaults except lr) on the policy-gradient loss."""

from __future__ import annotations

import torch

from natpg.guards import guarded_step
from natpg.policies import Actor
from natpg.updates.base import ActorBatch, ActorUpdate, UpdateInfo, flatten


class AdamUpdate(ActorUpdate):
    """One Adam step on ``-(1/N) Σ log π(a_i|s_i) A_i`` per iteration (docs/method.md §2, AC-Adam)."""

    def __init__(self, actor: Actor, lr: float, ent_coef: float = 0.0) -> None:
        super().__init__(actor, lr, ent_coef)
        self.optimizer = torch.optim.Adam(self.params, lr=self.lr)

    def step(self, batch: ActorBatch) -> UpdateInfo:
        """One Adam step through :func:`natpg.guards.guarded_step`: the actor's parameters and
        Adam's moments never hold a non-finite value (such a step is skipped and reported)."""
        j, logp = self.objective(batch)
        loss = -float((logp.detach() * batch.advantages).mean())
        self.optimizer.zero_grad(set_to_none=True)
        (-j).backward()
        before = flatten([p.detach() for p in self.params]).clone()
        reason = guarded_step(self.optimizer)
        if reason:
            self.optimizer.zero_grad(set_to_none=True)
            return UpdateInfo(actor_loss=loss, update_norm=0.0, skipped=1, skip_reason=reason)
        after = flatten([p.detach() for p in self.params])
        return UpdateInfo(actor_loss=loss, update_norm=float((after - before).norm()))

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
