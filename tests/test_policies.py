"""The critic's written-out backward pass gives autograd's bits exactly."""

from __future__ import annotations

import itertools

import pytest
import torch

from natpg.policies import Critic


def _autograd(critic, obs, returns):
    loss = (returns - critic(obs)).pow(2).mean()
    for p in critic.parameters():
        p.grad = None
    loss.backward()
    return loss.detach()


def _bits(t: torch.Tensor):
    return t.dtype, tuple(t.shape), t.stride(), t.detach().numpy().tobytes()


CASES = list(itertools.product([torch.float32, torch.float64], [1, 17], [(64, 64), (8, 7), (1,), (3, 1)],
                               [1, 2, 100, 333, 1000]))


@pytest.mark.parametrize("old_grad", ["none", "contiguous", "strided"])
@pytest.mark.parametrize("dtype,obs_dim,hidden,m", CASES)
def test_value_loss_backward_equals_autograd_bit_for_bit(dtype, obs_dim, hidden, m, old_grad):
    torch.manual_seed(m + obs_dim)
    critic = Critic(obs_dim, hidden).to(dtype)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs, returns = 2 * torch.randn(m, obs_dim, dtype=dtype), 5 * torch.randn(m, dtype=dtype)
    assert critic._plain_linear_tanh_layers(obs, returns) is not None  # the written-out path is the one tested
    expected = _autograd(critic, obs, returns)
    grads = [_bits(p.grad) for p in critic.parameters()]
    for p in critic.parameters():  # overwritten in place (contiguous) or replaced, never accumulated into
        p.grad = {"none": None, "contiguous": torch.full_like(p, 7.0),
                  "strided": torch.full((*p.shape, 2), 7.0, dtype=dtype)[..., 0]}[old_grad]
    loss = critic.value_loss_backward(obs, returns)
    assert _bits(loss) == _bits(expected)
    assert [_bits(p.grad) for p in critic.parameters()] == grads  # values, shapes and strides


def test_value_loss_backward_falls_back_to_autograd_when_it_cannot_write_the_pass_out():
    torch.manual_seed(0)
    critic = Critic(3, (4,))
    obs, returns = torch.randn(10, 3), torch.randn(10)
    expected = _autograd(critic, obs, returns)
    grads = [p.grad.clone() for p in critic.parameters()]
    seen = []
    handle = critic.body[0].register_forward_hook(lambda *_: seen.append(1))
    assert critic._plain_linear_tanh_layers(obs, returns) is None
    assert torch.equal(critic.value_loss_backward(obs, returns), expected) and seen == [1]
    assert all(torch.equal(p.grad, g) for p, g in zip(critic.parameters(), grads))
    handle.remove()
    assert critic._plain_linear_tanh_layers(obs, returns.double()) is None  # mixed dtypes
    critic.body[1] = torch.nn.ReLU()
    assert critic._plain_linear_tanh_layers(obs, returns) is None
    assert torch.equal(critic.value_loss_backward(obs, returns), _autograd(critic, obs, returns))
