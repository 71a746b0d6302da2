"""Observation normalisation by a running mean and standard deviation.

The statistics are Gymnasium's :class:`~gymnasium.wrappers.utils.RunningMeanStd`
(the parallel-variance merge, in float64). Gymnasium's own vector
``NormalizeObservation`` only accepts the NEXT_STEP autoreset mode, while natpg
steps its envs in SAME_STEP mode, where the real last observation of an episode
comes in ``info["final_obs"]``; :class:`ObsNormalizeWrapper` therefore
normalises that final observation too, with the same statistics, so the critic
bootstraps a truncated episode from a consistently scaled state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.wrappers.utils import RunningMeanStd, update_mean_var_count_from_moments


class ObsNormalizer:
    r"""``z = (s − μ) / √(σ² + ε)`` with ``μ, σ²`` the running mean and variance of every observation seen.

    Args:
        shape: shape of one observation.
        epsilon: ``ε`` under the square root (> 0).

    Example:
        >>> norm = ObsNormalizer((1,))
        >>> norm.update(np.array([[1.0], [3.0], [np.nan]]))   # rows merged: the NaN row is left out
        2
        >>> round(float(norm.normalize(np.array([2.0]))[0]), 3)   # the mean maps to (almost) 0
        0.0
    """

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-8) -> None:
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.rms = RunningMeanStd(shape=shape, dtype=np.float64)
        self.epsilon = float(epsilon)
        self.frozen = False
        self.rejected_rows = 0
        """Rows :meth:`update` left out of the statistics (non-finite, or overflowing the merge)."""

    def update(self, batch: np.ndarray) -> int:
        """Merge the finite rows of a batch ``(n, *shape)`` into the statistics (unless frozen).

        Guarantees: the mean and variance only ever hold finite values. A row with a
        non-finite entry never enters them, and a merge that would overflow (observations
        near 1e300) is dropped whole; :attr:`rejected_rows` counts the rows left out.

        Returns:
            the number of rows merged.
        """
        if self.frozen:
            return 0
        x = np.asarray(batch, dtype=np.float64)
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        rows = x[finite]
        merged = 0
        if len(rows):
            with np.errstate(over="ignore", invalid="ignore"):
                mean, var, count = update_mean_var_count_from_moments(
                    self.rms.mean, self.rms.var, self.rms.count, rows.mean(axis=0), rows.var(axis=0), len(rows))
            if np.isfinite(mean).all() and np.isfinite(var).all():
                self.rms.mean, self.rms.var, self.rms.count = mean, var, count
                merged = len(rows)
        self.rejected_rows += len(x) - merged
        return merged

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Scale ``obs`` (any leading batch shape) with the current statistics, as float32."""
        return ((np.asarray(obs, dtype=np.float64) - self.rms.mean)
                / np.sqrt(self.rms.var + self.epsilon)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        """The running mean, variance and count, and ``epsilon``, for a checkpoint."""
        return {"mean": self.rms.mean.copy(), "var": self.rms.var.copy(), "count": float(self.rms.count),
                "epsilon": self.epsilon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the statistics saved by :meth:`state_dict`."""
        self.rms.mean = np.array(state["mean"], dtype=np.float64)
        self.rms.var = np.array(state["var"], dtype=np.float64)
        self.rms.count = float(state["count"])
        self.epsilon = float(state["epsilon"])


class ObsNormalizeWrapper(VectorWrapper):
    """A SAME_STEP vector env whose observations (and ``info["final_obs"]``) are normalised.

    The statistics are updated with every batch of observations returned by
    ``reset`` and ``step`` (before scaling them), unless ``normalizer.frozen``.
    """

    def __init__(self, env: VectorEnv, normalizer: ObsNormalizer | None = None) -> None:
        super().__init__(env)
        shape = env.single_observation_space.shape
        self.normalizer = normalizer if normalizer is not None else ObsNormalizer(tuple(shape or ()))

    def _scale(self, obs: np.ndarray) -> np.ndarray:
        self.normalizer.update(obs)
        return self.normalizer.normalize(obs)

    def reset(self, **kwargs):
        """Reset the wrapped env; return its normalized observations and its info."""
        obs, info = self.env.reset(**kwargs)
        return self._scale(obs), info

    def step(self, actions):
        """Step the wrapped env; return its transition with normalized observations (``final_obs`` included)."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if "final_obs" in info:
            done = np.logical_or(terminated, truncated)
            final = np.array(info["final_obs"], dtype=object, copy=True)
            for i in np.flatnonzero(done):
                final[i] = self.normalizer.normalize(final[i])
            info = {**info, "final_obs": final}
        return self._scale(obs), rewards, terminated, truncated, info


class RewardScaler:
    r"""Rewards divided by a running estimate of the std of the discounted return.

    Each env copy keeps a running discounted return ``G ← γ G + r`` (set back to 0 after
    the last step of an episode); the variance of every ``G`` seen so far is tracked by
    :class:`~gymnasium.wrappers.utils.RunningMeanStd`, and each reward of the rollout is
    scaled as ``r / √(Var[G] + ε)`` with the statistics updated by the whole rollout first.
    The mean is not subtracted: a reward's sign, and what a termination means, are kept.

    Args:
        n_envs: number of env copies (columns of a rollout).
        gamma: discount γ of the running return.
        epsilon: ``ε`` under the square root (> 0).

    Example:
        >>> scaler = RewardScaler(n_envs=1, gamma=0.0)
        >>> r = np.array([[2.0], [4.0]]); done = np.zeros((2, 1), bool)
        >>> scaled = scaler.scale(r, done, done)      # Var of {2, 4} (with the prior count) is ≈ 1
        >>> bool(np.allclose(scaled, r / np.sqrt(scaler.rms.var + 1e-8)))
        True
    """

    def __init__(self, n_envs: int, gamma: float, epsilon: float = 1e-8) -> None:
        if not epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.rms = RunningMeanStd(shape=(), dtype=np.float64)
        self.gamma = float(gamma)
        self.epsilon = float(epsilon)
        self.returns = np.zeros(n_envs, dtype=np.float64)

    def scale(self, rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
        """Update the statistics with a rollout ``(n_steps, n_envs)`` and return its rewards scaled (float64)."""
        rewards = np.asarray(rewards, dtype=np.float64)
        done = np.logical_or(terminated, truncated)
        seen = np.empty_like(rewards)
        g = self.returns
        for t in range(rewards.shape[0]):
            g = self.gamma * g + rewards[t]
            seen[t] = g
            g = np.where(done[t], 0.0, g)
        self.returns = g
        self.rms.update(seen.reshape(-1))
        return rewards / np.sqrt(self.rms.var + self.epsilon)

    def reset_returns(self) -> None:
        """Forget the running returns of the episodes in progress (their envs were reset)."""
        self.returns = np.zeros_like(self.returns)

    def state_dict(self) -> dict[str, Any]:
        """The running return statistics, ``epsilon`` and the per-copy discounted returns, for a checkpoint."""
        return {"mean": float(self.rms.mean), "var": float(self.rms.var), "count": float(self.rms.count),
                "epsilon": self.epsilon, "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state saved by :meth:`state_dict`."""
        self.rms.mean = np.float64(state["mean"])
        self.rms.var = np.float64(state["var"])
        self.rms.count = float(state["count"])
        self.epsilon = float(state["epsilon"])
        self.returns = np.array(state["returns"], dtype=np.float64)
