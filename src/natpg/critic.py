"""The critic's update: Adam on ``mean (R − V)²`` towards the GAE returns, in epochs of mini-batches, every step guarded."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterable, NamedTuple, Protocol, Sequence

import torch

from natpg.guards import finite_by_dot, guarded_step
from natpg.policies import Critic


class ValueFunction(Protocol):
    """What the critic's update needs of ``V``: its parameters and ``mean (R − V)²`` with its gradient.

    :class:`natpg.policies.Critic` is one; the Stable-Baselines3 class wraps an SB3 policy's value branch.
    """

    def parameters(self) -> Iterable[torch.nn.Parameter]:
        """φ, the parameters the update moves."""
        ...

    def value_loss_backward(self, obs: Any, returns: torch.Tensor) -> torch.Tensor:
        """``mean (R − V(obs))²`` (detached), its gradient written into each parameter's ``.grad``."""
        ...


RESTORED = "step made parameters or optimizer state non-finite; restored"
"""The reason of a critic step that was taken and undone (:func:`natpg.guards.guarded_step`'s words)."""


class CriticInfo(NamedTuple):
    """What a critic update reports."""

    loss: float
    """The last mini-batch's ``mean (R − V)²`` (before its step)."""
    skipped: int
    """Steps skipped (or undone) because a non-finite value would have reached the critic."""
    skip_reason: str
    """The last skip's reason, prefixed ``critic:`` (``""`` if none)."""


class CriticUpdate:
    """Adam on ``mean (R − V)²``: ``epochs`` passes over the batch, each in mini-batches of ``batch_size``.

    The mini-batches of a pass are drawn by a fresh random permutation (one full-batch step a pass
    when ``batch_size`` is ``None``).

    Each step is guarded as :func:`natpg.guards.guarded_step` guards it: the critic and its Adam state
    never hold a non-finite value (a step that would write one is skipped or undone, with the same
    reasons; natpg's own critic under :class:`FlatAdam` checks most steps after taking them, see
    :meth:`_planned_flat_steps`).

    Args:
        critic: the value network ``V``.
        lr: Adam's step size.
        epochs: passes over the batch per update.
        batch_size: samples per mini-batch; ``None``: the whole batch (no random numbers drawn).
        optimizer: the optimizer over ``critic``'s parameters to step instead of a new Adam (``lr`` is
            then unused).
    """

    def __init__(self, critic: ValueFunction, lr: float, epochs: int = 1, batch_size: int | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.critic = critic
        params = list(critic.parameters())
        if optimizer is not None:
            self.optimizer = optimizer
        else:
            self.optimizer = FlatAdam(params, lr=lr) if FlatAdam.supports(params) else torch.optim.Adam(params, lr=lr)
        self.epochs = int(epochs)
        self.batch_size = batch_size

    def step(self, obs: Any, returns: torch.Tensor) -> CriticInfo:
        """Fit ``V(obs)`` to ``returns`` (both in the batch's order; ``obs`` indexable like a tensor's rows)."""
        n = len(returns)
        m = self.batch_size or n
        critic, opt = self.critic, self.optimizer
        # FlatAdam checks once that the parameters still live in its buffer: nothing else runs until the update ends
        flat = opt if isinstance(opt, FlatAdam) and opt.ready() else None
        # natpg's own critic: the written-out backward pass, checked once for all the mini-batches below
        own = critic if isinstance(critic, Critic) else None
        plan = own.backward_plan(obs, returns) if own is not None else None
        if (own is not None and plan is not None and flat is not None
                and flat.holds_grads([t for layer in plan for t in (layer.w_grad, layer.b_grad)])):
            # the written-out pass overwrites FlatAdam's own gradient views: the fast loop
            return self._planned_flat_steps(own, plan, flat, obs, returns, n, m)
        loss_value, skipped, reason = math.nan, 0, ""
        # the written-out pass needs no autograd: one no_grad around all the steps instead of one per call
        with torch.no_grad() if plan is not None else contextlib.nullcontext():
            for _ in range(self.epochs):
                order = torch.randperm(n, device=returns.device) if m < n else None  # the full-batch reading draws none
                for start in range(0, n, m):
                    idx = order[start:start + m] if order is not None else slice(start, start + m)
                    loss_value = float(own.written_out_backward(plan, obs[idx], returns[idx])
                                       if own is not None and plan is not None
                                       else critic.value_loss_backward(obs[idx], returns[idx]))
                    why = flat.flat_guarded_step(loss_value) if flat is not None else guarded_step(opt, loss_value)
                    if why:
                        skipped, reason = skipped + 1, f"critic: {why}"
        return CriticInfo(loss_value, skipped, reason)

    def _planned_flat_steps(self, critic: Critic, plan: list, opt: FlatAdam, obs: torch.Tensor,
                            returns: torch.Tensor, n: int, m: int) -> CriticInfo:
        """:meth:`step` for natpg's critic under FlatAdam: the same mini-batches, steps and bits, with fewer kernels.

        Each pass permutes the rows once and takes its mini-batches as views. Only the update's last
        mini-batch computes its loss (the one :class:`CriticInfo` reports) and is checked before its step
        as :func:`natpg.guards.guarded_step` checks; every other step is checked once, after it (θ, both
        moments: a non-finite loss or gradient makes them non-finite too), and if it is undone the reason
        is worked out then, in the same order (loss, gradient, step). A step whose gradients are finite but
        whose loss alone overflows (|R − V| > 1e19) is taken here and skipped there.
        """
        loss_value, skipped, reason = math.nan, 0, ""
        column = returns.unsqueeze(-1)
        with torch.no_grad():
            for epoch in range(self.epochs):
                if m < n:
                    order = torch.randperm(n, device=returns.device)
                    batches = list(zip(obs[order].split(m), column[order].split(m)))
                else:  # the full-batch reading draws no random numbers
                    batches = [(obs, column)]
                last = len(batches) - 1 if epoch == self.epochs - 1 else -1
                for k, (o, r) in enumerate(batches):
                    if k == last:
                        loss_value = float(critic.written_out_backward(plan, o, r.squeeze(-1)))
                        why = opt._flat_guarded_step(loss_value, gathered=True)
                    else:
                        critic.written_out_gradient(plan, o, r)
                        why = "" if opt._step_or_restore() else self._undone_because(critic, plan, opt, o, r)
                    if why:
                        skipped, reason = skipped + 1, f"critic: {why}"
        return CriticInfo(loss_value, skipped, reason)

    @staticmethod
    def _undone_because(critic: Critic, plan: list, opt: FlatAdam, obs: torch.Tensor, column: torch.Tensor) -> str:
        """Why a step checked only after it was undone: the first of guarded_step's checks it fails."""
        if not math.isfinite(float(critic.written_out_backward(plan, obs, column.squeeze(-1)))):
            return "non-finite loss"
        return "non-finite gradient" if not opt._finite(opt._grad) else RESTORED

    def state_dict(self) -> dict:
        """Adam's state (the moments and step counts)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the critic optimizer's state saved by :meth:`state_dict`."""
        self.optimizer.load_state_dict(state)


class FlatAdam(torch.optim.Adam):
    r"""``torch.optim.Adam`` over parameters kept in one flat buffer: the same bits, in a few whole-buffer kernels.

    The parameters' storage is moved into one flat buffer (each ``p.data`` becomes a view of it) and
    Adam's two moments into another, so a step runs a handful of kernels on whole buffers instead of
    a loop over the parameter tensors: the kernels of torch's single-tensor (CPU) Adam, in its order,
    on the same values (``lerp_`` into the first moment, ``mul_``/``addcmul_`` into the second, the
    bias corrections in Python floats, ``sqrt``/``div``/``add_`` for the denominator, one
    ``addcdiv_``). An element-wise kernel gives the same bits on a buffer as on its pieces when every
    element takes the same (vectorised or scalar) path, which holds on one thread when each
    parameter but the last has a multiple of 64 entries: :meth:`supports` says whether a list of
    parameters qualifies (the critic's ``(64, 64)`` MLP does, for any observation size).
    ``tests/test_critic.py`` pins the results to ``torch.optim.Adam`` bit for bit.

    It is an ``Adam``: ``state``, ``param_groups``, :meth:`state_dict` and :meth:`load_state_dict`
    have Adam's format (the moments in ``state`` are views of the flat buffer), so checkpoints
    written with either load into the other. A step where some parameter has no gradient, or after
    which the state no longer fits the flat layout, is left to ``torch.optim.Adam.step`` itself.

    :func:`natpg.guards.guarded_step` calls :meth:`guarded_step`: the step is skipped when the loss
    or a gradient is not finite, and undone exactly (parameters, moments and step counts) when it
    leaves a non-finite parameter or moment.

    Args:
        params: the parameters (one group); :meth:`supports` must hold for them.
        lr: the step size, read from ``param_groups[0]["lr"]`` at every step.
        betas: the moments' decay rates.
        eps: the denominator's offset.
    """

    ALIGN = 64

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        params = list(params)
        if not self.supports(params):
            raise ValueError("FlatAdam needs CPU floating-point parameters of one dtype, each but the last with a "
                             f"multiple of {self.ALIGN} entries")
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self._params = params
        self._flat = False
        self._bind()

    @classmethod
    def supports(cls, params: Sequence[torch.Tensor]) -> bool:
        """Whether whole-buffer kernels give the per-tensor kernels' bits for ``params``."""
        return bool(params) and all(
            p.device.type == "cpu" and p.is_floating_point() and p.dtype == params[0].dtype for p in params
        ) and all(p.numel() % cls.ALIGN == 0 for p in params[:-1])

    def _bind(self) -> None:
        """Move the parameters and Adam's moments (if any) into the flat buffers; give the flat path up if they do not fit it."""
        params = self._params
        states: list[dict] = [self.state.get(p) or {} for p in params]
        started = [bool(s) for s in states]
        if any(started) and not (all(started) and all({"step", "exp_avg", "exp_avg_sq"} <= s.keys() for s in states)
                                 and len({float(s["step"]) for s in states}) == 1):
            self._flat = False  # a state only torch's per-tensor loop can carry on (e.g. a parameter left without grad)
            return
        sizes = [p.numel() for p in params]
        d = sum(sizes)
        # one buffer for θ and both moments, a row each, every row starting on a multiple of ALIGN entries:
        # the guard's snapshot is one copy of it and its finiteness test one dot product
        rows = torch.zeros(3, -(-d // self.ALIGN) * self.ALIGN, dtype=params[0].dtype)
        buffer, exp_avg, exp_avg_sq = rows[0, :d], rows[1, :d], rows[2, :d]

        def views(flat: torch.Tensor) -> list[torch.Tensor]:
            return [v.view(p.shape) for v, p in zip(flat.split(sizes), params)]

        param_views, self._m_views, self._v_views = views(buffer), views(exp_avg), views(exp_avg_sq)
        self._steps = torch.zeros(len(params), dtype=torch.float32)
        self._count = 0  # the step count as a Python int, what the bias corrections read
        with torch.no_grad():
            for p, view in zip(params, param_views):
                view.copy_(p)
                p.data = view
            if all(started):
                torch._foreach_copy_(self._m_views, [s["exp_avg"] for s in states])
                torch._foreach_copy_(self._v_views, [s["exp_avg_sq"] for s in states])
                self._steps.fill_(float(states[0]["step"]))
                self._count = int(self._steps[0].item())
                for s, step_t, m, v in zip(states, self._steps, self._m_views, self._v_views):
                    s["step"], s["exp_avg"], s["exp_avg_sq"] = step_t, m, v
        self._buffer, self._exp_avg, self._exp_avg_sq = buffer, exp_avg, exp_avg_sq
        self._rows = rows.view(-1)
        self._grad = torch.zeros_like(buffer)
        self._grad_views = views(self._grad)
        for p, g in zip(params, self._grad_views):  # a backward pass that writes in place lands in the buffer
            if p.grad is not None:
                g.copy_(p.grad)
            p.grad = g
        self._snapshot = torch.empty_like(self._rows)
        self._zeros = torch.zeros_like(self._rows)
        self._ptrs = [p.data_ptr() for p in params]
        self._flat = True

    def ready(self) -> bool:
        """Whether the next step can take the flat path (re-binding first if something moved a parameter's storage)."""
        params = [p for group in self.param_groups for p in group["params"]]
        if len(params) != len(self._params) or any(p is not q for p, q in zip(params, self._params)):
            return False
        if not self._flat or any(p.data_ptr() != ptr for p, ptr in zip(params, self._ptrs)):
            self._bind()
        return self._flat and all(p.grad is not None for p in params)

    def load_state_dict(self, state_dict: dict) -> None:
        """Adam's ``load_state_dict``; the loaded moments are then moved into the flat buffer."""
        super().load_state_dict(state_dict)
        self._bind()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Adam's ``step``, unguarded (``closure`` as in torch); natpg calls :meth:`guarded_step`."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not (self.ready() and self._gather_grads()):
            super().step()
            self._flat = False  # re-bind at the next step (torch may have left the state per-tensor)
            return loss
        self._step_kernels(self._grad)
        return loss

    def _gather_grads(self) -> bool:
        """Copy into the flat gradient buffer every ``.grad`` that is not already its view; false if one is missing."""
        for p, view in zip(self._params, self._grad_views):
            grad = p.grad
            if grad is not view:
                if grad is None:
                    return False
                view.copy_(grad)
                p.grad = view
        return True

    def _step_kernels(self, grad: torch.Tensor) -> None:
        """Torch's single-tensor Adam on the flat buffers: the same kernels in the same order."""
        if not self.state.get(self._params[0]):
            self._steps.zero_()
            self._count = 0
            for p, step_t, m, v in zip(self._params, self._steps, self._m_views, self._v_views):
                self.state[p] = {"step": step_t, "exp_avg": m, "exp_avg_sq": v}
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        self._steps.add_(1)  # torch's float32 step counts, one per parameter (views of one tensor)
        self._count += 1
        exp_avg, exp_avg_sq = self._exp_avg, self._exp_avg_sq
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # torch reads its float32 count back: the same number below 2**24, where float32 stops counting
        step = float(self._count) if self._count < 2**24 else self._steps[0].item()
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        self._buffer.addcdiv_(exp_avg, denom, value=-step_size)

    @torch.no_grad()
    def guarded_step(self, loss: float | torch.Tensor | None = None) -> str:
        """:func:`natpg.guards.guarded_step` on the flat buffers: ``""``, or the reason the step was skipped or undone."""
        if not self.ready():
            reason = guarded_step(self, loss, flat=False)
            self._flat = False
            return reason
        return self.flat_guarded_step(loss)

    @torch.no_grad()
    def flat_guarded_step(self, loss: float | torch.Tensor | None = None) -> str:
        """:meth:`guarded_step` once :meth:`ready` has said yes (and nothing has moved a parameter since)."""
        return self._flat_guarded_step(loss)

    def holds_grads(self, grads: list[torch.Tensor | None]) -> bool:
        """Whether ``grads`` are this optimizer's own gradient views, one per parameter and in place as ``.grad``."""
        return (len(grads) == len(self._grad_views) and all(g is v for g, v in zip(grads, self._grad_views))
                and all(p.grad is v for p, v in zip(self._params, self._grad_views)))

    def _flat_guarded_step(self, loss: float | torch.Tensor | None, gathered: bool = False) -> str:
        """:meth:`flat_guarded_step` without its ``no_grad`` (for a caller already inside one).

        ``gathered``: the caller knows every ``.grad`` is still this optimizer's own view (:meth:`holds_grads`).
        """
        if loss is not None and not math.isfinite(float(loss)):
            return "non-finite loss"
        if not gathered and not self._gather_grads():
            reason = guarded_step(self, loss, flat=False)
            self._flat = False
            return reason
        if not self._finite(self._grad):
            return "non-finite gradient"
        return "" if self._step_or_restore() else RESTORED

    def _step_or_restore(self) -> bool:
        """Adam's step on the gathered gradient; undone exactly (θ, moments, counts) if it leaves anything non-finite."""
        first = not self.state.get(self._params[0])
        self._snapshot.copy_(self._rows)
        self._step_kernels(self._grad)
        if finite_by_dot(self._rows, self._zeros):
            return True
        self._rows.copy_(self._snapshot)
        if first:
            for p in self._params:
                self.state.pop(p, None)
        else:
            self._steps.sub_(1)
            self._count -= 1
        return False

    def _finite(self, flat: torch.Tensor) -> bool:
        """Whether every entry of the 1-D ``flat`` (θ, a moment, the gradient, or all rows) is finite (one dot product)."""
        return finite_by_dot(flat, self._zeros[: flat.numel()])
