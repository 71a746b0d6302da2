"""Nothing non-finite is ever written into the critic, its Adam state, an update rule's optimizer state,
the observation normaliser's statistics, or a checkpoint — in natpg's trainer and in the SB3 ``SMAC`` class.

Each test fails when its guard is removed (checked once by removing it).
"""

from __future__ import annotations

import csv
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import FaultyCartPole, tiny_actor, tiny_batch
from natpg import make_config
from natpg.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from natpg.cli import app
from natpg.guards import (NonFiniteState, StepGuard, TrainingDiverged, guarded_step, non_finite_entries,
                          optimizer_state_finite)
from natpg.normalization import ObsNormalizer
from natpg.trainer import Trainer
from natpg.updates import ActorBatch, AdamUpdate

for _id, _kwargs in [("natpg-test/HugeReward1e308-v0", {"reward_at": (1500,), "reward_value": 1e308}),
                     ("natpg-test/NaNObsEarly-v0", {"obs_at": (1500,), "obs_value": float("nan")})]:
    if _id not in gym.registry:
        gym.register(_id, entry_point=FaultyCartPole, kwargs=_kwargs)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def finite(*modules) -> bool:
    return all(bool(torch.isfinite(p).all()) for m in modules for p in m.parameters())


# ----------------------------------------------------------------------------- the step guard itself

def test_guarded_step_undoes_a_step_that_overflows_and_keeps_a_good_one():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)

    def backward():
        opt.zero_grad()
        net(torch.randn(8, 3)).pow(2).mean().backward()

    backward()
    assert guarded_step(opt) == ""  # a good step is taken
    params = [p.detach().clone() for p in net.parameters()]
    state = [{k: v.clone() for k, v in s.items()} for s in opt.state.values()]
    opt.param_groups[0]["lr"] = 1e308
    backward()
    assert "non-finite" in guarded_step(opt)
    # parameters and Adam moments are exactly the snapshot (bit for bit)
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))
    assert all(torch.equal(old[k], v) for old, s in zip(state, opt.state.values()) for k, v in s.items())
    next(net.parameters()).grad[0, 0] = math.nan
    assert guarded_step(opt) == "non-finite gradient"
    assert guarded_step(opt, loss=math.inf) == "non-finite loss"
    assert finite(net) and optimizer_state_finite(opt)


def _critic_and_data(dtype=torch.float32, seed=0):
    from natpg.policies import Critic
    torch.manual_seed(seed)
    critic = Critic(5, (8, 7)).to(dtype)
    obs, returns = torch.randn(64, 5, dtype=dtype), 3 * torch.randn(64, dtype=dtype)
    return critic, obs, returns


def _backward(critic, opt, obs, returns):
    opt.zero_grad(set_to_none=True)
    loss = (returns - critic(obs)).pow(2).mean()
    loss.backward()
    return float(loss.detach())


def _bits(critic, opt):
    """Every parameter and optimizer-state tensor as bytes, and the param groups' settings."""
    state = opt.state_dict()
    return ([p.detach().numpy().tobytes() for p in critic.parameters()],
            {i: {k: v.numpy().tobytes() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
             for i, s in state["state"].items()},
            state["param_groups"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_step_guard_is_bit_identical_to_plain_adam_over_many_steps(dtype):
    """Nothing goes wrong: StepGuard.step (and guarded_step) give exactly the bits of opt.step()."""
    runs = []
    for mode in ("plain", "guard", "guarded_step"):
        critic, obs, returns = _critic_and_data(dtype)
        opt = torch.optim.Adam(critic.parameters(), lr=3e-3)
        guard = StepGuard(opt)
        gen = torch.Generator().manual_seed(1)
        for _ in range(300):
            idx = torch.randperm(64, generator=gen)[:16]
            loss = _backward(critic, opt, obs[idx], returns[idx])
            if mode == "plain":
                opt.step()
            else:
                assert (guard.step(loss) if mode == "guard" else guarded_step(opt, loss)) == ""
        runs.append(_bits(critic, opt))
    assert runs[0] == runs[1] == runs[2]


def test_step_guard_restores_exactly_and_a_restored_run_equals_one_without_the_bad_steps():
    """Bad steps — lr=1e308 on the very first (before Adam has any state), later finite gradients of 1e30
    whose squares overflow Adam's second moment — are each undone bit for bit, so the run equals a
    plain-Adam run that never took those steps, state and settings included."""
    bad = {0, 5, 6, 40}
    runs = []
    for guarded in (True, False):
        critic, obs, returns = _critic_and_data()
        opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
        guard = StepGuard(opt)
        for i in range(60):
            if not guarded and i in bad:
                continue
            _backward(critic, opt, obs[i % 4::4], returns[i % 4::4])
            if not guarded:
                opt.step()
                continue
            before = _bits(critic, opt)
            if i == 0:
                opt.param_groups[0]["lr"] = 1e308
            elif i in bad:
                for p in critic.parameters():
                    p.grad.fill_(1e30)
            reason = guard.step()
            if i in bad:
                assert reason == "step made parameters or optimizer state non-finite; restored"
                opt.param_groups[0]["lr"] = 1e-2
                assert _bits(critic, opt) == before
                assert (len(opt.state) == 0) == (i == 0)  # no state is left behind by a first step undone
            else:
                assert reason == ""
        assert finite(critic) and optimizer_state_finite(opt)
        runs.append(_bits(critic, opt))
    assert runs[0] == runs[1]


def _guarded_critic(lr: float, good_steps: int):
    """A critic, its Adam, a StepGuard and the data, after ``good_steps`` guarded steps (all kept)."""
    critic, obs, returns = _critic_and_data()
    opt = torch.optim.Adam(critic.parameters(), lr=lr)
    guard = StepGuard(opt)
    for _ in range(good_steps):
        _backward(critic, opt, obs, returns)
        assert guard.step() == ""
    return critic, opt, guard, obs, returns


def test_step_guard_restores_the_state_of_a_load_state_dict_and_flags_only_non_finite_values():
    critic, opt, guard, obs, returns = _guarded_critic(1e-2, 3)
    other, _, _ = _critic_and_data(seed=1)
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-2)
    _backward(other, other_opt, obs, returns)
    other_opt.step()
    opt.load_state_dict(other_opt.state_dict())  # new state tensors: the guard lays its buffers out again
    before = _bits(critic, opt)
    _backward(critic, opt, obs, returns)
    opt.param_groups[0]["lr"] = 1e308
    assert "restored" in guard.step()
    opt.param_groups[0]["lr"] = 1e-2
    assert _bits(critic, opt) == before
    # finite but huge gradients (their sum or norm would overflow) are not mistaken for non-finite ones
    for p in critic.parameters():
        p.grad = torch.full_like(p, 3e38)
    assert guard.step() != "non-finite gradient"
    for bad in (math.inf, -math.inf, math.nan):
        _backward(critic, opt, obs, returns)
        before = _bits(critic, opt)
        list(critic.parameters())[-1].grad[0] = bad
        assert guard.step() == "non-finite gradient"
        assert _bits(critic, opt) == before
    assert guard.step(torch.tensor(math.nan)) == "non-finite loss"


def test_step_guard_restores_when_the_step_raises():
    """After 40 steps Adam's step size lr/(1 − β₁ᵗ) at lr=1e308 is a finite double but no float32:
    ``opt.step()`` raises halfway through the parameters; the guard puts everything back, then re-raises."""
    critic, opt, guard, obs, returns = _guarded_critic(1e-3, 40)
    _backward(critic, opt, obs, returns)
    before = _bits(critic, opt)
    opt.param_groups[0]["lr"] = 1e308
    with pytest.raises(RuntimeError, match="overflow"):
        guard.step()
    opt.param_groups[0]["lr"] = 1e-3
    assert _bits(critic, opt) == before


# ----------------------------------------------------------------------------- critic (natpg trainer)

def test_huge_critic_lr_leaves_critic_adam_state_and_checkpoint_finite(tmp_path):
    """``--set critic_lr=1e308``: every critic step is undone, counted as a skip, and the stop rule ends the run."""
    cfg = make_config("CartPole-v1", "smac", 0, {"total_steps": 10_000, "critic_lr": 1e308,
                                                  "max_consecutive_skips": 3})
    trainer = Trainer(cfg)
    with pytest.raises(TrainingDiverged, match="3 consecutive updates skipped.*last reason: critic: step made"):
        trainer.run(tmp_path / "run")
    assert finite(trainer.critic, trainer.actor) and optimizer_state_finite(trainer.critic_update.optimizer)
    log = rows(tmp_path / "run" / "iterations.csv")
    assert [int(r["train/skipped_updates"]) for r in log] == [1, 1, 1]
    assert all(r["train/skip_reason"].startswith("critic:") for r in log)
    state = load_checkpoint(tmp_path / "run")
    assert state["iteration"] == 3  # the final checkpoint holds the state the run stopped in ...
    assert non_finite_entries({k: state[k] for k in ("actor", "critic", "critic_opt", "update")}) == []


def test_cli_huge_critic_lr_stops_in_one_line_with_a_finite_checkpoint(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--env", "CartPole-v1", "--steps", "10000", "--quiet", "--out",
                                      str(out), "--set", "critic_lr=1e308", "--set", "max_consecutive_skips=2"])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "2 consecutive updates skipped" in lines[0] and "critic" in lines[0]
    state = load_checkpoint(out)
    assert state["iteration"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in state["critic"].values())


@pytest.mark.parametrize("algo", ["ac-sgd", "smac", "ac-cg"])
def test_a_step_to_parameters_that_give_no_valid_policy_is_undone(tmp_path, algo):
    """η = 1e3 on Pendulum: θ stays finite but σ = exp(log σ) becomes 0 (torch refuses the distribution)."""
    cfg = make_config("Pendulum-v1", algo, 0, {"total_steps": 5000, "actor_lr": 1e3, "max_consecutive_skips": 2})
    trainer = Trainer(cfg)
    before = [p.detach().clone() for p in trainer.actor.parameters()]
    with pytest.raises(TrainingDiverged, match="last reason: update made the policy non-finite; parameters restored"):
        trainer.run(tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.actor.parameters()))


# ----------------------------------------------------------------------------- update rules' optimizer state

def test_ac_adam_never_writes_an_overflowing_moment():
    """Advantages of 1e25 in float32: g² overflows Adam's second moment; the step must be skipped."""
    actor = tiny_actor(discrete=False, dtype=torch.float32)
    batch = tiny_batch(actor, 12, dtype=torch.float32)
    rule = AdamUpdate(actor, 1e-3)
    rule.step(batch)  # one good step: the state exists
    good = [{k: v.clone() for k, v in s.items()} for s in rule.optimizer.state.values()]
    before = [p.detach().clone() for p in actor.parameters()]
    info = rule.step(ActorBatch(batch.obs, batch.actions, batch.advantages * 1e25))
    assert info.skipped == 1 and "non-finite" in info.skip_reason
    assert optimizer_state_finite(rule.optimizer) and finite(actor)
    assert all(torch.equal(a, b) for a, b in zip(before, actor.parameters()))
    assert all(torch.equal(old[k], v) for old, s in zip(good, rule.optimizer.state.values()) for k, v in s.items())


def test_ac_adam_huge_rewards_run_keeps_its_adam_state_finite(tmp_path):
    trainer = Trainer(make_config("natpg-test/HugeReward-v0", "ac-adam", 0, {"total_steps": 3000}))
    trainer.run(tmp_path / "run")  # the checkpoint guard would raise if a moment had overflowed
    assert optimizer_state_finite(trainer.update.optimizer) and optimizer_state_finite(trainer.critic_update.optimizer)


# ----------------------------------------------------------------------------- observation normaliser

def test_normaliser_leaves_non_finite_and_overflowing_rows_out():
    norm, ref = ObsNormalizer((2,)), ObsNormalizer((2,))
    good = np.array([[1.0, 2.0], [3.0, 5.0]])
    batch = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 5.0], [0.0, np.inf]])
    assert norm.update(batch) == 2
    ref.update(good)
    assert np.array_equal(norm.rms.mean, ref.rms.mean) and np.array_equal(norm.rms.var, ref.rms.var)
    assert norm.rms.count == ref.rms.count and norm.rejected_rows == 2
    # finite but overflowing (the variance of ±1e300 is inf): the whole merge is dropped
    assert norm.update(np.array([[1e300, 0.0], [-1e300, 0.0]])) == 0
    assert np.array_equal(norm.rms.mean, ref.rms.mean) and np.isfinite(norm.rms.var).all()
    assert norm.update(np.full((3, 2), np.nan)) == 0 and norm.rejected_rows == 7


def test_one_nan_observation_does_not_poison_normalize_obs(tmp_path):
    """One NaN observation at step 1500: only iteration 2 is skipped; statistics and checkpoint stay finite."""
    cfg = make_config("natpg-test/NaNObsEarly-v0", "smac", 0, {"total_steps": 5000, "normalize_obs": True})
    trainer = Trainer(cfg)
    trainer.run(tmp_path / "run")
    log = rows(tmp_path / "run" / "iterations.csv")
    assert [int(r["train/skipped_updates"]) for r in log] == [0, 1, 0, 0, 0]
    assert log[1]["train/skip_reason"] == "non-finite observation"
    assert np.isfinite(trainer.normalizer.rms.mean).all() and np.isfinite(trainer.normalizer.rms.var).all()
    assert trainer.normalizer.rejected_rows == 1
    obs_rms = load_checkpoint(tmp_path / "run")["obs_rms"]
    assert np.isfinite(obs_rms["mean"]).all() and np.isfinite(obs_rms["var"]).all()


# ----------------------------------------------------------------------------- checkpoint (last line of defence)

def test_checkpoint_with_a_non_finite_tensor_is_refused_and_the_old_one_kept(tmp_path):
    critic = torch.nn.Linear(2, 1)
    save_checkpoint(tmp_path, {"critic": critic.state_dict(), "collector": {"ep_return": np.array([np.nan])}})
    old = checkpoint_path(tmp_path).read_bytes()  # env data (a NaN reward mid-episode) is allowed
    with torch.no_grad():
        critic.bias.fill_(math.nan)
    state = {"critic": critic.state_dict(), "obs_rms": {"var": np.array([1.0, np.inf])}}
    with pytest.raises(NonFiniteState, match=r"^refusing to save a checkpoint in .*: non-finite values in "
                                             r"critic\.bias, obs_rms\.var$"):
        save_checkpoint(tmp_path, state)
    assert checkpoint_path(tmp_path).read_bytes() == old
    assert not list(checkpoint_path(tmp_path).parent.glob(".*.tmp"))


# ----------------------------------------------------------------------------- Stable-Baselines3 SMAC

sb3 = pytest.importorskip("stable_baselines3")


@pytest.mark.parametrize("env_id", ["natpg-test/NaNReward-v0", "natpg-test/HugeReward1e308-v0"])
def test_sb3_smac_skips_a_rollout_with_a_bad_reward_and_keeps_the_critic_finite(env_id):
    from stable_baselines3.common.logger import Logger

    from natpg.integrations.sb3 import SMAC

    records: dict[str, list] = {"train/skipped_updates": [], "train/skip_reason": []}

    class Capture(Logger):
        def record(self, key, value, exclude=None) -> None:
            records.get(key, []).append(value)
            super().record(key, value, exclude)

    model = SMAC("MlpPolicy", env_id, n_steps=500, seed=0)
    model.set_logger(Capture(folder=None, output_formats=[]))
    model.learn(3000)  # six rollouts; the bad reward (step 1500) is in the third
    assert finite(model.policy) and optimizer_state_finite(model.policy.optimizer)
    assert records["train/skipped_updates"] == [0, 0, 1, 0, 0, 0]
    assert records["train/skip_reason"][2] == "non-finite reward" and model.skips.total == 1


def test_sb3_smac_persistent_faults_stop_with_natpgs_error():
    from natpg.integrations.sb3 import SMAC

    model = SMAC("MlpPolicy", "natpg-test/AlwaysNaN-v0", n_steps=200, seed=0, max_consecutive_skips=3)
    with pytest.raises(TrainingDiverged, match=r"3 consecutive updates skipped .*last reason: non-finite reward"):
        model.learn(5000)
    assert model.num_timesteps == 600 and finite(model.policy)


def test_sb3_smac_huge_learning_rate_leaves_a_finite_critic():
    from natpg.integrations.sb3 import SMAC

    model = SMAC("MlpPolicy", "CartPole-v1", n_steps=200, critic_lr=1e308, seed=0, max_consecutive_skips=2)
    with pytest.raises(TrainingDiverged, match="critic: step made"):
        model.learn(2000)
    assert finite(model.policy) and optimizer_state_finite(model.policy.optimizer)


def test_sb3_smac_step_that_breaks_the_policy_is_undone():
    """η = 1e14 on Pendulum: the step is finite, but it leaves σ = exp(log σ) at 0 or ∞ (no valid policy)."""
    from natpg.integrations.sb3 import SMAC, actor_parameters

    model = SMAC("MlpPolicy", "Pendulum-v1", n_steps=200, actor_lr=1e14, seed=0, max_consecutive_skips=2)
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(TrainingDiverged, match="policy non-finite; parameters restored"):
        model.learn(2000)
    actor = {id(p) for p in actor_parameters(model.policy)}
    assert all(torch.equal(b, p) for b, p in zip(before, model.policy.parameters()) if id(p) in actor)
    obs = torch.zeros(4, 3)
    _, logp, _ = model.policy.evaluate_actions(obs, torch.zeros(4, 1))
    assert bool(torch.isfinite(logp).all())
