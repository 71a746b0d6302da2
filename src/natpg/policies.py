"""Actor and critic networks, their action distributions, and the actor's NumPy forward pass.

Actor and critic are separate MLPs (docs/method.md §3; 64-64 tanh by default). The actor
maps observations to a :class:`torch.distributions.Distribution` whose
``log_prob`` is summed over action dimensions, so every sample has one scalar
log-probability.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence, cast

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal

from natpg.flat import FlatParams

_TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
_NUMPY_DTYPE = {v: k for k, v in _TORCH_DTYPE.items()}


class UnsupportedSpaceError(ValueError):
    """The environment's action or observation space is not one natpg can act in."""


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float) -> nn.Sequential:
    """Tanh MLP with orthogonal initialisation (gain √2 inside, ``out_gain`` at the output)."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        lin = nn.Linear(last, h)
        nn.init.orthogonal_(lin.weight, math.sqrt(2))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.Tanh()]
        last = h
    out = nn.Linear(last, out_dim)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


def flat_obs_dim(space: gym.Space) -> int:
    """Length of a flattened observation; only real-valued boxes are accepted."""
    if not isinstance(space, gym.spaces.Box):
        raise UnsupportedSpaceError(
            f"observation space {space} is not supported; natpg needs a gymnasium.spaces.Box observation"
        )
    return int(np.prod(space.shape))


class Actor(nn.Module):
    """Stochastic policy ``π_θ(a|s)``.

    Discrete action spaces get a categorical over logits; box action spaces a
    diagonal Gaussian with a state-independent learned ``log_std`` (starting at
    ``log_std_init``, 0 by default). ``θ`` is every parameter of this module, in
    :meth:`parameters` order.
    """

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: Sequence[int] = (64, 64),
                 log_std_init: float = 0.0) -> None:
        super().__init__()
        if isinstance(action_space, gym.spaces.Discrete):
            self.discrete = True
            self.body = mlp(obs_dim, hidden, int(action_space.n), out_gain=0.01)
            self.log_std = None
        elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
            self.discrete = False
            act_dim = int(action_space.shape[0])
            self.body = mlp(obs_dim, hidden, act_dim, out_gain=0.01)
            self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))
        else:
            raise UnsupportedSpaceError(
                f"action space {action_space} is not supported; allowed: Discrete(n) or a 1-D Box"
            )

    def forward(self, obs: Tensor) -> Distribution:
        """The action distribution at ``obs`` (batch-first)."""
        return self.head(self.body(obs))

    distribution = forward

    def head(self, out: Tensor, log_std: Tensor | None = None) -> Distribution:
        """The distribution given the body's output ``out``: logits, or the Gaussian mean.

        ``log_std`` defaults to the learned ``log σ``; a per-sample ``(B, act_dim)``
        copy of it may be passed instead (to read per-sample derivatives with respect to ``log σ``).
        """
        # No argument validation: a step that drives σ to 0 (log σ → −∞ in float32) must give
        # non-finite log-probabilities, which the update guards skip and restore, not a ValueError.
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        log_std = cast(Tensor, self.log_std) if log_std is None else log_std
        return Independent(Normal(out, log_std.exp().expand_as(out), validate_args=False), 1, validate_args=False)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-sample ``log π_θ(a_i|s_i)``, shape ``(B,)``."""
        return self.distribution(obs).log_prob(actions)

    def linear_layers(self) -> list[nn.Linear] | None:
        """The body's ``nn.Linear`` layers in order if the body is a plain Linear/Tanh stack, else ``None``.

        The fast paths (acting here, :class:`natpg.scores.MLPScores`) walk these layers
        directly instead of through module calls; any other body takes the generic path.
        """
        layers = list(self.body)
        linears = layers[0::2]
        if not all(isinstance(m, nn.Linear) for m in linears) or not all(
                isinstance(m, nn.Tanh) for m in layers[1::2]) or not isinstance(layers[-1], nn.Linear):
            return None
        return cast("list[nn.Linear]", linears)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Sample (or take the mode of) an action for each row of ``obs``.

        Sampling takes the NumPy fast path (:meth:`numpy_policy`) when it applies;
        it draws from the same distribution on torch's random stream.
        """
        if not deterministic:
            fast = self.numpy_policy(_NUMPY_DTYPE.get(obs.dtype))
            if fast is not None:
                return torch.from_numpy(fast.sample(obs.numpy()))
        dist = self.distribution(obs)
        if deterministic:
            return cast(Categorical, dist).probs.argmax(-1) if self.discrete else dist.mean
        return dist.sample()

    def act_numpy(self, obs: np.ndarray) -> np.ndarray:
        """Sample ``a ~ π_θ(·|s)`` for each row of the float array ``obs``; a NumPy array."""
        fast = self.numpy_policy(obs.dtype)
        if fast is None:
            with torch.no_grad():
                return self.distribution(torch.from_numpy(obs)).sample().numpy()
        return fast.sample(obs)

    def numpy_policy(self, dtype, theta: np.ndarray | None = None,
                     layout: FlatParams | None = None) -> "NumpyPolicy | None":
        """The actor as NumPy views of its current parameters, or ``None`` if it has no fast path.

        Valid while the parameters' storage stays the same: in-place updates of θ
        (every update rule, :class:`natpg.flat.FlatParams`) are seen at once; ``to()``,
        ``.data =`` or ``load_state_dict(assign=True)`` need a new one. Callers take one per
        loop (a rollout, one update), so the per-step cost is the arithmetic alone.

        With ``theta`` (a flat ``(d,)`` array in ``dtype``, laid out as ``layout`` says;
        default: :meth:`parameters` order), the policy reads its weights from views of
        ``theta`` instead: a caller that moves θ many times (SMAC's B = 1 loop) then updates
        one array in one operation and copies it into the parameters once.
        """
        layers = self.linear_layers()
        if layers is None or any(lin.bias is None for lin in layers):
            return None
        params = [t for lin in layers for t in (lin.weight, lin.bias)]
        if self.log_std is not None:  # a Gaussian head (a categorical one has no log σ)
            params.append(self.log_std)
        if any(p.dtype != _TORCH_DTYPE.get(np.dtype(dtype)) or p.device.type != "cpu" for p in params):
            return None
        if theta is None:
            return NumpyPolicy(self.discrete, [p.detach().numpy() for p in params])
        layout = layout or FlatParams(self.parameters())
        if theta.shape != (layout.numel,) or theta.dtype != np.dtype(dtype):
            raise ValueError(f"theta must be a ({layout.numel},) {np.dtype(dtype)} array, "
                             f"got {theta.shape} {theta.dtype}")
        return NumpyPolicy(self.discrete, [theta[slice(*layout.span(p))].reshape(p.shape) for p in params])


class NumpyPolicy:
    r"""An :class:`Actor`'s Linear/Tanh MLP and head on NumPy views of its parameters (no copies).

    One environment step needs one tiny forward pass, where torch's per-operation
    dispatch and the construction of Distribution objects cost several times the
    arithmetic. This class does it in NumPy and takes only random draws from torch, so
    ``torch.manual_seed`` still governs sampling; its :meth:`forward` also serves the
    per-sample scores of :class:`natpg.scores.MLPScores`. Build it with :meth:`Actor.numpy_policy`.
    """

    def __init__(self, discrete: bool, views: list[np.ndarray]) -> None:
        """``views``: the weight and bias of each layer, then ``log σ`` (for a Gaussian), as NumPy arrays."""
        n_lin = len(views) // 2
        self.discrete = discrete
        self.layers = [(views[2 * i], views[2 * i + 1]) for i in range(n_lin)]
        self.log_std = None if discrete else views[-1]
        self._noise: dict[tuple, Tensor] = {}

    def sample(self, obs: np.ndarray) -> np.ndarray:
        r"""``a ~ π_θ(·|s)`` for each row of ``obs``.

        * Gaussian: ``a = μ(s) + σ ⊙ ε`` with ``ε = torch.randn`` (what
          ``Normal(μ, σ).sample()`` computes).
        * Categorical: inverse-CDF draw ``a = #{k : cdf_k < u·cdf_K}`` from
          ``softmax(logits)`` with ``u = torch.rand`` (the distribution of ``Categorical.sample``).
        """
        x = self._body(obs)
        if self.discrete:
            return self._categorical(x, self._draw(x.shape[:-1] + (1,), normal=False))
        return x + np.exp(cast(np.ndarray, self.log_std)) * self._draw(x.shape, normal=True)

    def _body(self, obs: np.ndarray) -> np.ndarray:
        """The body's output for each row of ``obs``; a single row runs on vectors."""
        if obs.ndim == 2 and obs.shape[0] == 1:
            return self.forward(obs[0])[None]
        return self.forward(obs)

    def forward(self, x: np.ndarray, inputs: list[np.ndarray] | None = None) -> np.ndarray:
        """The body's output (logits or Gaussian mean) for one observation ``(obs_dim,)`` or rows ``(B, obs_dim)``.

        ``z_l = W_l h_{l-1} + b_l``, ``h_l = tanh(z_l)`` from ``h_0 = x``; the output is ``z_L``.
        With ``inputs``, each layer's input ``h_{l-1}`` is appended to it (for a backward pass).
        """
        last = len(self.layers) - 1
        if x.ndim == 1:
            for i, (w, b) in enumerate(self.layers):
                if inputs is not None:
                    inputs.append(x)
                x = w @ x + b
                if i < last:
                    np.tanh(x, x)
            return x
        for i, (w, b) in enumerate(self.layers):
            if inputs is not None:
                inputs.append(x)
            x = x @ w.T + b
            if i < last:
                np.tanh(x, x)
        return x

    @staticmethod
    def _categorical(logits: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Inverse-CDF draws ``#{k : cdf_k < u·cdf_K}`` from ``softmax(logits)``, one per row, for uniforms ``u``."""
        cdf = np.cumsum(np.exp(logits - logits.max(-1, keepdims=True)), -1)
        return (cdf < u * cdf[..., -1:]).sum(-1).astype(np.int64)

    def sampler(self, n_calls: int, batch: int) -> "Callable[[np.ndarray], np.ndarray]":
        r"""A function that samples ``a ~ π_θ(·|s)`` for ``n_calls`` consecutive ``(batch, obs_dim)`` observations.

        Meant for a rollout, where θ does not move: all the noise is drawn up front in
        one torch call (``n_calls × batch`` standard normals, scaled once by ``σ``, or
        uniforms for a categorical), so each step does only the arithmetic. The draws follow the same distribution on
        torch's random stream (so ``torch.manual_seed`` governs them), in a different
        order than ``n_calls`` calls of :meth:`sample`. Calling it more than ``n_calls``
        times raises ``IndexError``.
        """
        out_dim = self.layers[-1][0].shape[0]
        if self.discrete:
            noise = torch.rand((n_calls, batch, 1), dtype=torch.float32).numpy()
        else:
            noise = torch.randn((n_calls, batch, out_dim), dtype=torch.float32).numpy()
            noise *= np.exp(cast(np.ndarray, self.log_std))
        step = iter(range(n_calls))

        def act(obs: np.ndarray) -> np.ndarray:
            t = next(step, None)
            if t is None:
                raise IndexError(f"this sampler was made for {n_calls} calls")
            x = self._body(obs)
            return self._categorical(x, noise[t]) if self.discrete else x + noise[t]

        return act

    def _draw(self, shape: tuple[int, ...], normal: bool) -> np.ndarray:
        """Standard normal (or U[0, 1)) float32 draws from torch's generator, into a reused buffer."""
        key = (shape, normal)
        buf = self._noise.get(key)
        if buf is None:
            buf = self._noise[key] = torch.empty(shape, dtype=torch.float32)
        if normal:
            buf.normal_()
        else:
            buf.uniform_()
        return buf.numpy()


class Critic(nn.Module):
    """State-value function ``V_φ(s)``."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden, 1, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        """The value estimates ``V(s)`` of ``obs``, one per row."""
        return self.body(obs).squeeze(-1)

    def value_loss_backward(self, obs: Tensor, returns: Tensor) -> Tensor:
        r"""The loss ``L = (1/m) Σ_i (R_i − V(s_i))²`` (detached); its gradient is written into each ``.grad``.

        The same bits as ``L = (returns - self(obs)).pow(2).mean(); L.backward()`` on ``.grad`` that are
        ``None`` (the gradients are replaced, not accumulated), for less: for a Linear/Tanh body the
        backward pass is written out with the kernels autograd's own formulas call, in the same order
        (``∂L/∂V_i = (1/m)·(−2(R_i − V_i))``, ``∂L/∂W_l = δ_lᵀ a_l``, ``∂L/∂b_l = Σ_i δ_{l,i}``,
        ``δ_{l−1} = tanh_backward(δ_l W_l, a_l)``), so none of the graph's bookkeeping is paid;
        ``tests/test_policies.py`` pins it to autograd bit for bit. Any other body, mixed dtypes or
        a hook falls back to autograd itself.
        """
        return self.value_loss_backward_planned(self.backward_plan(obs, returns), obs, returns)

    def backward_plan(self, obs: Tensor, returns: Tensor) -> list[_PlannedLayer] | None:
        """What :meth:`value_loss_backward_planned` needs for inputs like these, or ``None`` for autograd.

        The plan holds each linear layer's ``weight``, ``bias`` and ``weight.t()``, and the ``.grad``
        tensors that can be overwritten in place (shape, dtype and strides of their parameter), with
        the views the kernels write into. A plan made for a batch holds for any of its mini-batches
        (rows of ``obs`` and ``returns``) as long as the critic's modules, hooks and parameter tensors
        do not change in between; a ``.grad`` replaced meanwhile is noticed and written as new.
        """
        layers = self._plain_linear_tanh_layers(obs, returns)
        if layers is None:
            return None
        plan = []
        for weight, bias in layers:
            w_grad, b_grad = _writable_grad(weight), _writable_grad(bias)
            plan.append(_PlannedLayer(weight, bias, weight.t(), w_grad, w_grad,
                                      b_grad, None if b_grad is None else b_grad.view(1, -1)))
        return plan

    def value_loss_backward_planned(self, layers: list[_PlannedLayer] | None, obs: Tensor,
                                    returns: Tensor) -> Tensor:
        """:meth:`value_loss_backward` with the checks already made by :meth:`backward_plan` (its ``layers``).

        On the written-out path a ``.grad`` that already has the parameter's shape, dtype and strides
        is overwritten in place (the kernels' ``out=`` forms, the same bits); any other is replaced
        by a new tensor.
        """
        if layers is None:
            loss = (returns - self(obs)).pow(2).mean()
            for p in self.parameters():
                p.grad = None
            loss.backward()
            return loss.detach()
        with torch.no_grad():
            return self.written_out_backward(layers, obs, returns)

    def written_out_backward(self, layers: list[_PlannedLayer], obs: Tensor, returns: Tensor) -> Tensor:
        """The written-out pass of :meth:`value_loss_backward_planned`; the caller holds ``torch.no_grad()``."""
        inputs, x = self._written_out_forward(layers, obs)
        diff = returns - x.squeeze(-1)
        loss = diff.pow(2).mean()
        # MeanBackward0 gives 1/m (a float division), PowBackward0 multiplies by 2·diff and SubBackward0
        # negates: fl(1/m · 2·diff) negated is fl(1/m · (−2·diff)), as scaling by −2 is exact.
        delta = torch.mul(diff, -2.0).mul_(self._inverse_count(diff)).unsqueeze(-1)
        self._written_out_backprop(layers, inputs, delta)
        return loss

    def written_out_gradient(self, layers: list[_PlannedLayer], obs: Tensor, returns: Tensor) -> None:
        """:meth:`written_out_backward`'s gradients without its loss, for ``returns`` as an ``(m, 1)`` column.

        For a caller that knows every planned ``.grad`` is still in place (they are written without a check).

        ``δ = (R − V) · (−2 · fl(1/m))`` in one product: as −2·(R − V) is exact, it rounds like the two
        products of :meth:`written_out_backward` (unless −2·(R − V) overflows, where that pass gives ±inf),
        so the gradients are the same bits.
        """
        inputs, x = self._written_out_forward(layers, obs)
        key = (x.shape[0], x.dtype)
        scales = self.__dict__.setdefault("_minus_two_over_counts", {})
        if key not in scales:
            scales[key] = float(torch.ones((), dtype=x.dtype) / x.shape[0]) * -2.0
        self._written_out_backprop(layers, inputs, torch.mul(returns - x, scales[key]), in_place=True)

    @staticmethod
    def _written_out_forward(layers: list[_PlannedLayer], obs: Tensor) -> tuple[list[Tensor], Tensor]:
        """The input of each linear layer (autograd's saved tensors of AddmmBackward) and the value column."""
        inputs = [obs]
        x = obs
        last = len(layers) - 1
        for i, layer in enumerate(layers):
            x = torch.addmm(layer.bias, x, layer.w_t)  # what F.linear runs for a 2-D input with a bias
            if i < last:
                x = torch.tanh(x)
                inputs.append(x)
        return inputs, x

    @staticmethod
    def _written_out_backprop(layers: list[_PlannedLayer], inputs: list[Tensor], delta: Tensor,
                              in_place: bool = False) -> None:
        """Autograd's backward pass from ``δ = ∂loss/∂V`` (a column), into the planned ``.grad`` tensors.

        ``in_place``: the caller knows every planned ``.grad`` is still in place (none is looked up).
        """
        for i in range(len(layers) - 1, -1, -1):
            layer = layers[i]
            weight, a = layer.weight, inputs[i]
            # autograd's mm backward for mat2 = Wᵀ (column-major): (δᵀ a)ᵀ, which .t() turns back into δᵀ a
            if in_place or (layer.w_grad is not None and weight.grad is layer.w_grad):
                torch.mm(delta.t(), a, out=layer.w_out)
            else:
                _write_grad(weight, torch.mm, delta.t(), a)
            if in_place or (layer.b_grad is not None and layer.bias.grad is layer.b_grad):  # the engine's sum_to
                torch.sum(delta, [0], keepdim=True, out=layer.b_out)
            else:
                _write_grad(layer.bias, _sum_rows, delta)
            if i > 0:
                delta = torch.ops.aten.tanh_backward(_mm_mat1_backward(delta, weight, layer.w_t, a), a)

    def _inverse_count(self, diff: Tensor) -> Tensor:
        """MeanBackward0's ``grad.expand(m) / m`` for ``grad = 1``: the same tensor every call, so kept."""
        key = (diff.shape, diff.dtype)
        cache = self.__dict__.setdefault("_inverse_counts", {})
        if key not in cache:
            cache[key] = torch.ones((), dtype=diff.dtype).expand(diff.shape) / diff.numel()
        return cache[key]

    def _plain_linear_tanh_layers(self, obs: Tensor, returns: Tensor) -> list[tuple[Tensor, Tensor]] | None:
        """``(weight, bias)`` of each linear layer, or ``None``.

        ``None`` unless :meth:`value_loss_backward` can write the backward pass out for these inputs.
        """
        mods = tuple(self.body._modules.values())
        if self.__dict__.get("_plan_key") != mods:
            linear = (len(mods) % 2 == 1 and all(type(m) is nn.Linear for m in mods[0::2])
                      and all(type(m) is nn.Tanh for m in mods[1::2]) and mods[-1].out_features == 1)
            self.__dict__["_plan_key"], self.__dict__["_plan"] = mods, (mods[0::2] if linear else None)
        plan = self.__dict__["_plan"]
        if plan is None or obs.dim() != 2 or returns.dim() != 1 or obs.requires_grad or returns.requires_grad:
            return None
        dtype = obs.dtype
        layers = [(lin._parameters["weight"], lin._parameters["bias"]) for lin in plan]
        for weight, bias in layers:
            for p in (weight, bias):
                if (p is None or p.dtype != dtype or not p.requires_grad or not p.is_contiguous()
                        or p._backward_hooks or p._post_accumulate_grad_hooks):
                    return None
        if (returns.dtype != dtype or len(self._parameters) or len(self._modules) != 1
                or any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                       for m in (self, self.body, *mods)) or _global_module_hooks()):
            return None
        return layers


def _mm_mat1_backward(grad: Tensor, weight: Tensor, w_t: Tensor, mat1: Tensor) -> Tensor:
    """Autograd's gradient of ``mat1 @ w_t`` with respect to ``mat1`` (``torch/csrc/autograd/FunctionsManual.cpp``).

    ``w_t.t()`` is ``weight`` itself (the same view), so ``weight`` is passed instead of transposing again.
    """
    if mat1.stride(0) == 1 and mat1.stride(1) == mat1.shape[0]:  # a column-major input gets a column-major gradient
        return w_t.mm(grad.t()).t()
    return grad.mm(weight)


def _sum_rows(delta: Tensor, out: Tensor | None = None) -> Tensor:
    """``δ.sum(0)``, kept as a row, as autograd's ``sum_to`` reduces a bias gradient."""
    if out is None:
        return delta.sum([0], keepdim=True)
    return torch.sum(delta, [0], keepdim=True, out=out)


class _PlannedLayer(NamedTuple):
    """One linear layer of a :meth:`Critic.backward_plan`: its tensors and the gradients written in place."""

    weight: Tensor
    bias: Tensor
    w_t: Tensor
    w_grad: Tensor | None
    w_out: Tensor | None
    b_grad: Tensor | None
    b_out: Tensor | None


def _writable_grad(param: Tensor) -> Tensor | None:
    """``param.grad`` if a kernel can overwrite it in place (its parameter's shape, dtype and strides), else ``None``."""
    grad = param.grad
    if grad is not None and grad.dtype == param.dtype and grad.shape == param.shape and grad.stride() == param.stride():
        return grad
    return None


def _write_grad(param: Tensor, kernel: Callable[..., Tensor], *args: Tensor) -> None:
    """``param.grad = kernel(*args)``, into the existing ``.grad`` (``out=``) when its layout allows."""
    grad = _writable_grad(param)
    if grad is not None:
        kernel(*args, out=grad.view(1, -1) if param.dim() == 1 else grad)
    else:
        param.grad = kernel(*args).view(param.shape)


def _global_module_hooks() -> bool:
    """Whether any global ``nn.Module`` hook is registered (it would see a forward pass that autograd runs)."""
    from torch.nn.modules import module as _module
    return any(getattr(_module, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))
