"""Numerical guards: no non-finite value ever reaches the parameters.

Where a fault is caught, and what happens:

=======================================  ==================================================
fault                                    handling
=======================================  ==================================================
non-finite reward or observation          the whole iteration's update (actor and critic) is
                                          skipped; the policy acts on zeros in place of a
                                          non-finite observation so the rollout goes on
non-finite advantage (huge rewards)       update skipped
non-finite gradient / curvature / step    the update rule skips (``UpdateInfo.skipped``)
CG: pᵀFp ≤ 0, failed line search          CG stops at the last good iterate; a failed line
                                          search restores the old parameters
update leaves non-finite log-probs        the parameters are restored from a snapshot
non-finite critic loss or gradient        the critic step is skipped
``K`` consecutive skipped iterations      :class:`TrainingDiverged` is raised
=======================================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


class TrainingDiverged(RuntimeError):
    """Too many consecutive updates were skipped because of non-finite values."""


def rollout_fault(rewards: np.ndarray, obs: np.ndarray, next_obs: np.ndarray) -> str:
    """The reason a rollout cannot be learned from, or ``""`` if every value is finite."""
    if not np.isfinite(rewards).all():
        return "non-finite reward"
    if not (np.isfinite(obs).all() and np.isfinite(next_obs).all()):
        return "non-finite observation"
    return ""


def all_finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def snapshot(module: nn.Module) -> torch.Tensor:
    """A flat copy of ``module``'s parameters (O(d) memory)."""
    return nn.utils.parameters_to_vector(module.parameters()).detach().clone()


def restore(module: nn.Module, flat: torch.Tensor) -> None:
    with torch.no_grad():
        nn.utils.vector_to_parameters(flat, module.parameters())


@dataclass
class SkipCounter:
    """Counts skipped iterations; :meth:`record` raises after ``limit`` in a row."""

    limit: int
    consecutive: int = 0
    total: int = 0
    last_reason: str = ""

    def record(self, skipped: bool, reason: str = "") -> None:
        if not skipped:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total += 1
        self.last_reason = reason or self.last_reason

    @property
    def exhausted(self) -> bool:
        return self.consecutive >= self.limit

    def error(self) -> TrainingDiverged:
        return TrainingDiverged(
            f"training stopped: {self.consecutive} consecutive updates skipped "
            f"(max_consecutive_skips={self.limit}); last reason: {self.last_reason}")
