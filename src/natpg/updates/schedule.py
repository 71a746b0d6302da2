"""The mini-batch schedule: how often a rule moves θ per iteration (E passes over the batch, mini-batches of M)."""

from __future__ import annotations

import math
from typing import Any

import torch  # noqa: F401 - the example uses it

from natpg.updates.base import ActorBatch, ActorUpdate, UpdateInfo  # noqa: F401 - ActorBatch: the example


class MiniBatchSchedule(ActorUpdate):
    r"""Runs a rule ``epochs`` times over the batch, in consecutive mini-batches of ``batch_size`` samples.

    Each pass walks the N samples in time order: mini-batch ``j`` holds samples
    ``jM … (j+1)M − 1``, and the wrapped rule makes one update on it at the θ left by the
    previous one. With ``batch_size=None`` (M = N) and ``epochs=1`` the rule runs exactly
    once, as if unwrapped. A rule that walks its own mini-batches (smac's ``batch_size``, with
    its per-sample fast path for M = 1) is given ``batch_size=None`` here and the whole batch
    on every pass.

    The reported ``update_norm`` is ``‖θ_after − θ_before‖₂`` over the whole schedule,
    ``actor_loss`` the mean of the sub-steps' pre-update losses, and ``skipped`` counts the
    skipped sub-steps. ``extras["n_substeps"]`` is the number of rule updates.

    Example:
        >>> from natpg.policies import Actor
        >>> import gymnasium as gym
        >>> from natpg.updates.sgd import SGDUpdate
        >>> actor = Actor(3, gym.spaces.Discrete(2), (8,))
        >>> sched = MiniBatchSchedule(SGDUpdate(actor, 0.1), batch_size=2, epochs=3)
        >>> batch = ActorBatch(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), torch.ones(4))
        >>> int(sched.step(batch).extras["n_substeps"])
        6
    """

    def __init__(self, rule: ActorUpdate, batch_size: int | None, epochs: int) -> None:
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size!r}")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs!r}")
        self.rule = rule
        self.flat = rule.flat
        self.lr = rule.lr
        self.batch_size = batch_size
        self.epochs = int(epochs)

    def step(self, batch: Any) -> UpdateInfo:
        """Run the rule ``epochs`` times over ``batch`` in mini-batches; report the mean loss and the total step."""
        n = len(batch)
        m = n if self.batch_size is None else self.batch_size
        if n % m:
            raise ValueError(f"batch_size M={m} must divide the batch length N={n}")
        before = self.flat.get()
        losses: list[float] = []
        skipped, reason, substeps = 0, "", 0
        extras: dict[str, float] = {}
        for _ in range(self.epochs):
            for start in range(0, n, m):
                info = self.rule.step(batch if m == n else batch.slice(start, start + m))
                losses.append(info.actor_loss)
                substeps += int(info.extras.get("n_substeps", 1))
                if info.skipped:
                    skipped, reason = skipped + info.skipped, info.skip_reason
                extras.update(info.extras)
        norm = float((self.flat.get() - before).norm())
        extras["n_substeps"] = float(substeps)
        loss = sum(losses) / len(losses) if all(math.isfinite(v) for v in losses) else math.nan
        return UpdateInfo(actor_loss=loss, update_norm=norm, skipped=skipped, skip_reason=reason, extras=extras)

    @property
    def score_kernel(self) -> str:
        """The wrapped rule's score kernel."""
        return self.rule.score_kernel

    def state_dict(self) -> dict:
        """The wrapped rule's state."""
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Restore the wrapped rule's state."""
        self.rule.load_state_dict(state)
