"""The speed paths compute exactly what the generic paths compute (the benchmarks time them; this checks them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_actor, tiny_batch
from natpg.flat import flatten
from natpg.updates import ShermanMorrisonUpdate

N = 10


def autograd_scores(actor, batch) -> torch.Tensor:
    """(N, d) per-sample scores ℓ_i, one autograd call per sample."""
    rows = []
    for i in range(len(batch)):
        lp = actor.log_prob(batch.obs[i:i + 1], batch.actions[i:i + 1]).sum()
        rows.append(flatten(torch.autograd.grad(lp, list(actor.parameters()))))
    return torch.stack(rows)


def test_single_sample_fast_path_equals_the_generic_loop(discrete):
    actor = tiny_actor(discrete)
    batch = tiny_batch(actor, N)
    fast = ShermanMorrisonUpdate(tiny_actor(discrete), lr=0.2, damping=0.1, batch_size=1)
    info_fast = fast.step(batch)
    slow_actor = tiny_actor(discrete)
    slow = ShermanMorrisonUpdate(slow_actor, lr=0.2, damping=0.1, batch_size=1, scores="autograd")  # kernel rows
    assert fast.single_sample_path and not slow.single_sample_path
    info_slow = slow.step(batch)
    torch.testing.assert_close(flatten(fast.params), flatten(list(slow_actor.parameters())),
                               rtol=1e-10, atol=1e-12)
    assert info_fast.actor_loss == pytest.approx(info_slow.actor_loss, rel=1e-10)
    assert info_fast.update_norm == pytest.approx(info_slow.update_norm, rel=1e-10)
    assert info_fast.extras == info_slow.extras == {"n_substeps": N}


def test_a_body_without_a_fast_path_still_gets_the_same_smac_step(discrete):
    actor = tiny_actor(discrete)
    with torch.no_grad():
        actor.body[1] = nn.ReLU()  # no longer a Linear/Tanh stack: generic batched VJP
    assert actor.linear_layers() is None
    batch = tiny_batch(actor, N)
    before = flatten([p.detach() for p in actor.parameters()]).clone()
    s = autograd_scores(actor, batch)
    g, u = (s * batch.advantages[:, None]).mean(0), s.mean(0)
    x = torch.linalg.solve(0.1 * torch.eye(len(g), dtype=g.dtype) + torch.outer(u, u), g)
    ShermanMorrisonUpdate(actor, lr=0.3, damping=0.1).step(batch)
    torch.testing.assert_close(flatten([p.detach() for p in actor.parameters()]) - before, 0.3 * x,
                               rtol=1e-9, atol=1e-12)


def test_numpy_actions_follow_the_policy_distribution():
    torch.manual_seed(0)
    cat = tiny_actor(True, obs_dim=3, dtype=torch.float32)
    obs = np.array([[0.3, -1.0, 0.5]], dtype=np.float32)
    draws = np.concatenate([cat.act_numpy(obs) for _ in range(20000)])
    probs = cat.distribution(torch.from_numpy(obs)).probs[0].detach().numpy()
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20000, probs, atol=0.015)

    gauss = tiny_actor(False, obs_dim=3, dtype=torch.float32)
    draws = np.concatenate([gauss.act_numpy(obs) for _ in range(20000)])
    dist = gauss.distribution(torch.from_numpy(obs))
    np.testing.assert_allclose(draws.mean(0), dist.mean[0].detach().numpy(), atol=0.05)
    np.testing.assert_allclose(draws.std(0), dist.stddev[0].detach().numpy(), rtol=0.05)


def test_numpy_actions_see_in_place_updates_and_replaced_parameters():
    actor = tiny_actor(False, obs_dim=3, dtype=torch.float32)
    obs = np.array([[0.3, -1.0, 0.5], [1.0, 0.0, -2.0]], dtype=np.float32)
    with torch.no_grad():
        actor.log_std.fill_(-30.0)  # σ ≈ 0: the sample is the mean

    def mean(o):
        return actor.distribution(torch.from_numpy(o)).mean.detach().numpy()

    np.testing.assert_allclose(actor.act_numpy(obs), mean(obs), rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for p in actor.body.parameters():
            p.add_(0.5)  # in place, as every update rule moves θ
    np.testing.assert_allclose(actor.act_numpy(obs), mean(obs), rtol=1e-5, atol=1e-6)
    actor.to(torch.float64)  # new storage: the views must follow
    o64 = obs.astype(np.float64)
    np.testing.assert_allclose(actor.act_numpy(o64), mean(o64), rtol=1e-10, atol=1e-12)
    theta = flatten([p.detach() for p in actor.parameters()])
    torch.nn.utils.vector_to_parameters(theta + 0.25, actor.parameters())  # `.data =` per parameter
    np.testing.assert_allclose(actor.act_numpy(o64), mean(o64), rtol=1e-10, atol=1e-12)
    state = {k: v + 0.5 for k, v in actor.state_dict().items()}
    actor.load_state_dict(state, assign=True)  # new Parameter objects
    np.testing.assert_allclose(actor.act_numpy(o64), mean(o64), rtol=1e-10, atol=1e-12)


def test_same_seed_same_numpy_actions():
    actor = tiny_actor(True, dtype=torch.float32)
    obs = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    torch.manual_seed(7)
    a = [actor.act_numpy(obs) for _ in range(5)]
    torch.manual_seed(7)
    b = [actor.act_numpy(obs) for _ in range(5)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_a_deep_copied_actor_draws_fresh_noise_and_uses_its_own_parameters():
    import copy

    actor = tiny_actor(False, obs_dim=3, dtype=torch.float32)
    obs = np.array([[0.3, -1.0, 0.5]], dtype=np.float32)
    actor.act_numpy(obs)  # fills the caches that the copy inherits
    clone = copy.deepcopy(actor)
    assert not np.array_equal(clone.act_numpy(obs), clone.act_numpy(obs))
    with torch.no_grad():
        clone.log_std.fill_(-30.0)
        clone.body[0].bias.add_(1.0)
    expected = clone.distribution(torch.from_numpy(obs)).mean.detach().numpy()
    np.testing.assert_allclose(clone.act_numpy(obs), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(actor.distribution(torch.from_numpy(obs)).mean.detach().numpy(), expected)


def test_rollout_sampler_follows_the_policy_distribution():
    torch.manual_seed(0)
    obs = np.array([[0.3, -1.0, 0.5]], dtype=np.float32)
    cat = tiny_actor(True, obs_dim=3, dtype=torch.float32)
    act = cat.numpy_policy(np.float32).sampler(20000, 1)
    draws = np.concatenate([act(obs) for _ in range(20000)])
    probs = cat.distribution(torch.from_numpy(obs)).probs[0].detach().numpy()
    np.testing.assert_allclose(np.bincount(draws, minlength=3) / 20000, probs, atol=0.015)
    gauss = tiny_actor(False, obs_dim=3, dtype=torch.float32)
    act = gauss.numpy_policy(np.float32).sampler(20000, 1)
    draws = np.concatenate([act(obs) for _ in range(20000)])
    dist = gauss.distribution(torch.from_numpy(obs))
    np.testing.assert_allclose(draws.mean(0), dist.mean[0].detach().numpy(), atol=0.05)
    np.testing.assert_allclose(draws.std(0), dist.stddev[0].detach().numpy(), rtol=0.05)
    with pytest.raises(IndexError, match="20000 calls"):
        act(obs)


@pytest.mark.parametrize("batch", [1, 3])
def test_rollout_sampler_mean_is_the_policy_mean_and_seeded(batch):
    actor = tiny_actor(False, obs_dim=3, dtype=torch.float32)
    obs = np.random.default_rng(0).standard_normal((batch, 3)).astype(np.float32)
    torch.manual_seed(3)
    a = actor.numpy_policy(np.float32).sampler(4, batch)
    torch.manual_seed(3)
    b = actor.numpy_policy(np.float32).sampler(4, batch)
    for _ in range(4):
        np.testing.assert_array_equal(a(obs), b(obs))
    with torch.no_grad():
        actor.log_std.fill_(-30.0)  # σ ≈ 0: the sample is the mean
    act = actor.numpy_policy(np.float32).sampler(1, batch)
    expected = actor.distribution(torch.from_numpy(obs)).mean.detach().numpy()
    np.testing.assert_allclose(act(obs), expected, rtol=1e-5, atol=1e-6)
