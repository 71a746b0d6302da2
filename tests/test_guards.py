"""Numerical faults never reach the parameters: the update is skipped and the skip is logged."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_actor, tiny_batch
from natpg import make_config
from natpg.cli import app
from natpg.guards import SkipCounter, TrainingDiverged
from natpg.trainer import Trainer
from natpg.config import StepRule
from natpg.updates import (AdamUpdate, ActorBatch, NaturalCGUpdate, SGDUpdate, ShermanMorrisonUpdate, StepSize,
                           WoodburyUpdate)


def rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def params_finite(module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


FAULTS = {
    "NaNReward": ("natpg-test/NaNReward-v0", 2, "non-finite reward"),
    "InfReward": ("natpg-test/InfReward-v0", 2, "non-finite reward"),
    "InfObs": ("natpg-test/InfObs-v0", 3, "non-finite observation"),
    "NaNObs": ("natpg-test/NaNObs-v0", 3, "non-finite observation"),
}
CASES = [(a, f) for a in ["smac", "ac-cg", "ac-adam", "ac-sgd", "woodbury"] for f in ("NaNReward", "InfObs")]
CASES += [("smac", "InfReward"), ("smac", "NaNObs"), ("smac-kl", "NaNReward"), ("smac-kl", "InfObs")]
KL_STEP = {"step_rule": "kl", "backtrack_iters": 5}


@pytest.mark.parametrize("algo,fault", CASES)
def test_injected_fault_skips_that_update_and_training_goes_on(tmp_path, algo, fault):
    env_id, bad_iteration, reason = FAULTS[fault]
    extra = KL_STEP if algo.endswith("-kl") else {}
    cfg = make_config(env_id, algo.removesuffix("-kl"), 0, {"total_steps": 4000, **extra})
    trainer = Trainer(cfg)
    before = [p.detach().clone() for p in trainer.actor.parameters()]
    snapshots = []
    trainer.run(tmp_path / "run", on_iteration=lambda row: snapshots.append(
        [p.detach().clone() for p in trainer.actor.parameters()]))
    log = rows(tmp_path / "run" / "iterations.csv")
    assert len(log) == 4
    for r in log:
        skipped = int(r["iteration"]) == bad_iteration
        assert int(r["train/skipped_updates"]) == int(skipped), r
        assert (r["train/skip_reason"] == reason) if skipped else r["train/skip_reason"] == ""
    # the skipped iteration left θ exactly where the previous one had put it
    prev = before if bad_iteration == 1 else snapshots[bad_iteration - 2]
    assert all(torch.equal(a, b) for a, b in zip(prev, snapshots[bad_iteration - 1]))
    assert params_finite(trainer.actor) and params_finite(trainer.critic)


@pytest.mark.parametrize("algo", ["smac", "ac-cg", "ac-sgd", "woodbury", "ac-adam", "smac-kl", "ac-sgd-kl"])
def test_huge_rewards_leave_parameters_and_policy_finite(tmp_path, algo):
    extra = KL_STEP if algo.endswith("-kl") else {}
    cfg = make_config("natpg-test/HugeReward-v0", algo.removesuffix("-kl"), 0, {"total_steps": 3000, **extra})
    trainer = Trainer(cfg)
    trainer.run(tmp_path / "run")
    assert params_finite(trainer.actor) and params_finite(trainer.critic)
    obs = torch.randn(64, 4)
    with torch.no_grad():
        dist = trainer.actor(obs)
        assert bool(torch.isfinite(dist.log_prob(dist.sample())).all())
    log = rows(tmp_path / "run" / "iterations.csv")
    # iteration 2 saw rewards of 1e30: its critic loss overflows; whatever the rule did was either
    # applied with a finite outcome or skipped and logged with a reason
    second = log[1]
    assert int(second["train/skipped_updates"]) == 0 or second["train/skip_reason"]


def test_persistent_faults_stop_the_run_with_a_clear_error(tmp_path):
    cfg = make_config("natpg-test/AlwaysNaN-v0", "smac", 0, {"total_steps": 20_000, "max_consecutive_skips": 3})
    trainer = Trainer(cfg)
    with pytest.raises(TrainingDiverged, match=r"3 consecutive updates skipped .*last reason: non-finite reward"):
        trainer.run(tmp_path / "run")
    log = rows(tmp_path / "run" / "iterations.csv")
    assert [int(r["train/skipped_updates"]) for r in log] == [1, 1, 1]
    assert params_finite(trainer.actor)


def test_cli_reports_divergence_in_one_line(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--env", "natpg-test/AlwaysNaN-v0", "--steps", "20000", "--quiet",
                                      "--set", "max_consecutive_skips=2", "--out", str(out)])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "natpg: error: training stopped: 2 consecutive updates skipped" in lines[0]
    assert len(rows(out / "iterations.csv")) == 2


def test_skip_counter_resets_on_success():
    c = SkipCounter(limit=2)
    c.record(True, "a")
    c.record(False)
    c.record(True, "b")
    assert not c.exhausted and c.total == 2
    c.record(True, "c")
    assert c.exhausted and "last reason: c" in str(c.error())


@pytest.mark.parametrize("make", [
    lambda a: SGDUpdate(a, 0.1), lambda a: AdamUpdate(a, 0.1), lambda a: ShermanMorrisonUpdate(a, 0.1, 0.1),
    lambda a: ShermanMorrisonUpdate(a, 0.1, 0.1, batch_size=1), lambda a: WoodburyUpdate(a, 0.1, 0.1, 3),
    lambda a: NaturalCGUpdate(a, 0.1), lambda a: NaturalCGUpdate(a, 0.1, line_search=True),
    lambda a: ShermanMorrisonUpdate(a, 0.1, 0.1, step_size=StepSize(StepRule.KL)),
    lambda a: ShermanMorrisonUpdate(a, 0.1, 0.1, batch_size=1, step_size=StepSize(StepRule.KL, backtrack_iters=3)),
    lambda a: SGDUpdate(a, 0.1, step_size=StepSize(StepRule.KL, backtrack_iters=3)),
    lambda a: WoodburyUpdate(a, 0.1, 0.1, 3, step_size=StepSize(StepRule.KL)),
    lambda a: NaturalCGUpdate(a, 0.1, max_kl=0.01, line_search=True),
], ids=["sgd", "adam", "smac", "smac-B1", "woodbury", "cg", "cg-linesearch", "smac-kl", "smac-B1-kl-linesearch",
        "sgd-kl-linesearch", "woodbury-kl", "cg-kl-linesearch"])
@pytest.mark.parametrize("fault", ["inf_advantage", "inf_action", "huge_obs"])
def test_update_rules_never_write_non_finite_parameters(make, fault):
    actor = tiny_actor(discrete=False)
    batch = tiny_batch(actor, 12)
    obs, act, adv = batch.obs.clone(), batch.actions.clone(), batch.advantages.clone()
    if fault == "inf_advantage":
        adv[2] = math.inf
    elif fault == "inf_action":
        act[5] = math.inf  # log-probability −inf
    else:
        obs[1] = 1e300
        act[1] = 1e300
    before = [p.detach().clone() for p in actor.parameters()]
    info = make(actor).step(ActorBatch(obs, act, adv))
    assert params_finite(actor)
    if not all(torch.equal(a, b) for a, b in zip(before, actor.parameters())):
        # a rule may apply finite sub-steps (B = 1 walks the batch) but must report the skipped ones
        assert info.skipped >= 1
    else:
        assert info.skipped >= 1 and info.skip_reason


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_flat_copy_finiteness_is_exact_per_dtype_and_does_not_overflow(dtype):
    from natpg.guards import _FlatCopy

    big = torch.finfo(dtype).max
    tensors = [torch.full((70,), big, dtype=dtype), torch.full((3, 5), -big, dtype=dtype),
               torch.arange(4)]  # integer tensors are copied but not tested
    copy = _FlatCopy()
    copy.copy_from(tensors)
    assert copy.finite()  # a sum of these overflows; x·0 does not
    for bad in (math.inf, -math.inf, math.nan):
        for position in (0, 69):
            tensors[0][position] = bad
            copy.copy_from(tensors)
            assert not copy.finite()
            tensors[0][position] = big
    copy.copy_from(tensors)
    assert copy.finite()
    tensors[0].zero_()
    copy.copy_back()  # the test leaves the copy whole: copy_back still writes back what was copied in
    assert torch.equal(tensors[0], torch.full((70,), big, dtype=dtype))
