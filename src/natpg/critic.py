"""The critic's update: Adam on ``mean (R − V)²`` towards the GAE returns, in epochs of mini-batches, every step guarded."""

from __future__ import annotations

import math
from typing import Any, Iterable, NamedTuple, Protocol

import torch

from natpg.guards import guarded_step


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

    Each step goes through :func:`natpg.guards.guarded_step`: the critic and its Adam state never
    hold a non-finite value (a step that would write one is skipped or undone).

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
        self.optimizer = optimizer if optimizer is not None else torch.optim.Adam(critic.parameters(), lr=lr)
        self.epochs = int(epochs)
        self.batch_size = batch_size

    def step(self, obs: Any, returns: torch.Tensor) -> CriticInfo:
        """Fit ``V(obs)`` to ``returns`` (both in the batch's order; ``obs`` indexable like a tensor's rows)."""
        n = len(returns)
        m = self.batch_size or n
        loss_value, skipped, reason = math.nan, 0, ""
        for _ in range(self.epochs):
            order = torch.randperm(n, device=returns.device) if m < n else None  # the full-batch reading draws no random numbers
            for start in range(0, n, m):
                idx = order[start:start + m] if order is not None else slice(None)
                loss_value = float(self.critic.value_loss_backward(obs[idx], returns[idx]))
                why = guarded_step(self.optimizer, loss_value)
                if why:
                    skipped, reason = skipped + 1, f"critic: {why}"
        return CriticInfo(loss_value, skipped, reason)

    def state_dict(self) -> dict:
        """Adam's state (the moments and step counts)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the critic optimizer's state saved by :meth:`state_dict`."""
        self.optimizer.load_state_dict(state)
