"""natpg.optim: the preconditioners and the drop-in optimizers, against dense float64 solves and the update rules."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_actor, tiny_batch
from test_updates import dense_fisher, scores
from torch import nn
from torch.distributions import Categorical
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from natpg.optim import (
    SMNG,
    NaturalCG,
    NaturalCGPreconditioner,
    ShermanMorrisonPreconditioner,
    WoodburyNG,
    WoodburyPreconditioner,
)
from natpg.updates import ActorBatch, NaturalCGUpdate, ShermanMorrisonUpdate, WoodburyUpdate
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


def test_plain_pytorch_example_trains_a_few_iterations(tmp_path):
    script = ROOT / "examples" / "smng_cartpole.py"
    out = subprocess.run([sys.executable, str(script), "--iterations", "3", "--n-steps", "500"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("iteration")]
    assert len(lines) == 3
    assert all("update_norm" in ln for ln in lines)


# ----------------------------------------------------------------------------- preconditioners

LAM = 0.3


def _grads(params) -> torch.Tensor:
    return flatten([p.grad for p in params]).clone()


def _backward_ppo_loss(actor, batch):
    """An arbitrary loss, not ``-mean(log π · A)``: PPO's clipped objective and an entropy bonus; graph kept."""
    dist = actor.distribution(batch.obs)
    logp = dist.log_prob(batch.actions)
    old = logp.detach() + 0.2 * torch.linspace(-1, 1, len(batch), dtype=logp.dtype)
    ratio = (logp - old).exp()
    adv = batch.advantages
    loss = -torch.min(ratio * adv, ratio.clamp(0.9, 1.1) * adv).mean() - 0.01 * dist.entropy().mean()
    loss.backward(retain_graph=True)
    return dist, logp


@pytest.mark.parametrize("kind", ["smac", "woodbury", "cg"])
def test_preconditioned_grad_is_the_dense_float64_solve_for_any_loss(discrete, kind):
    actor = tiny_actor(discrete)
    batch = tiny_batch(actor, 12)
    params = list(actor.parameters())
    dist, logp = _backward_ppo_loss(actor, batch)
    g = _grads(params)
    L = scores(actor, batch)
    eye = torch.eye(len(g), dtype=torch.float64)
    if kind == "smac":
        l_bar = L.mean(0)
        F, precond = LAM * eye + torch.outer(l_bar, l_bar), ShermanMorrisonPreconditioner(params, LAM)
    elif kind == "woodbury":
        U = torch.stack([grp.mean(0) for grp in L.split(4)], dim=1) / 3 ** 0.5
        F, precond = LAM * eye + U @ U.T, WoodburyPreconditioner(params, LAM, rank=3)
    else:
        F, precond = dense_fisher(actor, batch.obs) + LAM * eye, NaturalCGPreconditioner(params, LAM, 3 * len(g))
    assert bool(precond.step(logp, dist))
    tol = {"rtol": 1e-6, "atol": 1e-9} if kind == "cg" else {"rtol": 1e-9, "atol": 1e-12}
    torch.testing.assert_close(_grads(params), torch.linalg.solve(F, g), **tol)


@pytest.mark.parametrize("kind", ["smac", "woodbury", "cg"])
def test_sgd_on_the_preconditioned_grad_takes_the_optimizers_step(discrete, kind):
    """For ``L = −mean(log π · A)``, preconditioner + torch.optim.SGD is SMNG (WoodburyNG, NaturalCG)."""
    actor = tiny_actor(discrete)
    twin = copy.deepcopy(actor)
    batch = tiny_batch(actor, 12)
    lr, params = 0.1, list(twin.parameters())
    opt, precond = {"smac": (SMNG(actor.parameters(), lr, LAM), ShermanMorrisonPreconditioner(params, LAM)),
                    "woodbury": (WoodburyNG(actor.parameters(), lr, LAM, 3), WoodburyPreconditioner(params, LAM, 3)),
                    "cg": (NaturalCG(actor.parameters(), lr, LAM, 5), NaturalCGPreconditioner(params, LAM, 5))}[kind]
    sgd = torch.optim.SGD(params, lr=lr)
    for _ in range(2):  # the second step starts from moved parameters
        dist = actor.distribution(batch.obs)
        logp = dist.log_prob(batch.actions)
        info = opt.step(logp, batch.advantages, dist) if kind == "cg" else opt.step(logp, batch.advantages)
        dist = twin.distribution(batch.obs)
        logp = dist.log_prob(batch.actions)
        sgd.zero_grad()
        (-(logp * batch.advantages).mean()).backward(retain_graph=True)
        precond.step(logp, dist)
        sgd.step()
        torch.testing.assert_close(_flat(twin), _flat(actor), rtol=1e-10, atol=1e-12)
        assert info.update_norm > 0


@pytest.mark.parametrize("kind", ["smac", "woodbury", "cg"])
def test_parameters_without_grad_are_skipped_and_unreached_ones_do_not_raise(kind):
    actor = tiny_actor(True)
    batch = tiny_batch(actor, 8)
    critic, unused = nn.Linear(3, 1).double(), nn.Linear(3, 3).double()
    params = [*actor.parameters(), *critic.parameters(), *unused.parameters()]
    dist = actor.distribution(batch.obs)
    logp = dist.log_prob(batch.actions)
    (-(logp * batch.advantages).mean() + critic(batch.obs).pow(2).mean()).backward(retain_graph=True)
    g_actor, g_critic = _grads(actor.parameters()), _grads(critic.parameters())
    precond = {"smac": ShermanMorrisonPreconditioner(params, LAM), "woodbury": WoodburyPreconditioner(params, LAM, 2),
               "cg": NaturalCGPreconditioner(params, LAM)}[kind]
    assert bool(precond.step(logp, dist))
    assert all(p.grad is None for p in unused.parameters())
    # The critic has score 0 (and no Fisher): its block of F̂ is λI, so its gradient is divided by λ.
    torch.testing.assert_close(_grads(critic.parameters()), g_critic / LAM)
    if kind != "smac":
        return
    l_bar = scores(actor, batch).mean(0)
    expected = torch.linalg.solve(LAM * torch.eye(len(l_bar), dtype=torch.float64) + torch.outer(l_bar, l_bar), g_actor)
    torch.testing.assert_close(_grads(actor.parameters()), expected, rtol=1e-9, atol=1e-12)
    # SMNG over the same list: the actor moves, the others do not, and nothing raises.
    before = [p.detach().clone() for p in [*critic.parameters(), *unused.parameters()]]
    SMNG(params, lr=0.1).step(actor.log_prob(batch.obs, batch.actions), batch.advantages)
    assert all(torch.equal(b, p) for b, p in zip(before, [*critic.parameters(), *unused.parameters()]))


class _SharedTrunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk, self.pi, self.v = nn.Sequential(nn.Linear(3, 5), nn.Tanh()), nn.Linear(5, 3), nn.Linear(5, 1)


def _shared_trunk_case(retain_graph: bool):
    torch.manual_seed(0)
    net = _SharedTrunk().double()
    obs, returns = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    h = net.trunk(obs)
    dist = Categorical(logits=net.pi(h))
    logp = dist.log_prob(torch.arange(10) % 3)
    adv = torch.randn(10, dtype=torch.float64)
    loss = -(logp * adv).mean() + 0.5 * (net.v(h).squeeze(-1) - returns).pow(2).mean()
    loss.backward(retain_graph=retain_graph)
    return net, logp, [*net.trunk.parameters(), *net.pi.parameters()]


def test_shared_trunk_preconditions_trunk_and_head_and_leaves_the_value_head():
    net, logp, actor_params = _shared_trunk_case(retain_graph=True)
    g, g_value = _grads(actor_params), _grads(net.v.parameters())
    L = torch.stack([flatten(torch.autograd.grad(logp[i], actor_params, retain_graph=True)) for i in range(10)])
    l_bar = L.mean(0)  # the trunk's entries hold the policy's scores through it
    expected = torch.linalg.solve(LAM * torch.eye(len(g), dtype=torch.float64) + torch.outer(l_bar, l_bar), g)
    ShermanMorrisonPreconditioner(actor_params, LAM).step(logp)
    torch.testing.assert_close(_grads(actor_params), expected, rtol=1e-9, atol=1e-12)
    assert torch.equal(_grads(net.v.parameters()), g_value)


def test_a_graph_freed_by_backward_is_one_clear_error():
    _, logp, actor_params = _shared_trunk_case(retain_graph=False)
    with pytest.raises(RuntimeError, match=re.escape("call loss.backward(retain_graph=True) before precond.step")):
        ShermanMorrisonPreconditioner(actor_params, LAM).step(logp)


def test_grad_clipping_after_preconditioning_scales_the_natural_direction():
    actor = tiny_actor(False)
    batch = tiny_batch(actor, 8)
    params = list(actor.parameters())
    _, logp = _backward_ppo_loss(actor, batch)
    ShermanMorrisonPreconditioner(params, LAM).step(logp)
    x = _grads(params)
    before = _flat(actor)
    nn.utils.clip_grad_norm_(params, max_norm=0.1 * float(x.norm()))
    torch.optim.SGD(params, lr=0.5).step()
    torch.testing.assert_close(_flat(actor) - before, -0.5 * 0.1 * x, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["smac", "woodbury", "cg"])
def test_preconditioned_grads_keep_the_parameters_dtype(discrete, dtype, kind):
    actor = tiny_actor(discrete, dtype=dtype)
    batch = tiny_batch(actor, 12, dtype=dtype)
    params = list(actor.parameters())
    dist, logp = _backward_ppo_loss(actor, batch)
    precond = {"smac": ShermanMorrisonPreconditioner(params), "woodbury": WoodburyPreconditioner(params, rank=3),
               "cg": NaturalCGPreconditioner(params)}[kind]
    assert bool(precond.step(logp, dist))
    assert all(p.grad.dtype == dtype for p in params)


def test_a_non_finite_direction_zeroes_the_grads_and_says_so():
    actor = tiny_actor(True)
    batch = tiny_batch(actor, 8)
    params = list(actor.parameters())
    logp = actor.log_prob(batch.obs, batch.actions)
    adv = batch.advantages.clone()
    adv[3] = float("nan")
    (-(logp * adv).mean()).backward(retain_graph=True)
    assert not bool(ShermanMorrisonPreconditioner(params).step(logp))
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in params)


# ----------------------------------------------------------------------------- devices

def _meta_case(discrete: bool, n: int = 8):
    """A tiny actor and batch on the ``meta`` device: shapes and devices, no values."""
    actor = tiny_actor(discrete).to("meta")
    obs = torch.empty(n, 3, dtype=torch.float64, device="meta")
    actions = (torch.empty(n, dtype=torch.int64, device="meta") if discrete
               else torch.empty(n, 2, dtype=torch.float64, device="meta"))
    return actor, ActorBatch(obs, actions, torch.empty(n, dtype=torch.float64, device="meta"))


def test_the_closed_form_preconditioner_runs_on_the_meta_device_without_a_host_read(discrete):
    """No helper tensor on the CPU and nothing read back: the whole step runs where the parameters are."""
    actor, batch = _meta_case(discrete)
    params = list(actor.parameters())
    logp = actor.log_prob(batch.obs, batch.actions)
    (-(logp * batch.advantages).mean()).backward(retain_graph=True)
    ok = ShermanMorrisonPreconditioner(params).step(logp)
    assert ok.device.type == "meta"
    assert all(p.grad.device.type == "meta" and p.grad.shape == p.shape for p in params)


class _StandInHostReads(TorchDispatchMode):
    """Answers every host read of a meta tensor (``.item()``, ``bool()``, ``float()``) with a stand-in value.

    ``True`` for a bool, 0 for an integer, 1.0 for a float: the guards pass, Cholesky succeeds, CG
    stops. With it a whole step runs on ``meta``, so any helper tensor made on the CPU instead of
    the parameters' device shows up in :attr:`off_device` (torch lets a CPU tensor absorb a meta
    one in place, so a mismatch need not raise).
    """

    def __init__(self) -> None:
        super().__init__()
        self.off_device: list[str] = []
        """The ops that made a tensor elsewhere than on ``meta``."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].is_meta:
            t = args[0]
            return True if t.dtype == torch.bool else 1.0 if t.is_floating_point() else 0
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                self.off_device.append(str(func))
        return out


@pytest.mark.parametrize("kind", ["woodbury-precond", "cg-precond", "smng", "woodbury-ng", "cg-ng",
                                  "smac-rule-minibatches", "smac-rule-entropy", "woodbury-rule", "cg-rule"])
def test_every_step_runs_on_the_meta_device(discrete, kind):
    """Every helper tensor follows the parameters' device (host reads answered by :class:`_StandInHostReads`)."""
    actor, batch = _meta_case(discrete)
    params = list(actor.parameters())
    dist = actor.distribution(batch.obs)
    logp = dist.log_prob(batch.actions)
    with _StandInHostReads() as mode:
        if kind.endswith("precond"):
            (-(logp * batch.advantages).mean()).backward(retain_graph=True)
            precond = WoodburyPreconditioner(params, rank=2) if kind.startswith("woodbury") else NaturalCGPreconditioner(params)
            precond.step(logp, dist)
            assert all(p.grad.device.type == "meta" for p in params)
        elif kind == "smng":
            SMNG(params).step(logp, batch.advantages)
        elif kind == "woodbury-ng":
            WoodburyNG(params, rank=2).step(logp, batch.advantages)
        elif kind == "cg-ng":
            NaturalCG(params, cg_iters=2).step(logp, batch.advantages, dist)
        elif kind == "smac-rule-minibatches":
            ShermanMorrisonUpdate(actor, lr=0.1, damping=0.1, batch_size=4).step(batch)
        elif kind == "smac-rule-entropy":
            ShermanMorrisonUpdate(actor, lr=0.1, damping=0.1, ent_coef=0.01).step(batch)
        elif kind == "woodbury-rule":
            WoodburyUpdate(actor, lr=0.1, damping=0.1, rank=2).step(batch)
        else:
            NaturalCGUpdate(actor, lr=0.1, cg_iters=2, max_kl=0.01, line_search=True, backtrack_iters=2).step(batch)
    assert mode.off_device == []
    assert all(p.device.type == "meta" for p in params)


# ----------------------------------------------------------------------------- bad inputs

def _lin():
    return nn.Linear(3, 2).parameters()


@pytest.mark.parametrize("make,message", [
    (lambda: SMNG(_lin(), lr=0.0), "lr=0.0 must be a finite number > 0"),
    (lambda: SMNG(_lin(), lr=True), "lr=True must be a finite number > 0"),
    (lambda: SMNG(_lin(), lr=float("inf")), "lr=inf must be a finite number > 0"),
    (lambda: SMNG(_lin(), damping=float("inf")), "damping=inf must be a finite number > 0"),
    (lambda: SMNG(_lin(), damping=float("nan")), "damping=nan must be a finite number > 0"),
    (lambda: SMNG(_lin(), damping=-1.0), "damping=-1.0 must be a finite number > 0"),
    (lambda: WoodburyNG(_lin(), rank=True), "rank=True must be an integer >= 1"),
    (lambda: NaturalCG(_lin(), cg_iters=0), "cg_iters=0 must be an integer >= 1"),
    (lambda: NaturalCG(_lin(), max_kl=float("inf")), "max_kl=inf must be a finite number > 0"),
    (lambda: ShermanMorrisonPreconditioner(_lin(), damping=float("inf")), "damping=inf must be a finite number > 0"),
    (lambda: WoodburyPreconditioner(_lin(), rank=0), "rank=0 must be an integer >= 1"),
    (lambda: NaturalCGPreconditioner(_lin(), cg_iters=1.5), "cg_iters=1.5 must be an integer >= 1"),
    (lambda: SMNG([{"params": [nn.Parameter(torch.zeros(1))]}, {"params": [nn.Parameter(torch.zeros(1))]}]),
     "takes one parameter group"),
])
def test_bad_hyper_parameters_are_one_clear_error(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


def _policy_log_probs(n: int):
    net = nn.Linear(3, 2)
    dist = Categorical(logits=net(torch.randn(n, 3)), validate_args=False)  # torch cannot validate an empty batch
    return net, dist, dist.log_prob(torch.zeros(n, dtype=torch.long))


def _bad_step(case: str) -> None:
    net, dist, logp = _policy_log_probs(0 if case.endswith("empty") else 32)
    if case == "smng-empty":
        SMNG(net.parameters()).step(logp, torch.zeros(0))
    elif case == "smng-advantages-shape":
        SMNG(net.parameters()).step(logp, torch.ones(2, 16))
    elif case == "smng-detached":
        SMNG(net.parameters()).step(logp.detach(), torch.ones(32))
    elif case == "smng-after-backward":
        opt = SMNG(net.parameters())
        (-logp.mean()).backward()
        opt.step()
    elif case == "smng-lr-from-a-scheduler":
        opt = SMNG(net.parameters())
        opt.param_groups[0]["lr"] = float("inf")
        opt.step(logp, torch.ones(32))
    elif case == "cg-without-distribution":
        NaturalCG(net.parameters()).step(logp, torch.ones(32))
    else:
        (-logp.sum()).backward(retain_graph=True)
        if case == "precond-empty":
            ShermanMorrisonPreconditioner(net.parameters()).step(logp)
        elif case == "precond-2d":
            ShermanMorrisonPreconditioner(net.parameters()).step(logp.reshape(2, 16))
        elif case == "precond-without-log-probs":
            ShermanMorrisonPreconditioner(net.parameters()).step()
        else:
            NaturalCGPreconditioner(net.parameters()).step(logp)


@pytest.mark.parametrize("case,error,message", [
    ("smng-empty", ValueError, "log_probs is empty: the batch needs at least one sample"),
    ("smng-advantages-shape", ValueError, "advantages has shape (2, 16), log_probs (32,)"),
    ("smng-detached", ValueError, "log_probs must require grad"),
    ("smng-after-backward", TypeError, "SMNG.step needs the per-sample log-probabilities and the advantages"),
    ("smng-lr-from-a-scheduler", ValueError, "lr=inf must be a finite number > 0"),
    ("cg-without-distribution", TypeError, "NaturalCG.step needs the action distribution too"),
    ("precond-empty", ValueError, "log_probs is empty"),
    ("precond-2d", ValueError, "log_probs must be a 1-D float tensor"),
    ("precond-without-log-probs", TypeError, "needs the per-sample log-probabilities: precond.step(log_probs)"),
    ("cg-precond-without-distribution", TypeError, "NaturalCGPreconditioner.step needs the action distribution"),
])
def test_bad_inputs_to_step_are_one_clear_error(case, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _bad_step(case)
