"""The score kernel: the fast MLP implementation pinned to the autograd reference, and its explicit selection."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

import natpg.scores
from conftest import tiny_actor, tiny_batch
from natpg.scores import AutogradScores, MLPScores, actor_outputs, select_score_kernel
from natpg.updates import NaturalCGUpdate, SGDUpdate, ShermanMorrisonUpdate, WoodburyUpdate

TOL = {torch.float64: {"rtol": 1e-12, "atol": 1e-13}, torch.float32: {"rtol": 2e-5, "atol": 2e-6}}


def kernels(actor) -> tuple[AutogradScores, MLPScores]:
    params = list(actor.parameters())
    return AutogradScores(params, actor_outputs(actor)), MLPScores(actor, params)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("n", [1, 10], ids=["B=1", "B=10"])
def test_mlp_kernel_equals_the_autograd_reference(discrete, dtype, n):
    """Every output of the interface — rows [g; Wℓ], g alone, per-sample scores, log-probs — both ways."""
    actor = tiny_actor(discrete, hidden=(5, 4), dtype=dtype)
    batch = tiny_batch(actor, n, dtype=dtype)
    ref, fast = kernels(actor)
    gen = torch.Generator().manual_seed(2)
    # a general row, ℓ̄ (one constant on all samples: the contraction's block form), a group mean on a sub-run
    weights = torch.stack([torch.randn(n, generator=gen, dtype=dtype), torch.full((n,), 1.0 / n, dtype=dtype),
                           torch.zeros(n, dtype=dtype).index_fill_(0, torch.arange(n // 2, n), 0.5)])
    tol = TOL[dtype]

    rows_ref, logp_ref = ref.rows(batch, weights)
    rows_fast, logp_fast = fast.rows(batch, weights)
    torch.testing.assert_close(rows_fast, rows_ref, **tol)
    torch.testing.assert_close(logp_fast, logp_ref, **tol)

    scores_ref, lp_ref = ref.sample_scores(batch)
    scores_fast, lp_fast = fast.sample_scores(batch)
    torch.testing.assert_close(scores_fast, scores_ref, **tol)
    torch.testing.assert_close(lp_fast, lp_ref, **tol)
    # the rows are the stated contraction of the per-sample scores
    cot = torch.cat([(batch.advantages / n)[None], weights])
    torch.testing.assert_close(rows_ref, cot @ scores_ref, **tol)

    g_ref, _ = ref.gradient(batch)
    g_fast, _ = fast.gradient(batch)
    torch.testing.assert_close(g_fast, g_ref, **tol)


def test_entropy_enters_only_g_and_only_the_autograd_kernel(discrete):
    actor = tiny_actor(discrete)
    batch = tiny_batch(actor, 6)
    ref, fast = kernels(actor)
    c, w = 0.3, torch.full((1, 6), 1.0 / 6, dtype=torch.float64)
    dist = actor(batch.obs)
    j = (dist.log_prob(batch.actions) * batch.advantages).mean() + c * dist.entropy().mean()
    g_ref = torch.cat([t.reshape(-1) for t in torch.autograd.grad(j, list(actor.parameters()))])
    rows, _ = ref.rows(batch, w, ent_coef=c)
    torch.testing.assert_close(rows[0], g_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(rows[1], ref.rows(batch, w)[0][1])
    torch.testing.assert_close(ref.gradient(batch, c)[0], g_ref, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="no entropy term"):
        fast.rows(batch, w, ent_coef=c)


def test_selection_is_explicit_and_logged(caplog, monkeypatch):
    monkeypatch.setattr(natpg.scores, "_logged", set())  # as in a fresh process: nothing logged yet
    caplog.set_level(logging.INFO, logger="natpg.scores")
    actor = tiny_actor(True, obs_dim=3, hidden=(7,))
    assert ShermanMorrisonUpdate(actor, 0.1, 0.1).score_kernel == "mlp"
    assert WoodburyUpdate(actor, 0.1, 0.1, 2).score_kernel == "mlp"
    assert SGDUpdate(actor, 0.1).score_kernel == "autograd"  # g by one backward pass of J, the rule's default
    assert SGDUpdate(actor, 0.1, scores="mlp").score_kernel == "mlp"
    assert NaturalCGUpdate(actor, 0.1).score_kernel == "autograd"
    smac_ent = ShermanMorrisonUpdate(actor, 0.1, 0.1, ent_coef=0.01)
    assert smac_ent.score_kernel == "autograd" and not smac_ent.single_sample_path
    assert ShermanMorrisonUpdate(actor, 0.1, 0.1, 1).single_sample_path
    text = caplog.text
    assert "smac: MLP score kernel" in text and "NumPy per-sample scores for B = 1" in text
    assert "smac: autograd score kernel (ent_coef > 0" in text
    # logged once per distinct choice
    n = caplog.text.count("smac: MLP score kernel")
    ShermanMorrisonUpdate(actor, 0.1, 0.1)
    assert caplog.text.count("smac: MLP score kernel") == n == 1


def test_an_mlp_kernel_that_does_not_apply_is_refused_with_the_reason():
    actor = tiny_actor(False)
    with torch.no_grad():
        actor.body[1] = nn.ReLU()
    with pytest.raises(ValueError, match="not a Linear/Tanh stack"):
        select_score_kernel(actor, list(actor.parameters()), "mlp")
    assert select_score_kernel(actor, list(actor.parameters())).name == "autograd"
    frozen = tiny_actor(False)
    frozen.log_std.requires_grad_(False)
    assert ShermanMorrisonUpdate(frozen, 0.1, 0.1).score_kernel == "autograd"
    with pytest.raises(ValueError, match="needs the autograd score kernel"):
        NaturalCGUpdate(tiny_actor(True), 0.1, scores="mlp")


def test_single_sample_path_refuses_batches_of_another_dtype():
    actor = tiny_actor(True, dtype=torch.float64)
    batch = tiny_batch(actor, 4)
    batch.advantages = batch.advantages.float()
    with pytest.raises(ValueError, match="parameters' dtype"):
        ShermanMorrisonUpdate(actor, 0.1, 0.1, 1).step(batch)


def test_per_sample_scores_read_a_flat_theta():
    actor = tiny_actor(False, hidden=(5, 4))
    batch = tiny_batch(actor, 3)
    ref, fast = kernels(actor)
    theta = fast.flat.get().numpy().copy()
    score = fast.single_sample(theta)
    ell = np.empty_like(theta)
    score(batch.obs[0].numpy(), batch.actions[0].numpy(), ell)
    np.testing.assert_allclose(ell, ref.sample_scores(batch)[0][0].numpy(), rtol=1e-12, atol=1e-13)
    theta += 0.1  # the scorer follows θ; the actor's parameters do not move
    score(batch.obs[0].numpy(), batch.actions[0].numpy(), ell)
    fast.flat.set_(torch.from_numpy(theta))
    np.testing.assert_allclose(ell, ref.sample_scores(batch)[0][0].numpy(), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="theta must be"):
        actor.numpy_policy(np.float64, theta=theta[:-1])
