"""Bad settings are refused up front, with one message naming the value and what is allowed."""

from __future__ import annotations

import pytest

from natpg.config import ConfigError, TrainConfig

BAD = [
    ({"actor_lr": 0.0}, r"actor_lr=0.0 must be a finite number > 0"),
    ({"actor_lr": -1e-3}, r"actor_lr=-0.001 must be a finite number > 0"),
    ({"actor_lr": float("nan")}, r"actor_lr=nan must be a finite number > 0"),
    ({"critic_lr": 0.0}, r"critic_lr=0.0 must be"),
    ({"damping": 0.0}, r"damping=0.0 must be a finite number > 0"),
    ({"damping": -0.1}, r"damping=-0.1 must be"),
    ({"cg_damping": float("inf")}, r"cg_damping=inf must be"),
    ({"n_steps": 1000, "n_envs": 3}, r"n_steps \(T\) = 1000 is not divisible by n_envs = 3"),
    ({"batch_size": 3}, r"batch_size \(B\) = 3 must divide n_steps \(T\) = 1000; allowed: 1, 2, 4"),
    ({"batch_size": 2000}, r"batch_size \(B\) = 2000 must divide"),
    ({"rank": 0}, r"rank=0 must be an integer >= 1"),
    ({"algo": "woodbury", "rank": 2000}, r"rank=2000 must be <= the actor's mini-batch size \(n_steps \(T\) = 1000\)"),
    ({"algo": "woodbury", "rank": 8, "batch_size": 4}, r"rank=8 must be <= the actor's mini-batch size \(batch_size = 4\)"),
    ({"actor_epochs": 0}, r"actor_epochs=0 must be an integer >= 1"),
    ({"critic_epochs": 0}, r"critic_epochs=0 must be an integer >= 1"),
    ({"critic_batch_size": 3}, r"critic_batch_size = 3 must divide n_steps \(T\) = 1000; allowed: 1, 2, 4"),
    ({"critic_batch_size": 0}, r"critic_batch_size = 0 must divide"),
    ({"gamma": 1.5}, r"gamma=1.5 must be in \[0, 1\]"),
    ({"gae_lambda": -0.1}, r"gae_lambda=-0.1 must be in \[0, 1\]"),
    ({"total_steps": 0}, r"total_steps=0 must be an integer >= 1"),
    ({"n_envs": 0}, r"n_envs=0 must be an integer >= 1"),
    ({"seed": -1}, r"seed=-1 must be an integer >= 0"),
    ({"seed": 1.5}, r"seed=1.5 must be an integer"),
    ({"hidden_sizes": (64, 0)}, r"hidden_sizes=\(64, 0\) must be one or more positive integers"),
    ({"algo": "ppo"}, r"unknown algorithm 'ppo'; allowed: smac, ac-sgd, ac-adam, ac-cg, woodbury"),
    ({"vectorization": "threads"}, r"vectorization='threads' is not allowed; allowed: sync, async"),
    ({"cg_max_kl": 0.0}, r"cg_max_kl=0.0 must be > 0 or None"),
    ({"ent_coef": -1.0}, r"ent_coef=-1.0 must be"),
    ({"max_episode_steps": 0}, r"max_episode_steps=0 must be an integer >= 1 or None"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[str(c) for c, _ in BAD])
def test_bad_setting_is_refused_with_a_clear_message(changes, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**changes)


def test_string_override_that_is_not_a_number():
    with pytest.raises(ConfigError, match=r"actor_lr='fast' is not a number"):
        TrainConfig().override(actor_lr="fast")


def test_string_override_that_is_not_a_boolean():
    with pytest.raises(ConfigError, match=r"normalize_advantages='maybe' is not a boolean"):
        TrainConfig().override(normalize_advantages="maybe")


def test_rank_is_checked_only_for_woodbury():
    assert TrainConfig(algo="smac", rank=2000).rank == 2000  # smac does not read rank


def test_derived_fields():
    cfg = TrainConfig(n_steps=1000, n_envs=4, total_steps=2500)
    assert cfg.steps_per_env == 250 and cfg.n_iterations == 3 and cfg.actor_batch_size == 1000
