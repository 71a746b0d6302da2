"""Each update rule moves θ by exactly the formula of docs/method.md §2, against a direct float64 computation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.distributions import kl_divergence
from torch.func import functional_call

from conftest import tiny_actor, tiny_batch
from natpg.config import Algo, StepRule, TrainConfig
from natpg.updates import (AdamUpdate, NaturalCGUpdate, SGDUpdate, ShermanMorrisonUpdate, StepSize, WoodburyUpdate,
                           make_update)
from natpg.updates.base import ActorBatch, flatten

D64 = torch.float64
N = 12


def theta(actor) -> torch.Tensor:
    return flatten([p.detach() for p in actor.parameters()]).clone()


def scores(actor, batch: ActorBatch) -> torch.Tensor:
    """Per-sample ℓ_i = ∇_θ log π(a_i|s_i), one autograd call per sample: (N, d)."""
    rows = []
    for i in range(len(batch)):
        lp = actor.log_prob(batch.obs[i:i + 1], batch.actions[i:i + 1]).sum()
        rows.append(flatten(torch.autograd.grad(lp, list(actor.parameters()))))
    return torch.stack(rows)


def pg(actor, batch: ActorBatch) -> torch.Tensor:
    """g = (1/N) Σ ℓ_i A_i."""
    return (scores(actor, batch) * batch.advantages[:, None]).mean(0)


@pytest.fixture
def setup(discrete):
    actor = tiny_actor(discrete)
    return actor, tiny_batch(actor, N)


def test_sgd_step_is_eta_g(setup):
    actor, batch = setup
    before, g = theta(actor), pg(actor, batch)
    info = SGDUpdate(actor, lr=0.3).step(batch)
    torch.testing.assert_close(theta(actor) - before, 0.3 * g, rtol=1e-12, atol=1e-14)
    assert info.update_norm == pytest.approx(float((0.3 * g).norm()), rel=1e-10)
    assert info.skipped == 0


def test_actor_loss_is_pre_update_policy_gradient_loss(setup):
    actor, batch = setup
    with torch.no_grad():
        expected = -float((actor.log_prob(batch.obs, batch.actions) * batch.advantages).mean())
    info = ShermanMorrisonUpdate(actor, lr=0.1, damping=0.1).step(batch)
    assert info.actor_loss == pytest.approx(expected, rel=1e-12)


def test_adam_matches_torch_adam_and_first_step_formula(setup):
    actor, batch = setup
    ref = copy.deepcopy(actor)
    before, g = theta(actor), pg(actor, batch)
    upd = AdamUpdate(actor, lr=0.01)
    upd.step(batch)
    # First Adam step: m̂ = ∇L, v̂ = (∇L)² with L = −J, so Δθ = −lr · ∇L/(|∇L| + ε) = lr · g/(|g| + ε).
    torch.testing.assert_close(theta(actor) - before, 0.01 * g / (g.abs() + 1e-8), rtol=1e-9, atol=1e-12)
    # and three steps agree with torch.optim.Adam run by hand on the loss −(1/N) Σ log π A
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        (-(ref.log_prob(batch.obs, batch.actions) * batch.advantages).mean()).backward()
        opt.step()
    upd.step(batch)
    upd.step(batch)
    torch.testing.assert_close(theta(actor), theta(ref), rtol=1e-12, atol=1e-14)


def damped_solve(L, advantages, lam, U):
    """Dense float64 reference: (λI + U Uᵀ)⁻¹ g with g = (1/N) Σ A_i ℓ_i, the rows of L being the scores ℓ_i."""
    g = (L * advantages[:, None]).mean(0)
    return torch.linalg.solve(lam * torch.eye(len(g), dtype=D64) + U @ U.T, g)


def test_smac_batch_mean_matches_dense_solve(setup):
    actor, batch = setup
    lam, eta = 0.1, 0.05
    before = theta(actor)
    L = scores(actor, batch)
    expected = eta * damped_solve(L, batch.advantages, lam, L.mean(0)[:, None])   # λI + ℓ̄ℓ̄ᵀ
    ShermanMorrisonUpdate(actor, lr=eta, damping=lam).step(batch)
    torch.testing.assert_close(theta(actor) - before, expected, rtol=1e-10, atol=1e-13)


def test_smac_single_sample_is_algorithm_1(setup):
    """B = 1: walk the batch; at the current θ, θ ← θ + η A_i ℓ_i / (λ + ℓ_iᵀ ℓ_i)."""
    actor, batch = setup
    ref = copy.deepcopy(actor)
    lam, eta = 0.1, 0.05
    for i in range(N):
        sample = batch.slice(i, i + 1)
        ell = scores(ref, sample)[0]
        step = eta * sample.advantages[0] * ell / (lam + ell @ ell)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(theta(ref) + step, ref.parameters())
    info = ShermanMorrisonUpdate(actor, lr=eta, damping=lam, batch_size=1).step(batch)
    torch.testing.assert_close(theta(actor), theta(ref), rtol=1e-10, atol=1e-13)
    assert info.extras["n_substeps"] == N


def test_smac_minibatches_are_sequential_dense_solves(setup):
    actor, batch = setup
    ref = copy.deepcopy(actor)
    lam, eta, b = 0.2, 0.05, 4
    for start in range(0, N, b):
        mb = batch.slice(start, start + b)
        L = scores(ref, mb)
        x = damped_solve(L, mb.advantages, lam, L.mean(0)[:, None])
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(theta(ref) + eta * x, ref.parameters())
    ShermanMorrisonUpdate(actor, lr=eta, damping=lam, batch_size=b).step(batch)
    torch.testing.assert_close(theta(actor), theta(ref), rtol=1e-10, atol=1e-13)


def test_smac_gets_g_and_lbar_from_one_backward_pass(setup, monkeypatch):
    actor, batch = setup
    calls = []
    real_grad = torch.autograd.grad

    def counting_grad(*args, **kwargs):
        calls.append(kwargs.get("is_grads_batched", False))
        return real_grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    ShermanMorrisonUpdate(actor, lr=0.1, damping=0.1).step(batch)
    # The Linear/Tanh fast path back-propagates by hand: no autograd call at all.
    assert calls == []
    # Any other actor: ONE batched VJP gives g and ℓ̄ together, never a pass for each.
    monkeypatch.setattr(type(actor), "linear_layers", lambda self: None)
    ShermanMorrisonUpdate(actor, lr=0.1, damping=0.1).step(batch)
    assert calls == [True]


def test_woodbury_rank1_equals_smac(setup):
    actor, batch = setup
    other = copy.deepcopy(actor)
    ShermanMorrisonUpdate(actor, lr=0.05, damping=0.1).step(batch)
    WoodburyUpdate(other, lr=0.05, damping=0.1, rank=1).step(batch)
    torch.testing.assert_close(theta(actor), theta(other), rtol=1e-10, atol=1e-13)


def test_woodbury_full_rank_is_exact_damped_empirical_fisher(setup):
    actor, batch = setup
    lam, eta = 0.1, 0.05
    before = theta(actor)
    L = scores(actor, batch)
    expected = eta * damped_solve(L, batch.advantages, lam, L.T / N ** 0.5)   # λI + (1/N) Σ ℓ_i ℓ_iᵀ
    WoodburyUpdate(actor, lr=eta, damping=lam, rank=N).step(batch)
    torch.testing.assert_close(theta(actor) - before, expected, rtol=1e-9, atol=1e-12)


def test_woodbury_rank_k_uses_group_means(setup):
    actor, batch = setup
    lam, eta, k = 0.1, 0.05, 3
    before = theta(actor)
    L = scores(actor, batch)
    U = torch.stack([grp.mean(0) for grp in L.split(N // k)], dim=1) / k ** 0.5
    expected = eta * damped_solve(L, batch.advantages, lam, U)
    WoodburyUpdate(actor, lr=eta, damping=lam, rank=k).step(batch)
    torch.testing.assert_close(theta(actor) - before, expected, rtol=1e-9, atol=1e-12)


def dense_fisher(actor, obs) -> torch.Tensor:
    """Hessian of the mean KL(π_old ‖ π_θ) at θ_old, by dense float64 autograd."""
    names = [n for n, _ in actor.named_parameters()]
    shapes = [p.shape for _, p in actor.named_parameters()]
    theta0 = theta(actor)
    with torch.no_grad():
        old = actor(obs)

    def kl(flat):
        parts = flat.split([s.numel() for s in shapes])
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return kl_divergence(old, functional_call(actor, params, (obs,))).mean()

    return torch.autograd.functional.hessian(kl, theta0)


def test_natural_cg_matches_dense_fisher_solve(setup):
    actor, batch = setup
    eta, lam = 0.5, 0.1
    before, g = theta(actor), pg(actor, batch)
    F = dense_fisher(actor, batch.obs)
    expected = eta * torch.linalg.solve(F + lam * torch.eye(len(g), dtype=D64), g)
    info = NaturalCGUpdate(actor, lr=eta, cg_damping=lam, cg_iters=len(g) * 3).step(batch)
    torch.testing.assert_close(theta(actor) - before, expected, rtol=1e-6, atol=1e-9)
    assert info.extras["cg_nonpositive_curvature"] == 0.0


def test_natural_cg_ten_iterations_reduce_the_residual(setup):
    actor, batch = setup
    g = pg(actor, batch)
    F = dense_fisher(actor, batch.obs) + 0.1 * torch.eye(len(g), dtype=D64)
    before = theta(actor)
    NaturalCGUpdate(actor, lr=1.0, cg_damping=0.1, cg_iters=10).step(batch)
    x = theta(actor) - before
    assert float((F @ x - g).norm()) < 0.5 * float(g.norm())


def test_natural_cg_max_kl_scales_step_to_the_kl_budget(setup):
    actor, batch = setup
    with torch.no_grad():
        old = actor(batch.obs)
    NaturalCGUpdate(actor, lr=1.0, cg_damping=1e-3, cg_iters=50, max_kl=1e-4).step(batch)
    with torch.no_grad():
        kl = float(kl_divergence(old, actor(batch.obs)).mean())
    # second-order model: ½ xᵀFx = δ; the true KL is close for a small δ
    assert 0.5e-4 < kl < 1.5e-4


def test_natural_cg_failed_line_search_restores_parameters(setup):
    actor, batch = setup
    before = theta(actor)
    # Zero advantages with an entropy bonus: g = c·∇H ≠ 0, so every candidate θ_old + frac·step moves θ, but
    # the surrogate mean(ratio·A) = 0 never strictly beats its value at θ_old: every candidate is rejected and
    # only the restore puts θ back (without it θ would stay at the last, smallest candidate).
    zero = ActorBatch(batch.obs, batch.actions, torch.zeros_like(batch.advantages))
    upd = NaturalCGUpdate(actor, lr=1.0, cg_iters=5, line_search=True, backtrack_iters=4, ent_coef=0.5)
    g, _ = upd.scores.gradient(zero, upd.ent_coef)
    assert float(g.norm()) > 1e-2  # a real step
    info = upd.step(zero)
    assert torch.equal(theta(actor), before)
    assert info.skipped == 1 and "restored" in info.skip_reason
    assert info.extras["line_search_failed"] == 1.0


def test_natural_cg_line_search_rejects_candidates_that_give_no_valid_policy():
    """A huge step sends a Gaussian's σ to 0 or ∞: torch refuses to build it; the candidate is rejected."""
    actor = tiny_actor(discrete=False)
    batch = tiny_batch(actor, N)
    before = theta(actor)
    info = NaturalCGUpdate(actor, lr=1e4, cg_iters=5, line_search=True, backtrack_iters=2).step(batch)
    assert torch.equal(theta(actor), before)
    assert info.skipped == 1 and info.extras["line_search_failed"] == 1.0


def test_natural_cg_line_search_accepts_an_improving_step(setup):
    actor, batch = setup
    info = NaturalCGUpdate(actor, lr=0.05, cg_iters=10, line_search=True).step(batch)
    assert info.skipped == 0 and info.extras["line_search_failed"] == 0.0 and info.update_norm > 0


def test_entropy_bonus_enters_g_in_the_batched_pass(setup):
    actor, batch = setup
    c = 0.3
    dist = actor(batch.obs)
    j = (dist.log_prob(batch.actions) * batch.advantages).mean() + c * dist.entropy().mean()
    g_ref = flatten(torch.autograd.grad(j, list(actor.parameters())))
    upd = ShermanMorrisonUpdate(actor, lr=0.1, damping=0.1, ent_coef=c)
    rows, _ = upd.scores.rows(batch, torch.full((1, N), 1.0 / N, dtype=D64), upd.ent_coef)
    torch.testing.assert_close(rows[0], g_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(rows[1], scores(actor, batch).mean(0), rtol=1e-12, atol=1e-14)


def test_non_finite_step_is_skipped_and_parameters_unchanged(setup):
    actor, batch = setup
    before = theta(actor)
    bad = ActorBatch(batch.obs, batch.actions, batch.advantages.clone())
    bad.advantages[3] = float("nan")
    for upd in (SGDUpdate(actor, 0.1), ShermanMorrisonUpdate(actor, 0.1, 0.1), WoodburyUpdate(actor, 0.1, 0.1, 2),
                NaturalCGUpdate(actor, 0.1), AdamUpdate(actor, 0.1)):
        info = upd.step(bad)
        assert info.skipped >= 1, type(upd).__name__
        assert torch.equal(theta(actor), before), type(upd).__name__


@pytest.mark.parametrize("algo,cls", [(Algo.SMAC, ShermanMorrisonUpdate), (Algo.AC_SGD, SGDUpdate),
                                      (Algo.AC_ADAM, AdamUpdate), (Algo.AC_CG, NaturalCGUpdate),
                                      (Algo.WOODBURY, WoodburyUpdate)])
def test_make_update_builds_the_configured_rule(algo, cls):
    own = {Algo.SMAC: {"damping": 0.3}, Algo.WOODBURY: {"damping": 0.3, "rank": 4},
           Algo.AC_CG: {"cg_damping": 0.2, "cg_iters": 3, "step_rule": "kl", "target_kl": 0.01,
                        "backtrack_iters": 2}}.get(algo, {})
    cfg = TrainConfig.from_dict({"algo": algo, "actor_lr": 0.02, "batch_size": 10 if algo is Algo.SMAC else None, **own})
    upd = make_update(cfg, tiny_actor(True, dtype=torch.float32))
    assert type(upd) is cls and upd.lr == 0.02
    if cls is ShermanMorrisonUpdate:
        assert upd.damping == 0.3 and upd.batch_size == 10
    if cls is WoodburyUpdate:
        assert upd.damping == 0.3 and upd.rank == 4
    if cls is NaturalCGUpdate:
        assert (upd.cg_damping, upd.cg_iters, upd.max_kl) == (0.2, 3, 0.01)
        assert upd.step_size == StepSize(StepRule.KL, 0.01, backtrack_iters=2)
