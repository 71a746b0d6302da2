"""The flat-parameter helper: one layout, reads are copies, writes are in place (storage kept)."""

from __future__ import annotations

import numpy as np
import torch

from conftest import tiny_actor
from natpg.flat import FlatParams
from natpg.guards import restore, snapshot


def test_layout_get_views_set_and_add():
    a, b = torch.nn.Parameter(torch.zeros(2, 3)), torch.nn.Parameter(torch.zeros(4))
    flat = FlatParams([b, a])  # the list order is θ's order
    assert flat.numel == 10 and flat.span(b) == (0, 4) and flat.span(a) == (4, 10)
    theta = torch.arange(10.0)
    flat.set_(theta)
    assert torch.equal(b.detach(), theta[:4]) and torch.equal(a.detach(), theta[4:].view(2, 3))
    got = flat.get()
    got += 1  # a copy: θ does not move
    assert torch.equal(flat.get(), theta)
    flat.add_(torch.ones(10))
    assert torch.equal(flat.get(), theta + 1)
    rows = torch.zeros(3, 10)
    views = flat.views(rows)
    assert [tuple(v.shape) for v in views] == [(3, 4), (3, 6)]
    views[1].fill_(2.0)
    assert torch.equal(rows[:, 4:], torch.full((3, 6), 2.0))


def test_restore_writes_in_place_so_numpy_views_stay_valid():
    actor = tiny_actor(False, dtype=torch.float32)
    ptrs = [p.data_ptr() for p in actor.parameters()]
    policy = actor.numpy_policy(np.float32)  # NumPy views of the parameters' storage
    before = snapshot(actor)
    with torch.no_grad():
        for p in actor.parameters():
            p.add_(1.0)
    restore(actor, before)
    assert [p.data_ptr() for p in actor.parameters()] == ptrs
    assert torch.equal(snapshot(actor), before)
    np.testing.assert_array_equal(policy.layers[0][0], actor.body[0].weight.detach().numpy())
