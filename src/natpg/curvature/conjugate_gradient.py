"""Conjugate gradient over a matrix-vector callable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor


def _eps(t: Tensor) -> float:
    """The smallest positive normal number of ``t``'s dtype, added to every CG denominator so that none can be 0.

    It leaves any representable non-tiny denominator unchanged (an absolute epsilon such as
    1e-10 would stall CG once ``pᵀAp`` falls below it).
    """
    return torch.finfo(t.dtype).tiny


@dataclass(frozen=True)
class CGResult:
    """Outcome of :func:`conjugate_gradient`.

    Attributes:
        x: the approximate solution.
        iterations: matrix-vector products spent.
        residual_norm: ``‖b - A x‖`` as tracked by the recursion.
        converged: the residual fell below ``tol``.
        nonpositive_curvature: stopped because a direction had ``pᵀAp ≤ 0``
            (A is not positive definite along ``p``); ``x`` is the last good iterate.
    """

    x: Tensor
    iterations: int
    residual_norm: float
    converged: bool
    nonpositive_curvature: bool


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    max_iter: int = 10,
    tol: float = 1e-10,
) -> CGResult:
    r"""Approximately solve ``A x = b`` for symmetric positive definite ``A``.

    Standard CG from ``x₀ = 0``: with residual ``r`` and direction ``p``,
    ``α = rᵀr / pᵀAp``, ``x ← x + αp``, ``r ← r − αAp``, ``β = r'ᵀr' / rᵀr``,
    ``p ← r' + βp``. In exact arithmetic it converges in at most ``d`` steps;
    each step costs one ``matvec``.

    Safeguards: every division carries an epsilon (the dtype's smallest normal
    number, so it never biases a step); if a direction has
    non-positive curvature ``pᵀAp ≤ 0`` the loop stops and returns the last iterate
    (for ``x₀ = 0`` that is ``0``, never a step of the wrong sign).

    Args:
        matvec: ``v ↦ A v`` for vectors of ``b``'s shape.
        b: right-hand side, shape ``(d,)``.
        max_iter: maximum number of matrix-vector products (>= 1).
        tol: stop when ``‖r‖ ≤ tol``.

    Example:
        >>> A = torch.tensor([[4.0, 1.0], [1.0, 3.0]])
        >>> res = conjugate_gradient(lambda v: A @ v, torch.tensor([1.0, 2.0]), max_iter=2)
        >>> torch.allclose(A @ res.x, torch.tensor([1.0, 2.0]), atol=1e-5)
        True
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
    eps = _eps(b)
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    iters = 0
    nonpositive = False
    converged = bool(rr.sqrt() <= tol)
    while not converged and iters < max_iter:
        Ap = matvec(p)
        iters += 1
        pAp = torch.dot(p, Ap)
        if not bool(pAp > 0):
            nonpositive = True
            break
        alpha = rr / (pAp + eps)
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = torch.dot(r, r)
        converged = bool(rr_new.sqrt() <= tol)
        p = r + (rr_new / (rr + eps)) * p
        rr = rr_new
    return CGResult(x=x, iterations=iters, residual_norm=float(rr.sqrt()), converged=converged,
                    nonpositive_curvature=nonpositive)
