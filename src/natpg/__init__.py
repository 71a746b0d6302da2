"""natpg: natural policy gradients at the cost of a first-order method.

The core is SMAC, an actor-critic whose actor step solves a rank-1 damped
empirical Fisher in closed form (Sherman–Morrison), next to the baselines
AC-SGD, AC-Adam and AC-CG. Quick start::

    from natpg import make_config, train
    result = train(make_config("CartPole-v1", "smac", seed=0, overrides={"total_steps": 50_000}))
    print(result.final_return)
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

# The public names are imported on first use (PEP 562), so that ``natpg --help`` and the
# config layer start without importing torch.
_EXPORTS = {
    "Algo": "natpg.config", "ConfigError": "natpg.config", "TrainConfig": "natpg.config",
    "make_config": "natpg.presets",
    "TrainResult": "natpg.trainer", "Trainer": "natpg.trainer", "resume": "natpg.trainer", "train": "natpg.trainer",
}

if TYPE_CHECKING:  # pragma: no cover
    from natpg.config import Algo, ConfigError, TrainConfig
    from natpg.presets import make_config
    from natpg.trainer import Trainer, TrainResult, resume, train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'natpg' has no attribute {name!r}")


__all__ = ["Algo", "ConfigError", "TrainConfig", "TrainResult", "Trainer", "make_config", "resume", "train", "__version__"]
