"""The interface every actor-update rule implements, and the helpers they share."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from natpg.policies import Actor


@dataclass
class ActorBatch:
    """What an actor update needs: N samples in time order (flattened over env copies)."""

    obs: Tensor         #: ``(N, obs_dim)`` float32
    actions: Tensor     #: ``(N,)`` int64 or ``(N, act_dim)`` float32
    advantages: Tensor  #: ``(N,)`` float32

    def __len__(self) -> int:
        return int(self.advantages.shape[0])

    def slice(self, start: int, stop: int) -> "ActorBatch":
        return ActorBatch(self.obs[start:stop], self.actions[start:stop], self.advantages[start:stop])


@dataclass
class UpdateInfo:
    """What an update reports. Scalars only; the trainer logs them under ``train/``."""

    actor_loss: float
    """``-(1/N) Σ log π(a_i|s_i) A_i`` before the update (averaged over mini-batches for B < T)."""
    update_norm: float
    """``‖θ_new − θ_old‖₂`` (0 when the update was skipped)."""
    skipped: int = 0
    """Sub-steps skipped because a non-finite value would have reached θ."""
    skip_reason: str = ""
    extras: dict[str, float] = field(default_factory=dict)


class ActorUpdate(abc.ABC):
    """One actor-update rule. Subclasses implement :meth:`step` and nothing else is required.

    The trainer calls ``step(batch)`` once per iteration and never needs to know which
    rule it runs. ``state_dict``/``load_state_dict`` carry any state across checkpoints.
    """

    def __init__(self, actor: Actor, lr: float, ent_coef: float = 0.0) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        self.actor = actor
        self.params: list[nn.Parameter] = [p for p in actor.parameters() if p.requires_grad]
        self.lr = float(lr)
        self.ent_coef = float(ent_coef)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @abc.abstractmethod
    def step(self, batch: ActorBatch) -> UpdateInfo:
        """Move the actor's parameters once, using ``batch``."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - optional hook
        pass

    # ------------------------------------------------------------------ shared helpers

    def per_sample_outputs(self, batch: ActorBatch) -> tuple[Tensor, Tensor | None]:
        """``log π(a_i|s_i)`` and (if ``ent_coef > 0``) per-sample entropies, with graph."""
        dist = self.actor.distribution(batch.obs)
        logp = dist.log_prob(batch.actions)
        ent = dist.entropy() if self.ent_coef > 0 else None
        return logp, ent

    def objective(self, batch: ActorBatch) -> tuple[Tensor, Tensor]:
        """``J = (1/N) Σ log π_i A_i + c·mean(H_i)`` (to be maximised) and the mean log-prob."""
        logp, ent = self.per_sample_outputs(batch)
        j = (logp * batch.advantages).mean()
        if ent is not None:
            j = j + self.ent_coef * ent.mean()
        return j, logp

    def policy_gradient(self, batch: ActorBatch) -> tuple[Tensor, float]:
        """Flat ``g = ∇_θ J`` and the pre-update actor loss ``-(1/N) Σ log π_i A_i``."""
        j, logp = self.objective(batch)
        grads = torch.autograd.grad(j, self.params)
        loss = -float((logp.detach() * batch.advantages).mean())
        return flatten(grads), loss

    def batched_scores(self, batch: ActorBatch, weights: Tensor) -> tuple[Tensor, float]:
        """Rows ``[g; w_1ᵀ ℓ; …; w_kᵀ ℓ]`` from **one** batched vector-Jacobian product.

        ``g`` is the policy gradient (entropy bonus included) and row ``j+1`` is
        ``Σ_i weights[j, i] ℓ_i`` with ``ℓ_i = ∇_θ log π(a_i|s_i)``. Both come from the
        same per-sample log-probabilities: autograd back-propagates the stacked
        cotangents together (``is_grads_batched``) instead of running k+1 passes.

        Returns:
            ``(k+1, d)`` tensor and the pre-update actor loss.
        """
        logp, ent = self.per_sample_outputs(batch)
        n = len(batch)
        k = weights.shape[0]
        adv = batch.advantages
        if ent is None:
            outputs = logp
            cot = torch.cat([(adv / n).unsqueeze(0), weights], dim=0)
        else:
            outputs = torch.cat([logp, ent])
            top = torch.cat([adv / n, torch.full_like(adv, self.ent_coef / n)])
            cot = torch.cat([top.unsqueeze(0), torch.cat([weights, torch.zeros(k, n, dtype=weights.dtype)], 1)], 0)
        grads = torch.autograd.grad(outputs, self.params, grad_outputs=cot, is_grads_batched=True)
        rows = torch.cat([gr.reshape(k + 1, -1) for gr in grads], dim=1)
        loss = -float((logp.detach() * adv).mean())
        return rows, loss

    @torch.no_grad()
    def apply(self, step: Tensor) -> tuple[float, str]:
        """``θ ← θ + step`` unless ``step`` has a non-finite entry. Returns (norm, skip reason)."""
        if not bool(torch.isfinite(step).all()):
            return 0.0, "non-finite step"
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(step[offset:offset + n].view_as(p))
            offset += n
        return float(step.norm()), ""


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])
