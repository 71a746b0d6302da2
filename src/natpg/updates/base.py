"""The interface every actor-update rule implements, and the helpers they share."""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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
        self._workspace: dict[str, Tensor] = {}

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
        adv = batch.advantages
        n = len(batch)
        k = weights.shape[0]
        cot = torch.cat([(adv / n).unsqueeze(0), weights], dim=0)
        if self.ent_coef == 0:
            fast = self._mlp_score_contractions(batch, cot)
            if fast is not None:
                rows, logp = fast
                return rows, -float((logp.detach() * adv).mean())
        logp, ent = self.per_sample_outputs(batch)
        if ent is None:
            outputs = logp
        else:
            outputs = torch.cat([logp, ent])
            top = torch.cat([adv / n, torch.full_like(adv, self.ent_coef / n)])
            cot = torch.cat([top.unsqueeze(0), torch.cat([weights, torch.zeros(k, n, dtype=weights.dtype)], 1)], 0)
        grads = torch.autograd.grad(outputs, self.params, grad_outputs=cot, is_grads_batched=True)
        rows = torch.cat([gr.reshape(k + 1, -1) for gr in grads], dim=1)
        loss = -float((logp.detach() * adv).mean())
        return rows, loss

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A scratch tensor kept across updates (contents undefined), reallocated only when its shape changes.

        Every update of a run has the same shapes, so the fast path allocates its
        activations, signals and score rows once: a fresh multi-MiB tensor costs a page
        fault per 4 KiB on first touch (about 1.5 ms for 4 MB here), as much as the pass
        that fills it.
        """
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._workspace[name] = torch.empty(shape, dtype=dtype)
        return buf

    def _mlp_score_contractions(self, batch: ActorBatch, cot: Tensor) -> tuple[Tensor, Tensor] | None:
        r"""Rows ``Σ_i cot[j, i] ℓ_i`` for a Linear/Tanh actor, from one hand-written backward pass; else ``None``.

        For a linear layer ``z = W a + b``, the score of sample ``i`` is
        ``∂ log π_i/∂W = δ_i a_iᵀ`` and ``∂ log π_i/∂b = δ_i`` with the per-sample
        signal ``δ_i = ∂ log π_i / ∂z_i``; for the Gaussian's ``log σ`` it is
        ``∂ log π_i / ∂(log σ)_i``. The head's signals come in closed form
        (:meth:`natpg.policies.Actor.head_signals`) and the chain rule
        ``δ_{l-1} = (δ_l W_l) ⊙ (1 − h_{l-1}²)`` carries them down: the matrix
        products autograd's backward would do, without its graph, Distribution
        objects or per-node bookkeeping. Each row is then a contraction

        .. math:: \sum_i c_{ji}\, δ_i a_i^\top = (c_j ⊙ δ)^\top A,

        one matrix product of cost O(N·d) per row. Autograd's batched VJP would
        instead repeat the backward chain once per row. Memory is O(rows·d + N·width).

        Returns:
            ``(rows, log_probs)``: ``(m, d)`` in :attr:`params` order and ``(N,)``.
        """
        linear_layers = getattr(self.actor, "linear_layers", None)  # stand-in actors (natpg.optim) have none
        layers = linear_layers() if linear_layers is not None else None
        if layers is None:
            return None
        owned = [t for lin in layers for t in (lin.weight, lin.bias) if t is not None]
        log_std = self.actor.log_std
        if log_std is not None:
            owned.append(log_std)
        if {id(p) for p in owned} != {id(p) for p in self.params} or len(owned) != len(self.params):
            return None
        n, dtype = len(batch), cot.dtype
        with torch.no_grad():
            inputs = []  # the input of each linear layer: the observation, then each tanh output
            x = batch.obs
            last = len(layers) - 1
            for i, lin in enumerate(layers):
                inputs.append(x)
                out = self._buffer(f"z{i}", (n, lin.out_features), lin.weight.dtype)
                if lin.bias is None:
                    x = torch.mm(x, lin.weight.T, out=out)
                else:
                    x = torch.addmm(lin.bias, x, lin.weight.T, out=out)
                if i < last:
                    x.tanh_()
            logp, delta, log_std_signal = self.actor.head_signals(x, batch.actions)
            # Back-propagate by hand: δ_{l-1} = (δ_l W_l) ⊙ (1 − h_{l-1}²) (tanh_backward fuses the product).
            signals = [delta]
            for i in range(last, 0, -1):
                back = self._buffer(f"delta{i - 1}", inputs[i].shape, inputs[i].dtype)
                torch.mm(signals[0], layers[i].weight, out=back)
                signals.insert(0, torch.ops.aten.tanh_backward.grad_input(back, inputs[i], grad_input=back))
        if log_std is not None:
            signals.append(log_std_signal)
        # Write each contraction straight into its slice of the (m, d) result (no concatenation copy).
        # The result is a workspace buffer: valid until this update's next call.
        m = cot.shape[0]
        rows = self._buffer("rows", (m, self.n_params), dtype)
        views = {}
        offset = 0
        for p in self.params:
            views[id(p)] = rows[:, offset:offset + p.numel()]
            offset += p.numel()
        # A row that is one constant c on a run of samples s..e (ℓ̄ = (1/N) Σ ℓ_i, or a Woodbury group
        # mean) is c·δ[s:e]ᵀA[s:e]: no N×width temporary, and k group rows cost one pass over N in all.
        blocks = [_constant_block(cot[j]) for j in range(m)]
        scratch = self._buffer("scratch", (max(t.numel() for t in inputs + list(signals)),), dtype)
        for lin, a, delta in zip(layers, inputs, signals):
            w_rows = views[id(lin.weight)]
            for j in range(m):  # (c_j ⊙ δ)ᵀ A, scaling whichever factor is narrower
                out = w_rows[j].view_as(lin.weight)
                if blocks[j] is not None:
                    s, e, c = blocks[j]
                    torch.mm(delta[s:e].T, a[s:e], out=out).mul_(c)
                elif delta.shape[1] <= a.shape[1]:
                    torch.mm(torch.mul(delta, cot[j, :, None], out=scratch[:delta.numel()].view_as(delta)).T, a,
                             out=out)
                else:
                    torch.mm(delta.T, torch.mul(a, cot[j, :, None], out=scratch[:a.numel()].view_as(a)), out=out)
            if lin.bias is not None:
                torch.mm(cot, delta, out=views[id(lin.bias)])
        if log_std is not None:
            torch.mm(cot, signals[-1], out=views[id(log_std)])
        return rows, logp

    @torch.no_grad()
    def apply(self, step: Tensor) -> tuple[float, str]:
        """``θ ← θ + step`` unless ``step`` has a non-finite entry. Returns (norm, skip reason).

        The check is the step's norm, which the caller reports anyway: it is finite exactly
        when every entry is (and the sum of squares does not overflow, a step no one wants
        either). One pass over d instead of ``isfinite(step).all()``'s three (3 ms at d = 1e6).
        """
        norm = float(torch.linalg.vector_norm(step))
        if not math.isfinite(norm):
            return 0.0, "non-finite step"
        offset = 0
        for p in self.params:
            n = p.numel()
            p.add_(step[offset:offset + n].view_as(p))
            offset += n
        return norm, ""


def _constant_block(row: Tensor) -> tuple[int, int, float] | None:
    """``(s, e, c)`` if ``row`` is ``c`` on ``s..e-1`` and zero elsewhere (``c ≠ 0``), else ``None``."""
    nz = torch.nonzero(row).flatten()
    if len(nz) == 0:
        return None
    s, e = int(nz[0]), int(nz[-1]) + 1
    if e - s != len(nz) or not bool((row[s:e] == row[s]).all()):
        return None
    return s, e, float(row[s])


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector."""
    return torch.cat([t.reshape(-1) for t in tensors])
