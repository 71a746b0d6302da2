"""The actor's and the critic's training schedules per iteration, and reward scaling (the unstated details)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import tiny_actor, tiny_batch
from natpg import make_config
from natpg.config import TrainConfig
from natpg.normalization import RewardScaler
from natpg.trainer import Trainer
from natpg.updates import (AdamUpdate, MiniBatchSchedule, SGDUpdate, ShermanMorrisonUpdate, WoodburyUpdate,
                           make_update)
from natpg.updates.base import flatten

N = 12


def theta(actor) -> torch.Tensor:
    return flatten([p.detach() for p in actor.parameters()]).clone()


@pytest.mark.parametrize("rule", [SGDUpdate, AdamUpdate])
def test_schedule_is_sequential_rule_steps_on_consecutive_minibatches(discrete, rule):
    actor = tiny_actor(discrete)
    batch = tiny_batch(actor, N)
    by_hand = copy.deepcopy(actor)
    start = theta(actor)
    info = MiniBatchSchedule(rule(actor, 0.05), batch_size=4, epochs=2).step(batch)
    ref = rule(by_hand, 0.05)
    for _ in range(2):
        for s in (0, 4, 8):  # time order: samples 0-3, 4-7, 8-11, then again
            ref.step(batch.slice(s, s + 4))
    assert torch.equal(theta(actor), theta(by_hand))
    assert info.extras["n_substeps"] == 6
    assert info.update_norm == pytest.approx(float((theta(actor) - start).norm()), rel=1e-6)
    assert info.update_norm > 0


def test_schedule_with_defaults_is_the_bare_rule(discrete):
    assert type(make_update(TrainConfig(algo="ac-sgd"), tiny_actor(discrete))) is SGDUpdate
    assert type(make_update(TrainConfig(algo="smac"), tiny_actor(discrete))) is ShermanMorrisonUpdate


def test_make_update_wraps_every_rule_and_smac_walks_its_own_minibatches(discrete):
    cfg = TrainConfig(algo="smac", n_steps=N, batch_size=3, actor_epochs=2)
    sched = make_update(cfg, tiny_actor(discrete))
    assert isinstance(sched, MiniBatchSchedule) and sched.batch_size is None and sched.rule.batch_size == 3
    wood = make_update(TrainConfig.from_dict({"algo": "woodbury", "n_steps": N, "rank": 2, "batch_size": 6}), tiny_actor(discrete))
    assert isinstance(wood.rule, WoodburyUpdate) and wood.batch_size == 6 and wood.epochs == 1
    # smac, two passes of B = 3: the same as four sequential SMAC steps per pass
    actor = tiny_actor(discrete)
    batch = tiny_batch(actor, N)
    by_hand = copy.deepcopy(actor)
    make_update(cfg.override(n_steps=N), actor).step(batch)
    ref = ShermanMorrisonUpdate(by_hand, cfg.actor_lr, cfg.algo_settings.damping, None)
    for _ in range(2):
        for s in range(0, N, 3):
            ref.step(batch.slice(s, s + 3))
    torch.testing.assert_close(theta(actor), theta(by_hand), rtol=1e-6, atol=1e-7)


def test_schedule_refuses_a_batch_it_cannot_split(discrete):
    actor = tiny_actor(discrete)
    with pytest.raises(ValueError, match="M=5 must divide the batch length N=12"):
        MiniBatchSchedule(SGDUpdate(actor, 0.1), 5, 1).step(tiny_batch(actor, N))


def _critic_steps(trainer: Trainer) -> int:
    state = trainer.critic_update.optimizer.state_dict()["state"]
    return int(state[0]["step"]) if state else 0


def test_critic_minibatch_epochs_take_the_stated_number_of_adam_steps():
    cfg = make_config("CartPole-v1", "ac-sgd", 0, {"n_steps": 100, "total_steps": 100,
                                                   "critic_epochs": 3, "critic_batch_size": 25})
    t = Trainer(cfg)
    obs, ret = torch.randn(100, 4), torch.randn(100)
    t.critic_update.step(obs, ret)
    assert _critic_steps(t) == 3 * 4
    t.close()


def test_full_batch_critic_draws_no_random_numbers():
    """The literal reading must stay bit-identical to runs made before the option existed."""
    t = Trainer(make_config("CartPole-v1", "ac-sgd", 0, {"n_steps": 100, "critic_epochs": 5}))
    obs, ret = torch.randn(100, 4), torch.randn(100)
    before = torch.get_rng_state()
    t.critic_update.step(obs, ret)
    assert torch.equal(before, torch.get_rng_state()) and _critic_steps(t) == 5
    t.close()


def test_reward_scaler_against_hand_computed_returns():
    # γ = 0.5, one env; an episode ends at t = 1, so the running return restarts at t = 2.
    scaler = RewardScaler(n_envs=1, gamma=0.5)
    r = np.array([[1.0], [1.0], [1.0]])
    term = np.array([[False], [True], [False]])
    trunc = np.zeros_like(term)
    out = scaler.scale(r, term, trunc)
    seen = np.array([1.0, 1.5, 1.0])                      # G_0 = 1, G_1 = 0.5·1 + 1, G_2 = 1 (after the end)
    prior_n = 1e-4                                         # RunningMeanStd starts at mean 0, var 1, count 1e-4
    mean = seen.mean() * 3 / (3 + prior_n)
    m2 = prior_n * 1.0 + seen.var() * 3 + (seen.mean() - 0.0) ** 2 * prior_n * 3 / (3 + prior_n)
    var = m2 / (3 + prior_n)
    assert scaler.rms.mean == pytest.approx(mean) and scaler.rms.var == pytest.approx(var)
    np.testing.assert_allclose(out, r / np.sqrt(var + 1e-8))
    assert scaler.returns[0] == 1.0                         # carried into the next rollout
    scaler.scale(np.array([[2.0]]), np.zeros((1, 1), bool), np.zeros((1, 1), bool))
    assert scaler.returns[0] == 0.5 * 1.0 + 2.0


def test_reward_scaling_changes_the_critic_targets_not_the_logged_returns():
    base = make_config("CartPole-v1", "ac-sgd", 0, {"total_steps": 2000})
    plain = Trainer(base)  # built and run one after the other: both draw from torch's global RNG
    row_p, eps_p = plain.train_iteration()
    scaled = Trainer(base.override(normalize_reward=True))
    row_s, eps_s = scaled.train_iteration()
    assert [e.ret for e in eps_p] == [e.ret for e in eps_s]   # same seed, same rollout, raw returns logged
    assert row_p["train/critic_loss"] != row_s["train/critic_loss"]
    assert scaled.reward_scaler is not None and scaled.reward_scaler.rms.count > 1000
    plain.close()
    scaled.close()


def test_a_substep_that_collapses_sigma_is_skipped_not_raised():
    """σ = exp(log σ) underflows to 0 after a huge step: later sub-steps see non-finite values and skip."""
    actor = tiny_actor(False, dtype=torch.float32)
    batch = tiny_batch(actor, N, dtype=torch.float32)
    with torch.no_grad():
        actor.log_std.fill_(-1e4)
    info = MiniBatchSchedule(SGDUpdate(actor, 0.1), batch_size=4, epochs=1).step(batch)
    assert info.skipped == 3 and info.skip_reason == "non-finite step"
