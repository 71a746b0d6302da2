"""natpg: natural policy gradients at the cost of a first-order method.

The core is SMAC, an actor-critic whose actor step solves a rank-1 damped
empirical Fisher in closed form (Sherman–Morrison), next to the baselines
AC-SGD, AC-Adam and AC-CG. Quick start::

    from natpg import make_config, train
    result = train(make_config("CartPole-v1", "smac", seed=0, overrides={"total_steps": 50_000}))
    print(result.final_return)
"""

__version__ = "0.1.0"

from natpg.config import Algo, ConfigError, TrainConfig  # noqa: E402
from natpg.presets import make_config  # noqa: E402
from natpg.trainer import TrainResult, Trainer, resume, train  # noqa: E402

__all__ = ["Algo", "ConfigError", "TrainConfig", "TrainResult", "Trainer", "make_config", "resume", "train", "__version__"]
