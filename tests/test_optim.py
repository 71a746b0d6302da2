"""The drop-in optimizers: same steps as the update rules, and a dense float64 reference."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_actor, tiny_batch
from natpg.optim import SMNG, NaturalCG, WoodburyNG
from natpg.updates import NaturalCGUpdate, ShermanMorrisonUpdate, WoodburyUpdate
from natpg.updates.base import flatten

ROOT = Path(__file__).resolve().parents[1]


def _flat(module) -> torch.Tensor:
    return flatten([p.detach() for p in module.parameters()]).clone()


def _dense_reference_step(actor, batch, lr, damping):
    """``lr · (λI + ℓ̄ℓ̄ᵀ)⁻¹ g`` with per-sample scores from N separate backward passes and a dense solve."""
    params = list(actor.parameters())
    scores = []
    for i in range(len(batch)):
        logp = actor.distribution(batch.obs[i:i + 1]).log_prob(batch.actions[i:i + 1]).sum()
        scores.append(flatten(torch.autograd.grad(logp, params)))
    L = torch.stack(scores)                       # (N, d)
    g = (L * batch.advantages[:, None]).mean(0)
    mean_score = L.mean(0)
    F = damping * torch.eye(L.shape[1], dtype=L.dtype) + torch.outer(mean_score, mean_score)
    return lr * torch.linalg.solve(F, g)


def test_smng_matches_a_dense_solve(discrete):
    actor = tiny_actor(discrete)
    batch = tiny_batch(actor, 16)
    expected = _dense_reference_step(actor, batch, lr=0.05, damping=0.1)
    before = _flat(actor)
    opt = SMNG(actor.parameters(), lr=0.05, damping=0.1)
    info = opt.step(actor.log_prob(batch.obs, batch.actions), batch.advantages)
    torch.testing.assert_close(_flat(actor) - before, expected, rtol=1e-9, atol=1e-12)
    assert info.update_norm == pytest.approx(float(expected.norm()))


@pytest.mark.parametrize("kind", ["smng", "woodbury", "cg"])
def test_optimizer_takes_the_same_step_as_the_update_rule(discrete, kind):
    actor = tiny_actor(discrete)
    twin = copy.deepcopy(actor)
    batch = tiny_batch(actor, 12)
    if kind == "smng":
        opt, rule = SMNG(actor.parameters(), lr=0.1, damping=0.3), ShermanMorrisonUpdate(twin, 0.1, 0.3)
    elif kind == "woodbury":
        opt, rule = WoodburyNG(actor.parameters(), lr=0.1, damping=0.3, rank=3), WoodburyUpdate(twin, 0.1, 0.3, 3)
    else:
        opt, rule = NaturalCG(actor.parameters(), lr=0.1, damping=0.3, cg_iters=5), NaturalCGUpdate(twin, 0.1, 0.3, 5)
    for _ in range(2):  # two steps: the second starts from moved parameters
        dist = actor.distribution(batch.obs)
        logp = dist.log_prob(batch.actions)
        info = opt.step(logp, batch.advantages, dist) if kind == "cg" else opt.step(logp, batch.advantages)
        ref = rule.step(batch)
        torch.testing.assert_close(_flat(actor), _flat(twin), rtol=1e-10, atol=1e-12)
        assert info.update_norm == pytest.approx(ref.update_norm) and info.update_norm > 0


def test_lr_scheduler_and_state_dict_drive_the_step():
    actor = tiny_actor(True)
    batch = tiny_batch(actor, 8)
    opt = SMNG(actor.parameters(), lr=0.2, damping=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    twin = copy.deepcopy(actor)
    rule = ShermanMorrisonUpdate(twin, 0.2, 0.1)
    for lr in (0.2, 0.1):
        opt.step(actor.log_prob(batch.obs, batch.actions), batch.advantages)
        rule.lr = lr
        rule.step(batch)
        sched.step()
        torch.testing.assert_close(_flat(actor), _flat(twin))
    state = opt.state_dict()
    assert state["param_groups"][0]["lr"] == pytest.approx(0.05) and state["param_groups"][0]["damping"] == 0.1


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": 0.0}, "lr=0.0 must be a number > 0"),
    ({"damping": -1.0}, "damping=-1.0 must be a number > 0"),
])
def test_bad_hyper_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SMNG(torch.nn.Linear(2, 2).parameters(), **kwargs)


def test_bad_inputs_to_step_are_named():
    net = torch.nn.Linear(3, 2)
    opt = SMNG(net.parameters())
    logp = torch.distributions.Categorical(logits=net(torch.randn(5, 3))).log_prob(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="requires grad"):
        opt.step(logp.detach(), torch.ones(5))
    with pytest.raises(ValueError, match="advantages has 4 entries, log_probs 5"):
        opt.step(logp, torch.ones(4))
    with pytest.raises(ValueError, match="one parameter group"):
        SMNG([{"params": [net.weight]}, {"params": [net.bias]}])


def test_plain_pytorch_example_trains_a_few_iterations(tmp_path):
    script = ROOT / "examples" / "smng_cartpole.py"
    out = subprocess.run([sys.executable, str(script), "--iterations", "3", "--n-steps", "500"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("iteration")]
    assert len(lines) == 3
    assert all("update_norm" in ln for ln in lines)
