r"""The score kernel: per-sample scores ``ℓ_i = ∇_θ log π_θ(a_i|s_i)`` contracted with given rows.

Every update rule gets its gradients from here and nowhere else. One interface,
:class:`ScoreKernel`, two implementations:

=========================  ===========================================  ====================
kernel                     how                                          policies
=========================  ===========================================  ====================
:class:`AutogradScores`    one batched vector-Jacobian product of the   any (the reference)
                           log-probabilities
:class:`MLPScores`         hand-written backward pass; NumPy            a Linear/Tanh
                           per-sample scores for B = 1                  :class:`Actor`
=========================  ===========================================  ====================

What a kernel computes, for ``N`` samples, advantages ``A`` and a ``(k, N)`` weight matrix ``W``:

.. math::

    \text{rows} = \begin{bmatrix} g \\ W ℓ \end{bmatrix},\quad
    g = \frac1N \sum_i A_i ℓ_i \;(+\, c\, \nabla_θ \tfrac1N \textstyle\sum_i H_i),\quad
    (Wℓ)_j = \sum_i W_{ji} ℓ_i,

(:meth:`ScoreKernel.rows`; ``W`` holds ``1/N`` for SMAC's ``ℓ̄``, group means for Woodbury),
``g`` alone (:meth:`ScoreKernel.gradient`) and the scores one sample at a time
(:meth:`ScoreKernel.sample_scores`; the MLP kernel's NumPy form is what SMAC's B = 1 loop
runs on a flat θ). The entropy term is the autograd kernel's alone.

Which kernel a rule runs is chosen once, by :func:`select_score_kernel`, and logged (logger
``natpg.scores``, level INFO) with the reason; the rule's :attr:`score_kernel` says it too.
"""

from __future__ import annotations

import abc
import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor
from torch.distributions import Distribution

from natpg.flat import FlatParams, flatten
from natpg.policies import Actor, NumpyPolicy

logger = logging.getLogger("natpg.scores")

KernelChoice = Literal["auto", "autograd", "mlp"]
"""``"auto"``: the MLP kernel where it applies, else autograd; or one of them by name."""


@dataclass
class PolicyOutputs:
    """The policy evaluated on a batch, attached to the graph of θ."""

    log_probs: Tensor
    """``(N,)`` per-sample ``log π_θ(a_i|s_i)``."""
    distribution: Distribution | None
    """The action distribution they came from (entropies, the Fisher of the KL), if known."""


class ScoreKernel(abc.ABC):
    """Per-sample scores of one policy at the current θ (see the module docstring for the math).

    A ``batch`` is whatever the kernel evaluates (an :class:`~natpg.updates.ActorBatch` for an
    actor; :class:`natpg.optim.LogProbBatch` for given log-probabilities) with ``advantages``,
    ``len()`` and, for sequential mini-batches, ``slice(start, stop)``.

    Attributes:
        params: θ's tensors; score rows are laid out as :attr:`flat` says.
        flat: the flat layout of θ.
        name: ``"autograd"`` or ``"mlp"``.
    """

    name: ClassVar[str]

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        self.flat = FlatParams(params)

    @abc.abstractmethod
    def rows(self, batch: Any, weights: Tensor, ent_coef: float = 0.0) -> tuple[Tensor, Tensor]:
        """``[g; W ℓ]`` as a ``(k+1, d)`` tensor, and the ``(N,)`` log-probabilities (no graph).

        Args:
            batch: the samples (with ``advantages``).
            weights: ``W``, shape ``(k, N)`` in the advantages' dtype (``k = 0`` allowed).
            ent_coef: ``c``; the entropy term enters ``g`` only.
        """

    @abc.abstractmethod
    def gradient(self, batch: Any, ent_coef: float = 0.0) -> tuple[Tensor, Tensor]:
        """``g = ∇_θ J`` with ``J = (1/N) Σ_i A_i log π_i + c·(1/N) Σ_i H_i``, and the log-probabilities."""

    @abc.abstractmethod
    def sample_scores(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(N, d)`` scores ``ℓ_i``, each from its own pass at the current θ, and ``(N,)`` log-probabilities."""


class AutogradScores(ScoreKernel):
    """The reference kernel: autograd on the log-probabilities of any policy.

    Args:
        params: θ.
        evaluate: the policy on a batch, with graph (see :func:`actor_outputs`).
        retain_graph: keep the graph of ``evaluate``'s outputs after a gradient (a caller that
            evaluated the policy once and builds Fisher-vector products on the same graph).
        distribution: the action distribution on a batch, with graph, where it is cheaper than
            ``evaluate`` (no log-probabilities); default ``evaluate(batch).distribution``.
    """

    name = "autograd"

    def __init__(self, params: list[Tensor], evaluate: Callable[[Any], PolicyOutputs],
                 retain_graph: bool = False, distribution: Callable[[Any], Distribution] | None = None) -> None:
        super().__init__(params)
        self.evaluate = evaluate
        self.retain_graph = retain_graph
        self._distribution = distribution

    def distribution(self, batch: Any) -> Distribution:
        """The action distribution on ``batch``, with graph (for the Fisher of the KL)."""
        if self._distribution is not None:
            return self._distribution(batch)
        dist = self.evaluate(batch).distribution
        if dist is None:
            raise ValueError("this policy gives log-probabilities only; the rule needs its action distribution")
        return dist

    def _outputs(self, batch: Any, ent_coef: float) -> tuple[Tensor, Tensor | None]:
        out = self.evaluate(batch)
        if ent_coef > 0:
            if out.distribution is None:
                raise ValueError("ent_coef > 0 needs the action distribution, which this policy does not give")
            return out.log_probs, out.distribution.entropy()
        return out.log_probs, None

    def gradient(self, batch: Any, ent_coef: float = 0.0) -> tuple[Tensor, Tensor]:
        """``g`` by one backward pass of the scalar ``J``."""
        logp, ent = self._outputs(batch, ent_coef)
        j = (logp * batch.advantages).mean()
        if ent is not None:
            j = j + ent_coef * ent.mean()
        grads = torch.autograd.grad(j, self.params, retain_graph=self.retain_graph, allow_unused=True)
        return flatten(_zeros_for_unused(grads, self.params)), logp.detach()

    def rows(self, batch: Any, weights: Tensor, ent_coef: float = 0.0) -> tuple[Tensor, Tensor]:
        """All rows from **one** batched vector-Jacobian product (``is_grads_batched``), not k+1 passes."""
        adv = batch.advantages
        n, k = len(batch), weights.shape[0]
        logp, ent = self._outputs(batch, ent_coef)
        if ent is None:
            outputs = logp
            cot = torch.cat([(adv / n).unsqueeze(0), weights], dim=0)
        else:
            outputs = torch.cat([logp, ent])
            top = torch.cat([adv / n, torch.full_like(adv, ent_coef / n)])
            cot = torch.cat([top.unsqueeze(0), torch.cat([weights, weights.new_zeros(k, n)], 1)], 0)
        return self._contract(outputs, cot), logp.detach()

    def score_rows(self, batch: Any, weights: Tensor) -> Tensor:
        """``W ℓ`` alone, as a ``(k, d)`` tensor: the score rows of :meth:`rows` without ``g``.

        For a caller that has ``g`` already (the gradient of its own loss). One backward pass
        for ``k = 1``, one batched vector-Jacobian product otherwise. The graph of ``evaluate``'s
        outputs is kept if :attr:`retain_graph` says so.
        """
        logp = self.evaluate(batch).log_probs
        if weights.shape[0] == 1:
            grads = torch.autograd.grad(logp, self.params, grad_outputs=weights[0], retain_graph=self.retain_graph,
                                        allow_unused=True)
            return flatten(_zeros_for_unused(grads, self.params)).unsqueeze(0)
        return self._contract(logp, weights)

    def _contract(self, outputs: Tensor, cot: Tensor) -> Tensor:
        """``(m, d)`` rows ``Σ_i cot[j, i] ∇_θ outputs_i``, by one batched vector-Jacobian product."""
        m = cot.shape[0]
        grads = torch.autograd.grad(outputs, self.params, grad_outputs=cot, is_grads_batched=True,
                                    retain_graph=self.retain_graph, allow_unused=True)
        return torch.cat([gr.reshape(m, -1) for gr in _zeros_for_unused(grads, self.params, m)], dim=1)

    def sample_scores(self, batch: Any) -> tuple[Tensor, Tensor]:
        """One backward pass per sample (the slow, obviously right way)."""
        rows, logps = [], []
        for i in range(len(batch)):
            logp = self.evaluate(batch.slice(i, i + 1)).log_probs.sum()
            rows.append(flatten(_zeros_for_unused(torch.autograd.grad(logp, self.params, allow_unused=True), self.params)))
            logps.append(logp.detach())
        return torch.stack(rows), torch.stack(logps)


def _zeros_for_unused(grads: tuple[Tensor | None, ...], params: list[Tensor], batch: int | None = None) -> list[Tensor]:
    """``grads`` with zeros (each parameter's shape, dtype and device) for the parameters the outputs do not reach.

    A parameter outside the graph of the log-probabilities has score 0, as torch's optimizers
    skip a parameter without a gradient. ``batch``: the leading dimension of batched grads.
    """
    lead = () if batch is None else (batch,)
    return [p.new_zeros(lead + p.shape) if gr is None else gr for gr, p in zip(grads, params)]


def actor_outputs(actor: Actor) -> Callable[[Any], PolicyOutputs]:
    """``evaluate`` for :class:`AutogradScores`: ``actor``'s distribution at ``batch.obs``.

    The outputs hold that distribution and its log-probs of ``batch.actions``.
    """
    def evaluate(batch: Any) -> PolicyOutputs:
        dist = actor.distribution(batch.obs)
        return PolicyOutputs(dist.log_prob(batch.actions), dist)
    return evaluate


class MLPScores(ScoreKernel):
    r"""The fast kernel for a Linear/Tanh :class:`~natpg.policies.Actor`, by a hand-written backward pass.

    For a linear layer ``z = W a + b`` the score of sample ``i`` is ``∂ log π_i/∂W = δ_i a_iᵀ``
    and ``∂ log π_i/∂b = δ_i`` with the signal ``δ_i = ∂ log π_i/∂z_i``; for the Gaussian's
    ``log σ`` it is ``∂ log π_i/∂(log σ)``. The head's signals come in closed form:

    * Gaussian, ``σ = exp(log σ)``: ``log π_i = −½ Σ_k (a_ik − μ_ik)²/σ_k² − Σ_k log σ_k − (K/2) log 2π``,
      ``∂/∂μ_i = (a_i − μ_i)/σ²`` and ``∂/∂ log σ = (a_i − μ_i)²/σ² − 1``;
    * categorical: ``log π_i = log softmax(o_i)[a_i]`` and ``∂/∂o_i = onehot(a_i) − softmax(o_i)``;

    and the chain rule ``δ_{l-1} = (δ_l W_l) ⊙ (1 − h_{l-1}²)`` carries them down: the matrix
    products autograd's backward would do, without its graph, Distribution objects or
    per-node bookkeeping. A row of :meth:`rows` is then one contraction per layer,

    .. math:: \sum_i c_{ji}\, δ_i a_i^\top = (c_j ⊙ δ)^\top A,

    of cost O(N·d) (autograd's batched VJP would repeat the backward chain once per row);
    memory O(rows·d + N·width). :meth:`single_sample` does the same for one sample in NumPy,
    on a flat θ, for SMAC's B = 1 loop where per-call overhead is the whole cost.

    Build it with :func:`select_score_kernel` (or directly when :func:`mlp_unsupported`
    returns ``None``). No entropy term: ``ent_coef`` must be 0.
    """

    name = "mlp"

    def __init__(self, actor: Actor, params: list[Tensor]) -> None:
        reason = mlp_unsupported(actor, params)
        if reason:
            raise ValueError(f"the MLP score kernel does not apply: {reason}")
        super().__init__(params)
        self.actor = actor
        layers = actor.linear_layers()
        assert layers is not None
        self.layers = layers
        self._workspace: dict[str, Tensor] = {}
        self._forward: tuple[Tensor, tuple[int, ...], list[Tensor]] | None = None
        dtypes = {p.dtype for p in params}
        self.single_sample_unsupported = (
            f"parameters of dtype {sorted(map(str, dtypes))}, not one of float32/float64"
            if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64)
            else "a layer has no bias" if any(lin.bias is None for lin in layers) else "")
        """Why :meth:`single_sample` is not available (``""`` when it is)."""

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A scratch tensor kept across calls (contents undefined), reallocated only when its shape changes.

        Every update of a run has the same shapes, so activations, signals and score rows are
        allocated once: a fresh multi-MiB tensor costs a page fault per 4 KiB on first touch,
        as much as the pass that fills it.
        """
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._workspace[name] = torch.empty(shape, dtype=dtype)
        return buf

    def _stamp(self, obs: Tensor) -> tuple[int, ...]:
        """The version counters of ``obs`` and of θ's tensors: any in-place write to them changes it."""
        return (obs._version, *(p._version for p in self.params))

    def forward_of(self, obs: Tensor) -> list[Tensor] | None:
        """The last contraction's forward pass if it ran on this ``obs`` at the current θ, else ``None``.

        Each linear layer's input (``obs``, then each tanh output), then the body's output: workspace
        buffers, valid until the kernel runs again. The step-size rule's ``xᵀFx``
        (:class:`natpg.updates.step_size.MLPFisher`) starts from them instead of a forward pass of its own.
        """
        last = self._forward
        if last is None or last[0] is not obs or last[1] != self._stamp(obs):
            return None
        return last[2]

    def gradient(self, batch: Any, ent_coef: float = 0.0) -> tuple[Tensor, Tensor]:
        """``g`` as the single row of :meth:`rows` with no weights (a workspace buffer: valid until the next call)."""
        rows, logp = self.rows(batch, batch.advantages.new_empty((0, len(batch))), ent_coef)
        return rows[0], logp

    def rows(self, batch: Any, weights: Tensor, ent_coef: float = 0.0) -> tuple[Tensor, Tensor]:
        """The rows by the hand-written backward pass; the result is a workspace buffer, valid until the next call."""
        if ent_coef != 0:
            raise ValueError("the MLP score kernel has no entropy term (ent_coef must be 0; use the autograd kernel)")
        cot = torch.cat([(batch.advantages / len(batch)).unsqueeze(0), weights], dim=0)
        return self._contract(batch.obs, batch.actions, cot)

    def _contract(self, obs: Tensor, actions: Tensor, cot: Tensor) -> tuple[Tensor, Tensor]:
        """Rows ``Σ_i cot[j, i] ℓ_i`` (``(m, d)``, in :attr:`flat` order) and the ``(N,)`` log-probabilities."""
        layers = self.layers
        log_std = self.actor.log_std
        n, dtype = obs.shape[0], cot.dtype
        with torch.no_grad():
            inputs = []  # the input of each linear layer: the observation, then each tanh output
            x = obs
            last = len(layers) - 1
            for i, lin in enumerate(layers):
                inputs.append(x)
                out = self._buffer(f"z{i}", (n, lin.out_features), lin.weight.dtype)
                if lin.bias is None:
                    x = torch.mm(x, lin.weight.T, out=out)
                else:
                    x = torch.addmm(lin.bias, x, lin.weight.T, out=out)
                if i < last:
                    x.tanh_()
            self._forward = (obs, self._stamp(obs), [*inputs, x])
            logp, delta, log_std_signal = self._head_signals(x, actions)
            # Back-propagate by hand: δ_{l-1} = (δ_l W_l) ⊙ (1 − h_{l-1}²) (tanh_backward fuses the product).
            signals = [delta]
            for i in range(last, 0, -1):
                back = self._buffer(f"delta{i - 1}", inputs[i].shape, inputs[i].dtype)
                torch.mm(signals[0], layers[i].weight, out=back)
                signals.insert(0, torch.ops.aten.tanh_backward.grad_input(back, inputs[i], grad_input=back))
        if log_std_signal is not None:
            signals.append(log_std_signal)
        # Write each contraction straight into its column block of the (m, d) result (no concatenation copy).
        m = cot.shape[0]
        rows = self._buffer("rows", (m, self.flat.numel), dtype)
        views = {id(p): v for p, v in zip(self.params, self.flat.views(rows))}
        # A row that is one constant c on a run of samples s..e (ℓ̄ = (1/N) Σ ℓ_i, or a Woodbury group
        # mean) is c·δ[s:e]ᵀA[s:e]: no N×width temporary, and k group rows cost one pass over N in all.
        blocks = [_constant_block(cot[j]) for j in range(m)]
        scratch = self._buffer("scratch", (max(t.numel() for t in inputs + list(signals)),), dtype)
        for lin, a, delta in zip(layers, inputs, signals):
            w_rows = views[id(lin.weight)]
            for j in range(m):  # (c_j ⊙ δ)ᵀ A, scaling whichever factor is narrower
                out = w_rows[j].view_as(lin.weight)
                block = blocks[j]
                if block is not None:
                    s, e, c = block
                    torch.mm(delta[s:e].T, a[s:e], out=out).mul_(c)
                elif delta.shape[1] <= a.shape[1]:
                    torch.mm(torch.mul(delta, cot[j, :, None], out=scratch[:delta.numel()].view_as(delta)).T, a,
                             out=out)
                else:
                    torch.mm(delta.T, torch.mul(a, cot[j, :, None], out=scratch[:a.numel()].view_as(a)), out=out)
            if lin.bias is not None:
                torch.mm(cot, delta, out=views[id(lin.bias)])
        if log_std is not None:
            torch.mm(cot, signals[-1], out=views[id(log_std)])
        return rows, logp

    @torch.no_grad()
    def _head_signals(self, out: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(log π (N,), ∂log π/∂o (N, out_dim), ∂log π/∂log σ (N, K) or None)`` for the body outputs ``o``."""
        if self.actor.discrete:
            log_softmax = torch.log_softmax(out, dim=-1)
            idx = actions.long().unsqueeze(-1)
            logp = log_softmax.gather(-1, idx).squeeze(-1)
            delta = log_softmax.exp_().neg_()
            delta.scatter_add_(-1, idx, torch.ones_like(idx, dtype=delta.dtype))
            return logp, delta, None
        assert self.actor.log_std is not None
        log_std = self.actor.log_std.detach()
        diff = actions - out
        delta = diff * torch.exp(-2.0 * log_std)          # (a − μ)/σ²
        z2 = diff.mul_(delta)                              # (a − μ)²/σ², in diff's storage
        logp = z2.sum(-1).mul_(-0.5).sub_(log_std.sum() + 0.5 * out.shape[-1] * math.log(2.0 * math.pi))
        return logp, delta, z2.sub_(1.0)

    def single_sample(self, theta: np.ndarray) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
        r"""A function ``score(obs, action, out) -> log π(a|s)`` that writes one sample's ``ℓ`` into ``out``.

        It reads θ from the flat array ``theta`` (:attr:`flat` order, the parameters' dtype),
        through views: a caller that moves θ many times (SMAC's B = 1 loop) updates that one
        array and sees the new θ at once. Per sample: the body's forward pass keeping each
        layer's input ``h_{l-1}``, the head's signal (class docstring), then
        ``∂/∂W_l = δ_l h_{l-1}ᵀ``, ``∂/∂b_l = δ_l`` and ``δ_{l-1} = (W_lᵀ δ_l) ⊙ (1 − h_{l-1}²)``.
        """
        if self.single_sample_unsupported:
            raise ValueError(f"no per-sample MLP scores: {self.single_sample_unsupported}")
        policy = self.actor.numpy_policy(theta.dtype, theta=theta, layout=self.flat)
        assert policy is not None
        spans = [(self.flat.span(lin.weight), self.flat.span(lin.bias)) for lin in self.layers]
        log_std_span = None if self.actor.log_std is None else self.flat.span(self.actor.log_std)
        return _NumpyScore(policy, spans, log_std_span)

    def sample_scores(self, batch: Any) -> tuple[Tensor, Tensor]:
        """The NumPy per-sample scores of :meth:`single_sample`, at the parameters' current θ."""
        theta = self.flat.get().numpy()
        score = self.single_sample(theta)
        obs, actions = batch.obs.numpy(), batch.actions.numpy()
        out = np.empty((len(batch), theta.shape[0]), dtype=theta.dtype)
        logp = np.array([score(obs[i], actions[i], out[i]) for i in range(len(batch))], dtype=theta.dtype)
        return torch.from_numpy(out), torch.from_numpy(logp)


class _NumpyScore:
    """One sample's score on a :class:`~natpg.policies.NumpyPolicy` (see :meth:`MLPScores.single_sample`)."""

    def __init__(self, policy: NumpyPolicy, spans: list[tuple[tuple[int, int], tuple[int, int]]],
                 log_std_span: tuple[int, int] | None) -> None:
        self.forward = policy.forward
        self.layers = policy.layers
        self.discrete = policy.discrete
        self.log_std = policy.log_std
        # the backward pass, last layer first: (layer index, W, weight span, bias span)
        self.plan = [(i, self.layers[i][0], *spans[i][0], *spans[i][1]) for i in range(len(self.layers) - 1, -1, -1)]
        self.log_std_span = log_std_span

    def __call__(self, obs: np.ndarray, action: np.ndarray, out: np.ndarray) -> float:
        hidden: list[np.ndarray] = []
        x = self.forward(obs, hidden)
        if self.discrete:
            a = int(action)
            shifted = x - x.max()
            e = np.exp(shifted)
            total = e.sum()
            logp = float(shifted[a] - np.log(total))
            delta = -e / total
            delta[a] += 1.0
        else:
            log_std = self.log_std
            assert log_std is not None and self.log_std_span is not None
            inv_var = np.exp(-2.0 * log_std)
            diff = action - x
            z2 = diff * diff * inv_var
            logp = float(-0.5 * z2.sum() - log_std.sum() - 0.5 * len(x) * math.log(2.0 * math.pi))
            delta = diff * inv_var
            lo, hi = self.log_std_span
            out[lo:hi] = z2 - 1.0
        for i, w, ws, we, bs, be in self.plan:
            np.outer(delta, hidden[i], out=out[ws:we].reshape(w.shape))
            out[bs:be] = delta
            if i:
                delta = (delta @ w) * (1.0 - hidden[i] * hidden[i])
        return logp


def _constant_block(row: Tensor) -> tuple[int, int, float] | None:
    """``(s, e, c)`` if ``row`` is ``c`` on ``s..e-1`` and zero elsewhere (``c ≠ 0``), else ``None``."""
    nz = torch.nonzero(row).flatten()
    if len(nz) == 0:
        return None
    s, e = int(nz[0]), int(nz[-1]) + 1
    if e - s != len(nz) or not bool((row[s:e] == row[s]).all()):
        return None
    return s, e, float(row[s])


def mlp_unsupported(actor: Any, params: list[Tensor]) -> str:
    """Why :class:`MLPScores` cannot serve ``params`` of ``actor`` (``""`` if it can)."""
    if not isinstance(actor, Actor):
        return f"the policy is a {type(actor).__name__}, not a natpg Actor"
    layers = actor.linear_layers()
    if layers is None:
        return "the actor's body is not a Linear/Tanh stack"
    owned = [t for lin in layers for t in (lin.weight, lin.bias) if t is not None]
    if actor.log_std is not None:
        owned.append(actor.log_std)
    if {id(p) for p in owned} != {id(p) for p in params} or len(owned) != len(params):
        return "θ is not exactly the body's weights and biases (and log σ)"
    if any(p.device.type != "cpu" for p in params):
        return "the parameters are not on the CPU"
    return ""


_logged: set[str] = set()


def select_score_kernel(actor: Actor, params: list[Tensor], choice: KernelChoice = "auto", ent_coef: float = 0.0,
                        rule: str = "") -> ScoreKernel:
    """The score kernel for ``params`` of ``actor``, chosen once and logged once (logger ``natpg.scores``).

    ``"auto"`` takes :class:`MLPScores` when it applies and ``ent_coef == 0``, else
    :class:`AutogradScores`; ``"mlp"`` raises ``ValueError`` (with the reason) where the MLP
    kernel does not apply; ``"autograd"`` always applies.
    """
    reason = "ent_coef > 0 (the MLP kernel has no entropy term)" if ent_coef > 0 else mlp_unsupported(actor, params)
    if choice == "mlp" and reason:
        raise ValueError(f"the MLP score kernel does not apply: {reason}")
    if choice == "autograd":
        reason = "requested"
    kernel: ScoreKernel
    if reason:
        kernel = AutogradScores(params, actor_outputs(actor), distribution=lambda batch: actor.distribution(batch.obs))
        message = f"{rule or 'update'}: autograd score kernel ({reason})"
    else:
        mlp = MLPScores(actor, params)
        kernel = mlp
        b1 = ("NumPy per-sample scores for B = 1" if not mlp.single_sample_unsupported
              else f"no per-sample scores: {mlp.single_sample_unsupported}")
        message = f"{rule or 'update'}: MLP score kernel (hand-written backward; {b1})"
    if message not in _logged:
        _logged.add(message)
        logger.info(message)
    return kernel
