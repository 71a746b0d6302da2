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
KL step size: xᵀFx non-finite or ≤ 0      the step is skipped (:mod:`natpg.updates.step_size`);
                                          any rule's failed line search restores θ exactly
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
import weakref
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from natpg.flat import FlatParams


class TrainingDiverged(RuntimeError):
    """Too many consecutive updates were skipped because of non-finite values."""


class NonFiniteState(TrainingDiverged):
    """A state about to be saved holds a non-finite tensor.

    A last line of defence: the guards above should have kept it out.
    """


def rollout_fault(rewards: np.ndarray, obs: np.ndarray, next_obs: np.ndarray) -> str:
    """The reason a rollout cannot be learned from, or ``""`` if every value is finite."""
    if not np.isfinite(rewards).all():
        return "non-finite reward"
    if not (np.isfinite(obs).all() and np.isfinite(next_obs).all()):
        return "non-finite observation"
    return ""


def all_finite(*tensors: torch.Tensor) -> bool:
    """Whether every entry of every tensor is finite."""
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def optimizer_state_finite(optimizer: torch.optim.Optimizer) -> bool:
    """Whether every floating-point tensor of ``optimizer``'s per-parameter state (Adam's moments) is finite."""
    return all(bool(torch.isfinite(v).all()) for state in optimizer.state.values() for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def guarded_step(optimizer: torch.optim.Optimizer, loss: float | torch.Tensor | None = None, flat: bool = True) -> str:
    """``optimizer.step()`` that never leaves a non-finite parameter or optimizer state behind.

    Call it where ``optimizer.step()`` would go (gradients already computed). Guarantees:

    * the step is not taken when ``loss`` (if given) or any gradient is not finite;
    * otherwise it is taken on a snapshot of the parameters and of the optimizer's
      state; if any parameter or state tensor is then non-finite, both are restored
      exactly (bit for bit) to the snapshot (as they are when ``optimizer.step()`` raises,
      before the exception goes on).

    The work is done by one :class:`StepGuard` per optimizer, built on the first call and kept
    (weakly keyed by the optimizer) for the later ones; an optimizer with a ``guarded_step`` method of
    its own (:class:`natpg.critic.FlatAdam`) does it itself, unless ``flat`` is false.

    Returns:
        ``""`` when the step was taken and kept, else the reason it was skipped.
        Cost of a taken step: one copy of the parameters and of the optimizer state, and two
        fused finiteness checks (gradients before, parameters and state after).
    """
    own = getattr(optimizer, "guarded_step", None)
    if flat and own is not None:
        return own(loss)
    guard = _GUARDS.get(optimizer)
    if guard is None:
        guard = _GUARDS[optimizer] = StepGuard(optimizer)
    return guard.step(loss)


_Key = tuple[torch.dtype, torch.device]


def finite_by_dot(flat: torch.Tensor, zeros: torch.Tensor) -> bool:
    """Whether every entry of the 1-D floating-point ``flat`` is finite: ``x · 0`` summed by one dot product.

    ``zeros`` is a zero tensor of ``flat``'s length, dtype and device. The dot product is ``±0`` when every
    entry is finite and NaN as soon as one is ``±inf`` or NaN (IEEE: ``inf · 0 = NaN``, and NaN survives
    every sum), and, unlike ``sum(x)``, it cannot overflow on large finite values: one kernel and one host
    read, where ``isfinite(x).all()`` is two kernels.
    """
    return math.isfinite(float(torch.dot(flat, zeros)))


class _FlatCopy:
    """A copy of a list of tensors in one flat buffer per (dtype, device).

    The buffers are laid out again only when the tensors' shapes or dtypes change; they are written
    and read back with one ``torch._foreach_copy_`` each.
    """

    def __init__(self) -> None:
        self._layout: list[tuple[torch.Size, torch.dtype, torch.device]] = []
        self._flat: dict[_Key, torch.Tensor] = {}
        self._views: dict[_Key, list[torch.Tensor]] = {}
        self._sources: dict[_Key, list[torch.Tensor]] = {}
        self._zeros: dict[_Key, torch.Tensor] = {}  # made on the first finite() of a layout

    def copy_from(self, tensors: list[torch.Tensor]) -> None:
        """Copy the values of ``tensors`` in (remembering which tensors they came from)."""
        layout = [(t.shape, t.dtype, t.device) for t in tensors]
        sources: dict[_Key, list[torch.Tensor]] = {}
        for t in tensors:
            sources.setdefault((t.dtype, t.device), []).append(t)
        if layout != self._layout:
            self._layout = layout
            self._flat = {key: torch.empty(sum(t.numel() for t in ts), dtype=key[0], device=key[1])
                          for key, ts in sources.items()}
            self._views = {key: [v.view(t.shape) for v, t in zip(self._flat[key].split([t.numel() for t in ts]), ts)]
                           for key, ts in sources.items()}
        self._sources = sources
        with torch.no_grad():
            for key, ts in sources.items():
                torch._foreach_copy_(self._views[key], ts)

    def copy_back(self) -> None:
        """Write the values copied in by the last :meth:`copy_from` back into the same tensors, in place."""
        with torch.no_grad():
            for key, ts in self._sources.items():
                torch._foreach_copy_(ts, self._views[key])

    def finite(self) -> bool:
        """Whether every floating-point value copied in is finite (:func:`finite_by_dot`, one host read per buffer)."""
        with torch.no_grad():
            for key, flat in self._flat.items():
                if not flat.is_floating_point():
                    continue
                zeros = self._zeros.get(key)
                if zeros is None or zeros.numel() != flat.numel():
                    zeros = self._zeros[key] = torch.zeros_like(flat)
                if not finite_by_dot(flat, zeros):
                    return False
            return True


class StepGuard:
    """:func:`guarded_step` for one optimizer, with its buffers kept from step to step.

    ``guard = StepGuard(opt)`` once, then ``guard.step(loss)`` where ``opt.step()`` would go; the
    guarantees and the returned reason are those of :func:`guarded_step`. The snapshot of the
    parameters and of every tensor of the optimizer's per-parameter state (Adam's ``step``,
    ``exp_avg``, ``exp_avg_sq``) is one ``torch._foreach_copy_`` into a flat buffer per dtype,
    allocated again only when the layout changes (Adam's lazily created state, a
    ``load_state_dict``); a restore copies the buffer back into the same tensors in place.
    Non-tensor state values and the param groups' settings are restored too, and state that did not
    exist before the step is removed again.

    Finiteness of a list of tensors is one copy into a flat buffer, one fused reduction and one host
    sync per dtype: ``sum(x · 0)`` is ``±0`` when every ``x`` is finite and NaN as soon as one is
    ``±inf`` or NaN (IEEE: ``inf · 0 = NaN``, and NaN survives any sum), so, unlike ``sum(x)`` or
    ``‖x‖``, it cannot overflow on large finite values.

    The guard holds its optimizer weakly and works on whatever parameters and state the optimizer
    holds at each call.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self._optimizer = weakref.ref(optimizer)
        self._grads = _FlatCopy()
        self._snapshot = _FlatCopy()
        self._after = _FlatCopy()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The guarded optimizer; a :class:`ReferenceError` once it no longer exists (it is held weakly)."""
        opt = self._optimizer()
        if opt is None:
            raise ReferenceError("the optimizer of this StepGuard no longer exists")
        return opt

    def step(self, loss: float | torch.Tensor | None = None) -> str:
        """Take ``optimizer.step()`` under the guarantees of :func:`guarded_step`; return its reason."""
        opt = self.optimizer
        params = [p for group in opt.param_groups for p in group["params"]]
        if loss is not None and not math.isfinite(float(loss)):
            return "non-finite loss"
        self._grads.copy_from([p.grad for p in params if p.grad is not None])
        if not self._grads.finite():
            return "non-finite gradient"
        saved_states = [_copy_state(opt.state.get(p)) for p in params]
        saved_groups = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
        self._snapshot.copy_from(params + [v for s in saved_states if s for v in s.values()
                                           if isinstance(v, torch.Tensor)])
        try:
            opt.step()
        except BaseException:  # e.g. a step size that overflows float32 halfway through the parameters
            self._restore(opt, params, saved_states, saved_groups)
            raise
        self._after.copy_from(params + [v for p in params for v in opt.state.get(p, {}).values()
                                        if isinstance(v, torch.Tensor) and v.is_floating_point()])
        if self._after.finite():
            return ""
        self._restore(opt, params, saved_states, saved_groups)
        return "step made parameters or optimizer state non-finite; restored"

    def _restore(self, opt: torch.optim.Optimizer, params: list[torch.Tensor], saved_states: list[dict | None],
                 saved_groups: list[dict]) -> None:
        """Put the parameters, the per-parameter state and the group settings back as they were before the step."""
        self._snapshot.copy_back()
        for p, saved in zip(params, saved_states):
            if saved is None:
                opt.state.pop(p, None)
            else:
                opt.state[p] = saved
        for group, saved_group in zip(opt.param_groups, saved_groups):
            group.update(saved_group)


def _copy_state(state: dict | None) -> dict | None:
    """A new dict with the same tensors (their values are snapshotted separately) and copies of the other values."""
    if state is None:
        return None
    return {k: v if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in state.items()}


_GUARDS: weakref.WeakKeyDictionary[torch.optim.Optimizer, StepGuard] = weakref.WeakKeyDictionary()


def non_finite_entries(state: Any, prefix: str = "") -> list[str]:
    """Paths (``"critic.0.weight"``) of the non-finite floating-point tensors and arrays in a nested ``state``.

    ``state`` is a nested dict/list/tuple; a path is listed when its torch tensor or numpy array
    holds a non-finite value.
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
        """Count one update: a skip (with its ``reason``) adds to both counts, an applied update resets the consecutive one."""
        if not skipped:
            self.consecutive = 0
            return
        self.consecutive += 1
        self.total += 1
        self.last_reason = reason or self.last_reason

    @property
    def exhausted(self) -> bool:
        """Whether ``limit`` consecutive updates have been skipped."""
        return self.consecutive >= self.limit

    def error(self) -> TrainingDiverged:
        """The :class:`TrainingDiverged` to raise when the counter is exhausted, naming the last skip reason."""
        return TrainingDiverged(
            f"training stopped: {self.consecutive} consecutive updates skipped "
            f"(max_consecutive_skips={self.limit}); last reason: {self.last_reason}")
