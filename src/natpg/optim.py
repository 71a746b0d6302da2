r"""Drop-in natural-gradient optimizers for any PyTorch policy-gradient code.

Each optimizer takes what a policy-gradient loop has at hand — the per-sample
log-probabilities ``log π_θ(a_i|s_i)`` (still attached to the graph) and the
advantages ``A_i`` — and moves the parameters by one natural-gradient step
(docs/method.md §2) with ascent on the return:

================  ===============================================  ===================
optimizer         step                                             cost in d
================  ===============================================  ===================
:class:`SMNG`     ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g``  (Sherman–Morrison)   O(d)
:class:`WoodburyNG` ``θ ← θ + η (λI + UUᵀ)⁻¹ g``  (Woodbury, rank k)  O(kd + k³)
:class:`NaturalCG`  ``θ ← θ + η CG(F + λI, g)`` (true Fisher)       O(iters · d)
================  ===============================================  ===================

with ``g = (1/N) Σ ℓ_i A_i``, ``ℓ_i = ∇_θ log π_θ(a_i|s_i)`` and ``ℓ̄ = (1/N) Σ ℓ_i``.
The math is not repeated here: each optimizer drives the matching update rule of
:mod:`natpg.updates` (which calls the solvers of :mod:`natpg.curvature`), fed with
the caller's log-probabilities instead of a natpg actor.

Example:
    >>> import torch
    >>> policy = torch.nn.Linear(4, 2)
    >>> opt = SMNG(policy.parameters(), lr=0.01, damping=0.1)
    >>> obs = torch.randn(32, 4)
    >>> dist = torch.distributions.Categorical(logits=policy(obs))
    >>> actions = dist.sample()
    >>> info = opt.step(dist.log_prob(actions), advantages=torch.randn(32))
    >>> info.update_norm > 0
    True
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor
from torch.distributions import Distribution

from natpg.updates import ActorBatch, NaturalCGUpdate, ShermanMorrisonUpdate, UpdateInfo, WoodburyUpdate
from natpg.updates.base import ActorUpdate


class _Parameters:
    """Stands in for an actor: all an update rule needs from it is ``parameters()`` (and, for CG, ``distribution``)."""

    def __init__(self, params: list[Tensor]) -> None:
        self._params = params
        self.dist: Distribution | None = None

    def parameters(self) -> Iterable[Tensor]:
        return iter(self._params)

    def distribution(self, obs: Tensor) -> Distribution:  # noqa: ARG002 - the caller already evaluated it
        assert self.dist is not None
        return self.dist


class _GivenLogProbs:
    """Mixin for an :class:`ActorUpdate`: the per-sample log-probabilities are the caller's, not recomputed."""

    log_probs: Tensor

    def per_sample_outputs(self, batch: ActorBatch) -> tuple[Tensor, None]:  # noqa: ARG002
        return self.log_probs, None


class _SMFromLogProbs(_GivenLogProbs, ShermanMorrisonUpdate):
    pass


class _WoodburyFromLogProbs(_GivenLogProbs, WoodburyUpdate):
    pass


class _CGFromLogProbs(_GivenLogProbs, NaturalCGUpdate):
    def policy_gradient(self, batch: ActorBatch) -> tuple[Tensor, float]:
        # The caller's log-probs and distribution share one graph: keep it for the Fisher-vector products.
        j, logp = self.objective(batch)
        grads = torch.autograd.grad(j, self.params, retain_graph=True)
        return torch.cat([gr.reshape(-1) for gr in grads]), -float((logp.detach() * batch.advantages).mean())


class _NaturalGradientOptimizer(torch.optim.Optimizer):
    """Shared plumbing: one parameter group, hyper-parameters read from it at every step."""

    _hyper: tuple[str, ...] = ("lr",)

    def __init__(self, params, defaults: dict) -> None:
        for name, value in defaults.items():
            if name in ("lr", "damping") and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name}={value!r} must be a number > 0")
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} takes one parameter group (the policy's parameters), "
                             f"got {len(self.param_groups)}: the natural gradient couples all of them")
        self._actor = _Parameters(self.param_groups[0]["params"])
        self._update = self._make_update(self._actor, self.param_groups[0])

    def _make_update(self, actor: _Parameters, group: dict) -> ActorUpdate:
        raise NotImplementedError

    def _run(self, log_probs: Tensor, advantages: Tensor) -> UpdateInfo:
        if not isinstance(log_probs, Tensor) or log_probs.dim() != 1 or not log_probs.requires_grad:
            raise ValueError("log_probs must be a 1-D tensor of per-sample log π(a_i|s_i) that requires grad "
                             f"(got {type(log_probs).__name__} of shape {tuple(getattr(log_probs, 'shape', ()))})")
        advantages = torch.as_tensor(advantages).detach().to(log_probs.dtype).reshape(-1)
        if advantages.shape != log_probs.shape:
            raise ValueError(f"advantages has {advantages.numel()} entries, log_probs {log_probs.numel()}")
        group = self.param_groups[0]
        for name in self._hyper:  # follow LR schedulers and load_state_dict
            setattr(self._update, name, float(group[name]))
        self._update.log_probs = log_probs
        try:
            return self._update.step(ActorBatch(log_probs.detach(), log_probs.detach(), advantages))
        finally:
            del self._update.log_probs
            self._actor.dist = None


class SMNG(_NaturalGradientOptimizer):
    r"""Sherman–Morrison natural gradient: ``θ ← θ + η (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` in O(d) (SMAC's actor step).

    ``g`` and ``ℓ̄`` come from one batched backward pass of the given log-probabilities;
    the solve is :func:`natpg.curvature.sherman_morrison_solve`.

    Args:
        params: the policy's parameters (one group).
        lr: step size η > 0.
        damping: λ > 0.
    """

    _hyper = ("lr", "damping")

    def __init__(self, params, lr: float = 5e-3, damping: float = 0.1) -> None:
        super().__init__(params, {"lr": lr, "damping": damping})

    def _make_update(self, actor, group):
        return _SMFromLogProbs(actor, group["lr"], group["damping"])

    def step(self, log_probs: Tensor, advantages: Tensor) -> UpdateInfo:  # type: ignore[override]
        """One ascent step from per-sample ``log π(a_i|s_i)`` (with graph) and advantages ``A_i``."""
        return self._run(log_probs, advantages)


class WoodburyNG(_NaturalGradientOptimizer):
    r"""Rank-k natural gradient: ``θ ← θ + η (λI + UUᵀ)⁻¹ g``, U = the k group-mean scores / √k.

    The batch (in the order given) is split into ``rank`` consecutive groups; ``rank = 1``
    is :class:`SMNG`, ``rank = N`` the exact damped empirical-Fisher step.
    The solve is :func:`natpg.curvature.woodbury_solve`, O(kd + k³).

    Args:
        params: the policy's parameters (one group).
        lr: step size η > 0.
        damping: λ > 0.
        rank: k >= 1 (at most the batch size).
    """

    _hyper = ("lr", "damping")

    def __init__(self, params, lr: float = 5e-3, damping: float = 0.1, rank: int = 8) -> None:
        if not (isinstance(rank, int) and rank >= 1):
            raise ValueError(f"rank={rank!r} must be an integer >= 1")
        super().__init__(params, {"lr": lr, "damping": damping, "rank": rank})

    def _make_update(self, actor, group):
        return _WoodburyFromLogProbs(actor, group["lr"], group["damping"], group["rank"])

    def step(self, log_probs: Tensor, advantages: Tensor) -> UpdateInfo:  # type: ignore[override]
        """One ascent step from per-sample ``log π(a_i|s_i)`` (with graph) and advantages ``A_i``."""
        self._update.rank = int(self.param_groups[0]["rank"])
        return self._run(log_probs, advantages)


class NaturalCG(_NaturalGradientOptimizer):
    r"""Natural gradient with the true Fisher: ``x ≈ (F + λI)⁻¹ g`` by conjugate gradient, ``θ ← θ + η x``.

    ``F`` is the Hessian of the mean ``KL(π_old ‖ π_θ)`` at θ (TRPO's Fisher), applied by
    :func:`natpg.curvature.damped_hvp`; no matrix is formed. The step therefore also
    needs the action distribution the log-probabilities came from (a ``Categorical`` or
    an ``Independent(Normal)``, still attached to the graph).

    Args:
        params: the policy's parameters (one group).
        lr: step size η > 0 (ignored when ``max_kl`` is set).
        damping: λ > 0 added to F.
        cg_iters: conjugate-gradient iterations.
        max_kl: if set, scale the step to this KL instead (TRPO's rule).
    """

    _hyper = ("lr",)

    def __init__(self, params, lr: float = 1e-2, damping: float = 0.1, cg_iters: int = 10,
                 max_kl: float | None = None) -> None:
        if not (isinstance(cg_iters, int) and cg_iters >= 1):
            raise ValueError(f"cg_iters={cg_iters!r} must be an integer >= 1")
        if max_kl is not None and not max_kl > 0:
            raise ValueError(f"max_kl={max_kl!r} must be > 0 or None")
        super().__init__(params, {"lr": lr, "damping": damping, "cg_iters": cg_iters, "max_kl": max_kl})

    def _make_update(self, actor, group):
        return _CGFromLogProbs(actor, group["lr"], group["damping"], group["cg_iters"], group["max_kl"])

    def step(self, log_probs: Tensor, advantages: Tensor, dist: Distribution) -> UpdateInfo:  # type: ignore[override]
        """One ascent step; ``dist`` is the distribution with ``log_probs = dist.log_prob(actions)``."""
        group = self.param_groups[0]
        self._update.cg_damping = float(group["damping"])
        self._update.cg_iters = int(group["cg_iters"])
        self._update.max_kl = group["max_kl"]
        self._actor.dist = dist
        return self._run(log_probs, advantages)


__all__ = ["SMNG", "WoodburyNG", "NaturalCG"]
