"""The Stable-Baselines3 algorithm: it learns CartPole, round-trips through save/load, keeps SB3's machinery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.callbacks import BaseCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.evaluation import evaluate_policy  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from natpg.curvature import sherman_morrison_solve  # noqa: E402
from natpg.integrations.sb3 import SMAC, actor_parameters, critic_parameters  # noqa: E402
from natpg.updates.base import flatten  # noqa: E402

# A learning curve is not a fixed number across CPUs (floating-point results differ), so the margins are set
# from ten seeds, each of which must clear them widely. 30k steps, actor_lr = 2e-2 (5e-2 was unstable: its
# deterministic evaluation fell to 33 for one seed of ten at 40k steps). Two measures:
#  * deterministic evaluation, 10 episodes of an env seeded 10_000 (apart from training): an untrained policy
#    gets about 10; margin 50. Seeds 0–9, AMD EPYC (2 cores, OMP_NUM_THREADS=1, torch 2.13.0, SB3 2.9.2):
#    209.1 175.6 500.0 288.3 157.7 132.5 193.1 161.3 160.1 120.1   (min 120.1 = 2.4 × the margin)
#  * mean return of the last 50 training episodes: a uniformly random policy gets 22.7; margin 2 × 22.7 = 45.4.
#    Seeds 0–9: 139.6 126.9 103.6 85.7 115.5 106.7 115.5 100.2 86.8 94.7   (min 85.7 = 1.9 × the margin)
# The test runs seed 0.
EVAL_MARGIN = 50.0
TRAIN_MARGIN = 2 * 22.7


@pytest.mark.slow
def test_smac_learns_cartpole_past_the_margin():
    model = SMAC("MlpPolicy", "CartPole-v1", actor_lr=2e-2, seed=0, stats_window_size=50).learn(30_000)
    trained = float(np.mean([e["r"] for e in model.ep_info_buffer]))
    mean, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=1, seed=10_000), n_eval_episodes=10,
                              deterministic=True)
    assert mean > EVAL_MARGIN and trained > TRAIN_MARGIN, (mean, trained)


def test_save_load_round_trips_parameters_predictions_adam_state_and_skip_counter(tmp_path):
    model = SMAC("MlpPolicy", "CartPole-v1", n_steps=200, actor_lr=5e-2, seed=0).learn(1000)
    model.skips.record(True, "a skipped update")  # the guards' counter travels with the model
    model.save(tmp_path / "smac")
    loaded = SMAC.load(tmp_path / "smac")
    assert (loaded.actor_lr, loaded.damping) == (model.actor_lr, model.damping)
    assert (loaded.skips.total, loaded.skips.limit, loaded.skips.last_reason) == (1, 10, "a skipped update")
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    assert np.array_equal(a1, a2)
    for p, q in zip(model.policy.parameters(), loaded.policy.parameters()):
        assert torch.equal(p, q)
    # the critic's Adam moments are saved too
    s1, s2 = model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()
    assert s1["state"] and all(torch.equal(s1["state"][k][m], s2["state"][k][m])
                               for k in s1["state"] for m in ("exp_avg", "exp_avg_sq"))


def test_parameters_are_split_by_module_into_actor_and_critic():
    model = SMAC("MlpPolicy", "Pendulum-v1", n_steps=8)
    actor, critic = actor_parameters(model.policy), critic_parameters(model.policy)
    assert {id(p) for p in actor}.isdisjoint(id(p) for p in critic)
    assert {id(p) for p in actor} | {id(p) for p in critic} == {id(p) for p in model.policy.parameters()}
    assert any(p is model.policy.log_std for p in actor)


class _Snapshot(BaseCallback):
    """Counts finished rollouts: SB3 callbacks keep working around the replaced update."""

    def __init__(self):
        super().__init__()
        self.rollouts = 0

    def _on_rollout_end(self) -> None:
        self.rollouts += 1

    def _on_step(self) -> bool:
        return True


def test_one_update_is_smac_on_the_actor_and_adam_on_the_critic():
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0))
    model = SMAC("MlpPolicy", env, n_steps=16, actor_lr=0.1, damping=0.3, seed=0)
    cb = _Snapshot()
    model.learn(32, callback=cb)  # one rollout of 2 × 16 steps, one update
    assert cb.rollouts == 1 and model._n_updates == 1

    # Recompute the expected actor step from the rollout buffer at the pre-update parameters.
    fresh = SMAC("MlpPolicy", VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0)), n_steps=16,
                 actor_lr=0.1, damping=0.3, seed=0)
    data = next(model.rollout_buffer.get(batch_size=None))
    _, logp, _ = fresh.policy.evaluate_actions(data.observations, data.actions.long().flatten())
    params = actor_parameters(fresh.policy)
    n = logp.shape[0]
    g = flatten(torch.autograd.grad((logp * data.advantages).mean(), params, retain_graph=True))
    mean_score = flatten(torch.autograd.grad(logp.mean(), params))
    expected = flatten([p.detach() for p in params]) + 0.1 * sherman_morrison_solve(g, mean_score, 0.3)
    got = flatten([p.detach() for p in actor_parameters(model.policy)])
    assert n == 32
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    # VecNormalize statistics were updated by SB3's rollout collection
    assert env.obs_rms.count > 32


def test_bad_hyper_parameter_is_named():
    with pytest.raises(ValueError, match="damping=0 must be a finite number > 0"):
        SMAC("MlpPolicy", "CartPole-v1", damping=0)
