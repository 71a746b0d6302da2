"""The actor-update interface (batch in, :class:`UpdateInfo` out) and the base of the rules fed by a score kernel.

An update rule is a small object: it asks its :class:`~natpg.scores.ScoreKernel` for the
rows it needs (``g``, ``ℓ̄``, group means), turns them into a direction, and writes
``θ ← θ + step`` through :meth:`ScoreRule.apply` (one flat-parameter helper, guarded
against non-finite values). The trainer and the torch optimizers of :mod:`natpg.optim`
drive the same rule objects: the trainer with a kernel over its actor, the optimizers with a
kernel over the caller's log-probabilities.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import Tensor
from torch.distributions import Distribution

from natpg.flat import FlatParams, flatten
from natpg.policies import Actor
from natpg.scores import AutogradScores, KernelChoice, MLPScores, ScoreKernel, mlp_unsupported, select_score_kernel
from natpg.updates.step_size import AutogradFisher, MLPFisher, PolicyFisher, StepOutcome, StepSize, take_step

__all__ = ["ActorBatch", "UpdateInfo", "ActorUpdate", "ScoreRule", "policy_loss", "flatten"]


@dataclass
class ActorBatch:
    """What an actor update needs: N samples in time order (flattened over env copies)."""

    obs: Tensor         #: ``(N, obs_dim)`` float32
    actions: Tensor     #: ``(N,)`` int64 or ``(N, act_dim)`` float32
    advantages: Tensor  #: ``(N,)`` float32

    def __len__(self) -> int:
        return int(self.advantages.shape[0])

    def slice(self, start: int, stop: int) -> "ActorBatch":
        """Samples ``start`` to ``stop - 1`` as a new batch."""
        return ActorBatch(self.obs[start:stop], self.actions[start:stop], self.advantages[start:stop])


@dataclass
class UpdateInfo:
    """What an update reports. Scalars only; the trainer logs them under ``train/``."""

    actor_loss: float
    """``-(1/N) Σ log π(a_i|s_i) A_i`` before the update (averaged over mini-batches for B < T)."""
    update_norm: float
    """``‖θ_new − θ_old‖₂`` (0 when the update was skipped)."""
    skipped: int = 0
    """Sub-steps skipped because a non-finite value would have reached θ."""
    skip_reason: str = ""
    extras: dict[str, float] = field(default_factory=dict)


def policy_loss(log_probs: Tensor, advantages: Tensor) -> float:
    """The reported actor loss ``-(1/N) Σ_i log π_i A_i``."""
    return -float((log_probs.detach() * advantages).mean())


class ActorUpdate(abc.ABC):
    """One actor update per :meth:`step`.

    The trainer calls ``step(batch)`` once per iteration and never needs to know which rule it
    runs; ``state_dict``/``load_state_dict`` carry any state across checkpoints.

    Attributes:
        flat: the flat layout of the θ this update moves.
        lr: the step size η.
    """

    flat: FlatParams
    lr: float

    @property
    def params(self) -> list[Tensor]:
        """θ's tensors."""
        return self.flat.params

    @property
    def n_params(self) -> int:
        """Number of scalars in θ."""
        return self.flat.numel

    @property
    def score_kernel(self) -> str:
        """Which score kernel feeds the update (``"autograd"``, ``"mlp"``; ``""`` if none), for logs."""
        return ""

    @abc.abstractmethod
    def step(self, batch: Any) -> UpdateInfo:
        """Move θ once, using ``batch`` (an :class:`ActorBatch`, or what the rule's kernel evaluates)."""

    def state_dict(self) -> dict:
        """The update's state to carry across checkpoints (none by default)."""
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - optional hook
        """Restore the state saved by :meth:`state_dict` (nothing by default)."""
        pass


class ScoreRule(ActorUpdate):
    """A rule fed by a score kernel: the kernel gives the rows, the rule the direction.

    Args:
        policy: an :class:`~natpg.policies.Actor` (θ = its parameters that require grad; the
            kernel is chosen by :func:`natpg.scores.select_score_kernel`) or a ready
            :class:`~natpg.scores.ScoreKernel` (θ = its parameters).
        lr: step size η > 0.
        ent_coef: entropy bonus ``c`` in ``J``.
        scores: which kernel for an actor; default the rule's :attr:`default_scores`.
        step_size: how far θ moves along the rule's direction (:mod:`natpg.updates.step_size`);
            default ``fixed`` (``θ ← θ + η x``). Any other needs a policy the rule can evaluate (an
            actor, or a kernel that builds the distribution).
    """

    default_scores: ClassVar[KernelChoice] = "auto"
    """SGD, Adam and CG default to ``"autograd"``: their ``g`` is one backward pass of ``J``."""
    label: ClassVar[str] = "update"

    def __init__(self, policy: Actor | ScoreKernel, lr: float, ent_coef: float = 0.0,
                 scores: KernelChoice | None = None, step_size: StepSize | None = None) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if isinstance(policy, ScoreKernel):
            self.scores = policy
        else:
            params: list[Tensor] = [p for p in policy.parameters() if p.requires_grad]
            self.scores = select_score_kernel(policy, params, scores or self.default_scores, ent_coef, self.label)
        self.flat = self.scores.flat
        self.lr = float(lr)
        self.ent_coef = float(ent_coef)
        self.fisher = _policy_fisher(policy, self.scores, self.flat)
        """The policy as the step-size rule evaluates it (``None``: only the plain fixed step is possible)."""
        self.step_size = step_size or StepSize()

    @property
    def step_size(self) -> StepSize:
        """The step-size rule (:mod:`natpg.updates.step_size`)."""
        return self._step_size

    @step_size.setter
    def step_size(self, size: StepSize) -> None:
        if not size.plain and self.fisher is None:
            raise ValueError(f"step_rule={size.rule.value} with backtrack_iters={size.backtrack_iters} needs the "
                             "policy's distribution; this score kernel gives log-probabilities only")
        self._step_size = size

    def move(self, x: Tensor, batch: Any, quadratic: Callable[[Tensor], float] | None = None,
             old: Distribution | None = None) -> StepOutcome:
        """θ along the direction ``x`` by :attr:`step_size` (:func:`natpg.updates.step_size.take_step`).

        Under ``fixed`` the caller passes ``η x`` (:attr:`StepSize.folds_lr`), which a plain rule
        applies as it is.
        """
        return take_step(self.step_size, x, batch, self.lr, self.flat, self.apply, self.fisher, quadratic, old)

    @property
    def score_kernel(self) -> str:
        """The kernel's name: ``"autograd"`` or ``"mlp"``."""
        return self.scores.name

    @torch.no_grad()
    def apply(self, step: Tensor) -> tuple[float, str]:
        """``θ ← θ + step`` unless ``step`` has a non-finite entry. Returns (norm, skip reason).

        The check is the step's norm, which the caller reports anyway: it is finite exactly
        when every entry is (and the sum of squares does not overflow, a step no one wants
        either): one pass over d instead of ``isfinite(step).all()``'s three.
        """
        norm = float(torch.linalg.vector_norm(step))
        if not math.isfinite(norm):
            return 0.0, "non-finite step"
        self.flat.add_(step)
        return norm, ""


def _policy_fisher(policy: Actor | ScoreKernel, scores: ScoreKernel, flat: FlatParams) -> PolicyFisher | None:
    """The step-size rule's view of the policy: the hand-written pass for a Linear/Tanh actor, else autograd.

    With the MLP score kernel, the hand-written pass starts from the kernel's forward pass of the batch.
    """
    if isinstance(policy, MLPScores):
        policy = policy.actor
    if isinstance(policy, Actor):
        actor = policy
        if not mlp_unsupported(actor, flat.params):
            return MLPFisher(actor, flat, scores if isinstance(scores, MLPScores) else None)
        return AutogradFisher(flat, lambda batch: actor.distribution(batch.obs))
    if isinstance(policy, AutogradScores):
        return AutogradFisher(flat, policy.distribution)
    return None
