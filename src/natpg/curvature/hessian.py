"""Damped Hessian-vector products by double back-propagation."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from natpg.flat import flatten


def damped_hvp(f: Tensor, params: Sequence[Tensor], damping: float) -> Callable[[Tensor], Tensor]:
    r"""Return the matrix-free product ``v ↦ (∇²f + λI) v`` at the current ``params``.

    ``f`` is a scalar built (with autograd) from ``params``. The gradient is taken
    once with ``create_graph=True``; each product is then one more backward pass,
    ``∇(∇f · v)``, so no ``d × d`` matrix is formed.

    When ``f`` is the mean ``KL(p_old ‖ p_θ)`` of a distribution family evaluated at
    ``θ = θ_old``, this Hessian is exactly the Fisher information of the family (its
    gradient vanishes there, so only the Gauss–Newton term survives): this is the
    Fisher-vector product used by natural-gradient and TRPO-style methods.

    Args:
        f: scalar tensor that depends on ``params``.
        params: tensors requiring grad; vectors ``v`` are their flat concatenation. A parameter
            that ``f`` does not reach has zero rows and columns in ``∇²f``.
        damping: ``λ >= 0`` added on the diagonal.

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> hvp = damped_hvp((w ** 2).sum() * 1.5, [w], damping=0.5)   # ∇² = 3I
        >>> hvp(torch.tensor([1.0, -1.0]))
        tensor([ 3.5000, -3.5000])
    """
    if not damping >= 0:
        raise ValueError(f"damping must be >= 0, got {damping!r}")
    params = list(params)
    grads = torch.autograd.grad(f, params, create_graph=True, allow_unused=True)
    flat_grad = flatten([p.new_zeros(p.shape) if gr is None else gr for gr, p in zip(grads, params)])
    lam = float(damping)
    if not flat_grad.requires_grad:  # f is linear in (or does not reach) every parameter: ∇²f = 0
        return lambda v: lam * v

    def matvec(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(flat_grad, params, grad_outputs=v, retain_graph=True, allow_unused=True)
        out = flatten([p.new_zeros(p.shape) if h is None else h for h, p in zip(hv, params)]).detach()
        return out + lam * v if lam else out

    return matvec
