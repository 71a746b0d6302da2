"""Closed-form solve with a damped rank-k matrix (the Woodbury identity)."""

from __future__ import annotations

import torch
from torch import Tensor


def woodbury_solve(g: Tensor, U: Tensor, damping: float) -> Tensor:
    r"""Return ``x = (λI + U Uᵀ)⁻¹ g`` for a tall ``U`` of ``k`` columns.

    By the Woodbury identity,

    .. math::

        (λI + UU^\top)^{-1} g = \frac{1}{λ}\Big(g - U\,(λ I_k + U^\top U)^{-1} U^\top g\Big).

    Only the ``k × k`` matrix ``λI_k + UᵀU`` is formed and factorised (Cholesky: it is
    symmetric positive definite for ``λ > 0``). Cost O(k²d + k³) for the Gram matrix
    and O(kd) for the rest; with ``k = 1`` it is exactly Sherman–Morrison.

    Args:
        g: right-hand side, shape ``(d,)``.
        U: factor, shape ``(d, k)``.
        damping: ``λ > 0``.

    Returns:
        The solution, shape ``(d,)``; all NaN if ``U`` or ``g`` holds a non-finite value.

    Example:
        >>> U = torch.tensor([[1.0], [0.0]]); g = torch.tensor([1.0, 2.0])
        >>> woodbury_solve(g, U, damping=1.0)
        tensor([0.5000, 2.0000])
    """
    if not damping > 0:
        raise ValueError(f"damping must be > 0, got {damping!r}")
    if g.dim() != 1 or U.dim() != 2 or U.shape[0] != g.shape[0]:
        raise ValueError(f"need g of shape (d,) and U of shape (d, k), got {tuple(g.shape)} and {tuple(U.shape)}")
    lam = float(damping)
    # Solve in float64 for the small system: the Gram matrix can span many orders of magnitude.
    Ud = U.to(torch.float64)
    gram = Ud.T @ Ud
    gram.diagonal().add_(lam)
    rhs = (Ud.T @ g.to(torch.float64)).unsqueeze(1)
    if not bool(torch.isfinite(gram).all()):
        # Non-finite inputs: return a non-finite result (callers check) instead of failing in LAPACK.
        return torch.full_like(g, float("nan"))
    chol, info = torch.linalg.cholesky_ex(gram)
    if int(info) == 0:
        y = torch.cholesky_solve(rhs, chol).squeeze(1)
    else:  # numerically indefinite (huge columns): fall back to a least-squares solve
        y = torch.linalg.lstsq(gram, rhs).solution.squeeze(1)
    return (g - (U @ y.to(U.dtype))) / lam
