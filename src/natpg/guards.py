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
update leaves non-finite log-probs, or   the parameters are restored from a snapshot (the
parameters that give no valid policy      distributions are built unvalidated, so σ = 0 shows
(σ underflowed to 0)                      as a non-finite log-probability, not an exception)
non-finite critic loss or gradient        the critic step is skipped (:func:`guarded_step`)
critic step leaves a non-finite critic    critic and its Adam state are restored from a
or Adam state (e.g. ``critic_lr=1e308``)  snapshot; the step counts as skipped
AC-Adam step leaves non-finite            actor and Adam state restored (:func:`guarded_step`)
parameters or Adam moments
non-finite observation, normalize_obs     that row never enters the running mean/variance
                                          (:mod:`natpg.normalization`)
``K`` consecutive skipped iterations      :class:`TrainingDiverged` is raised
a non-finite tensor in a checkpoint       :class:`NonFiniteState` is raised and nothing is
                                          written (:func:`natpg.checkpoint.save_checkpoint`)
=======================================  ==================================================

An iteration counts as skipped (for the stop rule) when any actor sub-step or any
critic step of it was skipped. The Stable-Baselines3 ``SMAC`` class
(:mod:`natpg.integrations.sb3`) uses the same helpers, counter and stop rule.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from natpg.flat import FlatParams


class TrainingDiverged(RuntimeError):
    """Too many consecutive updates were skipped because of non-finite values."""


class NonFiniteState(TrainingDiverged):
    """A state about to be saved holds a non-finite tensor (a last line of defence: the guards
    above should have kept it out).
    """


def rollout_fault(rewards: np.ndarray, obs: np.ndarray, next_obs: np.ndarray) -> str:
    """The reason a rollout cannot be learned from, or ``""`` if every value is finite."""
    if not np.isfinite(rewards).all():
        return "non-finite reward"
    if not (np.isfinite(obs).all() and np.isfinite(next_obs).all()):
        return "non-finite observation"
    return ""


def all_finite(*tensors: torch.Tensor) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def optimizer_state_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every floating-point tensor of ``optimizer``'s per-parameter state (Adam's moments) is finite."""
    return all(bool(torch.isfinite(v).all()) for state in optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def guarded_step(optimizer: torch.optim.Optimizer, loss: float | torch.Tensor | None = None) -> str:
    """``optimizer.step()`` that never leaves a non-finite parameter or optimizer state behind.

    Call it where ``optimizer.step()`` would go (gradients already computed). Guarantees:

    * the step is not taken when ``loss`` (if given) or any gradient is not finite;
    * otherwise it is taken on a snapshot of the parameters and of the optimizer's
      state; if any parameter or state tensor is then non-finite, both are restored
      exactly (bit for bit) to the snapshot.

    Returns:
        ``""`` when the step was taken and kept, else the reason it was skipped.
        Cost of a taken step: one copy of the parameters and of the optimizer state.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if loss is not None and not math.isfinite(float(loss)):
        return "non-finite loss"
    if not all_finite(*(p.grad for p in params if p.grad is not None)):
        return "non-finite gradient"
    flat = FlatParams(params)
    saved_params = flat.get()
    saved_state = copy.deepcopy(optimizer.state_dict())
    optimizer.step()
    if all_finite(*params) and optimizer_state_finite(optimizer):
        return ""
    flat.set_(saved_params)
    optimizer.load_state_dict(saved_state)
    return "step made parameters or optimizer state non-finite; restored"


def non_finite_entries(state: Any, prefix: str = "") -> list[str]:
    """Paths (``"critic.0.weight"``) of the floating-point torch tensors and numpy arrays in a nested
    dict/list/tuple ``state`` that hold a non-finite value.
    """
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, np.ndarray):
        return [prefix] if state.dtype.kind in "fc" and not np.isfinite(state).all() else []
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    return [path for key, value in items
            for path in non_finite_entries(value, f"{prefix}.{key}" if prefix else str(key))]


def _params(module: nn.Module | Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    return module.parameters() if isinstance(module, nn.Module) else module


def snapshot(module: nn.Module | Iterable[torch.Tensor]) -> torch.Tensor:
    """A flat copy of the parameters of ``module`` (or of a list of parameters), O(d) memory."""
    return FlatParams(_params(module)).get()


def restore(module: nn.Module | Iterable[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a :func:`snapshot` back into the same parameters, in place (their storage is kept)."""
    FlatParams(_params(module)).set_(flat)


@dataclass
class SkipCounter:
    """Counts skipped iterations; :attr:`exhausted` turns true after ``limit`` in a row.

    :meth:`record` only counts; the caller checks :attr:`exhausted` and raises :meth:`error`.
    """

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
