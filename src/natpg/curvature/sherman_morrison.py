"""Closed-form solve with a damped rank-1 matrix (the Sherman–Morrison identity)."""

from __future__ import annotations

import torch
from torch import Tensor


def sherman_morrison_solve(g: Tensor, u: Tensor, damping: float, scale: float = 1.0,
                           out: Tensor | None = None) -> Tensor:
    r"""Return ``x = (λI + u uᵀ)⁻¹ g`` without forming a matrix.

    By the Sherman–Morrison identity,

    .. math::

        (λI + uu^\top)^{-1} g = \frac{g}{λ} - \frac{u\,(u^\top g)}{λ^2 + λ\,u^\top u}.

    It is evaluated in the algebraically identical form
    ``x = (g − u · uᵀg / (λ + uᵀu)) / λ``, whose denominator ``λ + uᵀu ≥ λ > 0``
    cannot vanish or underflow (``λ²`` would for tiny λ in float32), so the
    result is finite whenever the inputs are. Its forward error is of the order
    of machine precision times the condition number ``1 + uᵀu/λ``, like any
    stable solve. It costs two dot products and two passes over the result
    (``g − c·u``, then the scaling by ``scale/λ``): O(d) time and memory. Nothing is read back
    to the host, so on an accelerator the solve does not wait for the device.

    Args:
        g: right-hand side, shape ``(d,)``.
        u: the rank-1 factor, shape ``(d,)``. ``u = 0`` gives ``g / λ``.
        damping: ``λ > 0``.
        scale: multiplies the result (a step size), at no extra pass over d.
        out: where to write the result (may be ``g`` itself: the solve then allocates nothing).

    Returns:
        ``scale · x``, shape ``(d,)``, dtype of ``g``. Non-finite inputs give a non-finite result.

    Example:
        >>> g = torch.tensor([1.0, 2.0]); u = torch.tensor([1.0, 0.0])
        >>> sherman_morrison_solve(g, u, damping=1.0)   # (I + e1 e1ᵀ)⁻¹ g
        tensor([0.5000, 2.0000])
    """
    if not damping > 0:
        raise ValueError(f"damping must be > 0, got {damping!r}")
    if g.shape != u.shape or g.dim() != 1:
        raise ValueError(f"g and u must be vectors of the same length, got {tuple(g.shape)} and {tuple(u.shape)}")
    lam = float(damping)
    coef = torch.dot(u, g) / (lam + torch.dot(u, u))  # a 0-dim tensor where g lives: no host round trip
    return torch.addcmul(g, u, coef, value=-1, out=out).mul_(scale / lam)
