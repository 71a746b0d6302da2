"""Actor and critic networks and their action distributions.

Actor and critic are separate MLPs (SPEC §3; 64-64 tanh by default). The actor
maps observations to a :class:`torch.distributions.Distribution` whose
``log_prob`` is summed over action dimensions, so every sample has one scalar
log-probability.
"""

from __future__ import annotations

import math
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical, Distribution, Independent, Normal


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
        out = self.body(obs)
        if self.discrete:
            return Categorical(logits=out)
        std = self.log_std.exp().expand_as(out)
        return Independent(Normal(out, std), 1)

    distribution = forward

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Per-sample ``log π_θ(a_i|s_i)``, shape ``(B,)``."""
        return self.distribution(obs).log_prob(actions)

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Sample (or take the mode of) an action for each row of ``obs``."""
        dist = self.distribution(obs)
        if deterministic:
            return dist.probs.argmax(-1) if self.discrete else dist.mean
        return dist.sample()


class Critic(nn.Module):
    """State-value function ``V_φ(s)``."""

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden, 1, out_gain=1.0)

    def forward(self, obs: Tensor) -> Tensor:
        return self.body(obs).squeeze(-1)
