"""The critic's optimizer: FlatAdam gives torch.optim.Adam's bits, guards like guarded_step, and round-trips checkpoints."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from natpg.critic import CriticUpdate, FlatAdam
from natpg.guards import guarded_step
from natpg.policies import Critic


def _bits(*tensors: torch.Tensor) -> list[bytes]:
    return [t.detach().contiguous().numpy().tobytes() for t in tensors]


def _state_bits(opt: torch.optim.Optimizer) -> list:
    sd = opt.state_dict()
    return [(k, float(s["step"]), _bits(s["exp_avg"], s["exp_avg_sq"])) for k, s in sorted(sd["state"].items())]


def _pair(obs_dim: int, dtype: torch.dtype, lr: float = 1e-3):
    torch.manual_seed(obs_dim)
    ref = Critic(obs_dim).to(dtype)
    flat = copy.deepcopy(ref)
    return ref, torch.optim.Adam(ref.parameters(), lr=lr), flat, FlatAdam(list(flat.parameters()), lr=lr)


def _random_grads(modules, gen: torch.Generator, scale: float = 1.0) -> None:
    shapes = [p.shape for p in modules[0].parameters()]
    grads = [torch.randn(s, generator=gen, dtype=torch.float64) * scale for s in shapes]
    for m in modules:
        for p, g in zip(m.parameters(), grads):
            p.grad = g.to(p.dtype)


def _reference_update(critic, opt, obs, returns, epochs, batch_size):
    """The critic update as it was before FlatAdam: autograd and torch's Adam under the generic guard."""
    loss, skipped, reason = math.nan, 0, ""
    for _ in range(epochs):
        order = torch.randperm(len(returns))
        for start in range(0, len(returns), batch_size):
            idx = order[start:start + batch_size]
            loss = float(critic.value_loss_backward(obs[idx], returns[idx]))
            why = guarded_step(opt, loss)
            if why:
                skipped, reason = skipped + 1, f"critic: {why}"
    return loss, skipped, reason


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("obs_dim", [1, 3, 17, 348])
def test_flat_adam_gives_torch_adams_bits(obs_dim, dtype):
    ref, ref_opt, flat, flat_opt = _pair(obs_dim, dtype)
    gen = torch.Generator().manual_seed(1)
    for i in range(60):
        _random_grads([ref, flat], gen, scale=10.0 ** (i % 5 - 2))
        ref_opt.step()
        flat_opt.step()
    assert _bits(*ref.parameters()) == _bits(*flat.parameters())
    assert _state_bits(ref_opt) == _state_bits(flat_opt)
    buffer = flat_opt._buffer.untyped_storage().data_ptr()  # the flat path was taken: params live in one buffer
    assert all(p.untyped_storage().data_ptr() == buffer for p in flat.parameters())


def test_flat_adam_follows_lr_changes_and_the_critic_update_loop():
    torch.manual_seed(0)
    obs, returns = torch.randn(1000, 17), torch.randn(1000) * 30
    critics = [Critic(17), None]
    critics[1] = copy.deepcopy(critics[0])
    ref_opt = torch.optim.Adam(critics[0].parameters(), lr=1e-3)
    update = CriticUpdate(critics[1], lr=1e-3, epochs=10, batch_size=100)
    assert isinstance(update.optimizer, FlatAdam)
    for it in range(3):
        ref_opt.param_groups[0]["lr"] = update.optimizer.param_groups[0]["lr"] = 1e-3 / (it + 1)
        torch.manual_seed(it)
        loss, skipped, _ = _reference_update(critics[0], ref_opt, obs, returns, epochs=10, batch_size=100)
        assert skipped == 0
        torch.manual_seed(it)
        info = update.step(obs, returns)
        assert info.skipped == 0 and info.loss == loss
    assert _bits(*critics[0].parameters()) == _bits(*critics[1].parameters())
    assert _state_bits(ref_opt) == _state_bits(update.optimizer)


def test_checkpoints_move_between_flat_and_torch_adam():
    ref, ref_opt, flat, flat_opt = _pair(5, torch.float32)
    gen = torch.Generator().manual_seed(2)
    for _ in range(7):
        _random_grads([ref, flat], gen)
        ref_opt.step()
        flat_opt.step()
    # torch → flat: a fresh FlatAdam loads torch's state and carries on with the same bits
    resumed = copy.deepcopy(ref)
    resumed_opt = FlatAdam(list(resumed.parameters()), lr=1e-3)
    resumed_opt.load_state_dict(copy.deepcopy(ref_opt.state_dict()))
    # flat → torch
    back = copy.deepcopy(flat)
    back_opt = torch.optim.Adam(back.parameters(), lr=1e-3)
    back_opt.load_state_dict(copy.deepcopy(flat_opt.state_dict()))
    for _ in range(5):
        _random_grads([ref, resumed, back], gen)
        for opt in (ref_opt, resumed_opt, back_opt):
            opt.step()
    assert _bits(*ref.parameters()) == _bits(*resumed.parameters()) == _bits(*back.parameters())
    assert _state_bits(ref_opt) == _state_bits(resumed_opt) == _state_bits(back_opt)


def test_flat_adam_hands_a_step_without_every_gradient_to_torch():
    ref, ref_opt, flat, flat_opt = _pair(4, torch.float32)
    gen = torch.Generator().manual_seed(3)
    for i in range(6):
        _random_grads([ref, flat], gen)
        if i == 3:  # torch's Adam skips a parameter without a gradient: its step count falls behind the others
            for m in (ref, flat):
                m.body[0].bias.grad = None
        ref_opt.step()
        flat_opt.step()
    assert _bits(*ref.parameters()) == _bits(*flat.parameters())
    assert _state_bits(ref_opt) == _state_bits(flat_opt)


def test_flat_adam_rebinds_a_parameter_whose_storage_was_replaced():
    ref, ref_opt, flat, flat_opt = _pair(4, torch.float32)
    gen = torch.Generator().manual_seed(4)
    for i in range(4):
        _random_grads([ref, flat], gen)
        if i == 2:
            w = flat.body[0].weight
            w.data = w.data.clone()  # e.g. a user's code that swaps the tensor in
        ref_opt.step()
        flat_opt.step()
    assert _bits(*ref.parameters()) == _bits(*flat.parameters())
    assert flat.body[0].weight.untyped_storage().data_ptr() == flat_opt._buffer.untyped_storage().data_ptr()


def test_critic_update_uses_torch_adam_where_flat_buffers_would_change_bits():
    critic = Critic(3, hidden=(8, 7))  # 3·8 = 24 entries: not a multiple of 64
    assert not FlatAdam.supports(list(critic.parameters()))
    assert type(CriticUpdate(critic, lr=1e-3).optimizer) is torch.optim.Adam
    with pytest.raises(ValueError, match="multiple of 64"):
        FlatAdam(list(critic.parameters()))


@pytest.mark.parametrize("first", [True, False])
def test_guarded_step_restores_parameters_moments_and_counts_exactly(first):
    _, _, critic, opt = _pair(6, torch.float32)
    gen = torch.Generator().manual_seed(5)
    if not first:
        for _ in range(3):
            _random_grads([critic], gen)
            assert opt.guarded_step(1.0) == ""
    before = (_bits(*critic.parameters()), _state_bits(opt), len(opt.state))
    _random_grads([critic], gen)
    opt.param_groups[0]["lr"] = 1e308  # the step overflows every parameter
    assert opt.guarded_step(1.0) == "step made parameters or optimizer state non-finite; restored"
    assert (_bits(*critic.parameters()), _state_bits(opt), len(opt.state)) == before
    opt.param_groups[0]["lr"] = 1e-3
    assert opt.guarded_step(1.0) == ""  # and it carries on from the restored state
    assert float(opt.state_dict()["state"][0]["step"]) == (1 if first else 4)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_guarded_step_skips_a_non_finite_gradient_or_loss_without_touching_anything(bad):
    _, _, critic, opt = _pair(6, torch.float32)
    gen = torch.Generator().manual_seed(6)
    _random_grads([critic], gen)
    assert opt.guarded_step(1.0) == ""
    before = (_bits(*critic.parameters()), _state_bits(opt))
    n = sum(p.numel() for p in critic.parameters())
    for position in (0, 31, 32, n - 65, n - 1):  # vectorised body and scalar tail of the dot product
        _random_grads([critic], gen)
        flat_grads = torch.cat([p.grad.view(-1) for p in critic.parameters()])
        flat_grads[position] = bad
        for p, g in zip(critic.parameters(), flat_grads.split([p.numel() for p in critic.parameters()])):
            p.grad = g.view(p.shape).clone()
        assert guarded_step(opt, 1.0) == "non-finite gradient"
    _random_grads([critic], gen)
    assert guarded_step(opt, bad) == "non-finite loss"
    assert (_bits(*critic.parameters()), _state_bits(opt)) == before


def test_finiteness_check_does_not_overflow_on_large_finite_values():
    _, _, critic, opt = _pair(6, torch.float32)
    for p in critic.parameters():
        p.grad = torch.full_like(p, 3e38)  # a sum of these overflows; x·0 does not
    assert opt._finite(torch.cat([p.grad.view(-1) for p in critic.parameters()]))


@pytest.mark.parametrize("case", ["nan-return", "overflowing-step"])
def test_the_fast_critic_loop_skips_and_restores_what_the_guarded_loop_does(case, monkeypatch):
    """Steps checked only after they are taken end as the checks before a step end them: same bits, same reasons."""
    torch.manual_seed(0)
    obs, returns = torch.randn(1000, 17), torch.randn(1000) * 30
    lr = 1e-3
    if case == "nan-return":
        returns[250] = math.nan  # the third mini-batch of the pass that holds row 250: its loss is NaN
    else:
        lr = 1e308  # every step overflows the parameters and is undone
    ref, fast = Critic(17), None
    fast = copy.deepcopy(ref)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=lr)
    update = CriticUpdate(fast, lr=lr, epochs=3, batch_size=100)
    fast_loops = []
    original = CriticUpdate._planned_flat_steps
    monkeypatch.setattr(CriticUpdate, "_planned_flat_steps",
                        lambda self, *a: fast_loops.append(1) or original(self, *a))
    for it in range(2):
        torch.manual_seed(it)
        expected = _reference_update(ref, ref_opt, obs, returns, epochs=3, batch_size=100)
        torch.manual_seed(it)
        info = update.step(obs, returns)
        assert fast_loops == [1] * (it + 1)  # the fast loop is the one under test
        assert (math.isnan(info.loss) and math.isnan(expected[0])) or info.loss == expected[0]
        assert (info.skipped, info.skip_reason) == expected[1:]
        assert info.skipped == (3 if case == "nan-return" else 30)
        assert info.skip_reason == ("critic: non-finite loss" if case == "nan-return"
                               else "critic: step made parameters or optimizer state non-finite; restored")
    assert _bits(*ref.parameters()) == _bits(*fast.parameters())
    if case == "nan-return":
        assert _state_bits(ref_opt) == _state_bits(update.optimizer)
    else:
        assert not update.optimizer.state and not ref_opt.state  # never a kept step
