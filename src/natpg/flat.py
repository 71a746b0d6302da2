"""Flat θ: the one place a list of parameters is read, viewed and written as a single vector.

An update rule works on ``θ ∈ R^d``, the concatenation of its parameters' entries in list
order; :class:`FlatParams` fixes that layout once and reads (:meth:`~FlatParams.get`),
views (:meth:`~FlatParams.views`) and writes (:meth:`~FlatParams.set_`,
:meth:`~FlatParams.add_`) it. Writes are always in place (``p.copy_``/``p.add_``), never a
new ``.data``: anything that reads a parameter's storage directly (the NumPy views of
:meth:`natpg.policies.Actor.numpy_policy`, an optimizer's state keyed by the tensor) keeps
seeing the current values.

Example:
    >>> import torch
    >>> w, b = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))
    >>> flat = FlatParams([w, b])
    >>> flat.numel
    6
    >>> flat.add_(torch.arange(6.0))
    >>> flat.get()
    tensor([0., 1., 2., 3., 4., 5.])
    >>> b
    Parameter containing:
    tensor([4., 5.], requires_grad=True)
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """The entries of ``tensors`` concatenated into one new vector, in order."""
    return torch.cat([t.reshape(-1) for t in tensors])


class FlatParams:
    """The flat layout of a fixed list of parameters: ``θ = [vec(p_1); …; vec(p_n)]``.

    Args:
        params: the tensors making up θ, in the order of the flat vector.
    """

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params: list[Tensor] = list(params)
        self._spans: dict[int, tuple[int, int]] = {}
        start = 0
        for p in self.params:
            self._spans[id(p)] = (start, start + p.numel())
            start += p.numel()
        self.numel = start
        """``d``, the length of θ."""

    @property
    def device(self) -> torch.device:
        """Where θ lives: helper tensors of the same length (rows, weights, sums) are made here."""
        return self.params[0].device if self.params else torch.device("cpu")

    def span(self, p: Tensor) -> tuple[int, int]:
        """``(start, stop)``: where ``p``'s entries sit in θ (``p`` must be one of :attr:`params`)."""
        return self._spans[id(p)]

    def get(self) -> Tensor:
        """A copy of θ (detached, a new tensor)."""
        return flatten([p.detach() for p in self.params])

    def views(self, flat: Tensor) -> list[Tensor]:
        """Views of a flat ``(..., d)`` tensor shaped like each parameter (leading dimensions kept).

        For ``flat`` of shape ``(d,)`` view ``i`` has ``params[i]``'s shape; for ``(m, d)`` it is the
        ``(m, numel_i)`` column block of parameter ``i``.
        """
        if flat.dim() == 1:
            return [flat[slice(*self._spans[id(p)])].view_as(p) for p in self.params]
        return [flat[..., slice(*self._spans[id(p)])] for p in self.params]

    @torch.no_grad()
    def set_(self, flat: Tensor) -> None:
        """``θ ← flat``, in place."""
        for p, v in zip(self.params, self.views(flat)):
            p.copy_(v)

    @torch.no_grad()
    def add_(self, step: Tensor) -> None:
        """``θ ← θ + step``, in place."""
        for p, v in zip(self.params, self.views(step)):
            p.add_(v)
