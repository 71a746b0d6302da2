"""Every solver against a dense float64 ``torch.linalg.solve`` (curvlinops style)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from natpg.curvature import conjugate_gradient, damped_hvp, sherman_morrison_solve, woodbury_solve

D64 = torch.float64


def dense_solve(M: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve(M.to(D64), g.to(D64))


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    """‖x − ref‖ / ‖ref‖, computed after scaling by max|ref| so tiny entries cannot underflow."""
    scale = ref.abs().max().clamp_min(1e-300)
    return float(((x.to(D64) - ref) / scale).norm() / (ref / scale).norm().clamp_min(1e-300))


# ----------------------------------------------------------------------------- Sherman–Morrison

@pytest.mark.parametrize("d", [1, 2, 7, 64, 300])
@pytest.mark.parametrize("u_scale", [0.0, 1e-3, 1.0, 1e4])
@pytest.mark.parametrize("damping", [1e-6, 1e-2, 1.0, 1e3])
def test_sherman_morrison_matches_dense_solve(d, u_scale, damping):
    gen = torch.Generator().manual_seed(d * 1000 + int(u_scale))
    g = torch.randn(d, generator=gen, dtype=D64)
    u = u_scale * torch.randn(d, generator=gen, dtype=D64)
    M = damping * torch.eye(d, dtype=D64) + torch.outer(u, u)
    x = sherman_morrison_solve(g, u, damping)
    ref = dense_solve(M, g)
    # The condition number is 1 + ‖u‖²/λ (up to 1e14 here): a stable solve's forward error
    # is machine precision times it, so that is the bound (tight: 1e-13 ≈ 500 ε).
    cond = 1 + float(u @ u) / damping
    assert torch.isfinite(x).all()
    assert rel_err(x, ref) < 1e-13 * cond
    # The part of x orthogonal to u is exactly g⊥/λ, whatever the conditioning.
    if u_scale > 0:
        uhat = u / u.norm()
        perp = lambda v: v - uhat * (uhat @ v)  # noqa: E731
        assert rel_err(perp(x), perp(g) / damping) < 1e-13 * cond


def test_sherman_morrison_zero_u_is_scaled_identity():
    g = torch.tensor([3.0, -6.0], dtype=D64)
    assert torch.equal(sherman_morrison_solve(g, torch.zeros(2, dtype=D64), 3.0), g / 3.0)


def test_sherman_morrison_float32_matches_float64():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(1000, generator=gen)
    u = 10 * torch.randn(1000, generator=gen)
    x32 = sherman_morrison_solve(g, u, 0.1)
    x64 = sherman_morrison_solve(g.double(), u.double(), 0.1)
    assert rel_err(x32, x64) < 1e-5


def test_sherman_morrison_is_deterministic():
    gen = torch.Generator().manual_seed(5)
    g, u = torch.randn(500, generator=gen), torch.randn(500, generator=gen)
    assert torch.equal(sherman_morrison_solve(g, u, 0.3), sherman_morrison_solve(g, u, 0.3))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_sherman_morrison_rejects_nonpositive_damping(bad):
    with pytest.raises(ValueError, match="damping"):
        sherman_morrison_solve(torch.ones(3), torch.ones(3), bad)


def test_sherman_morrison_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same length"):
        sherman_morrison_solve(torch.ones(3), torch.ones(4), 1.0)


# Normal floats only (|v| ≥ 1e-100 or 0): subnormal inputs and results carry fewer significant bits,
# which no solver can recover.
finite = st.one_of(st.just(0.0), st.floats(min_value=1e-100, max_value=1e3), st.floats(min_value=-1e3, max_value=-1e-100))


@settings(max_examples=150, deadline=None)
@given(
    data=st.integers(min_value=1, max_value=30).flatmap(
        lambda d: st.tuples(arrays(np.float64, d, elements=finite), arrays(np.float64, d, elements=finite))),
    damping=st.floats(min_value=1e-3, max_value=1e3),
)
def test_sherman_morrison_property(data, damping):
    g, u = (torch.from_numpy(a) for a in data)
    M = damping * torch.eye(len(g), dtype=D64) + torch.outer(u, u)
    x = sherman_morrison_solve(g, u, damping)
    assert torch.isfinite(x).all()
    if torch.all(g == 0):
        assert torch.all(x == 0)
        return
    cond = 1 + float(u @ u) / damping
    assert rel_err(x, dense_solve(M, g)) < 1e-13 * cond + 1e-14


def test_sherman_morrison_tiny_damping_float32_stays_finite():
    x = sherman_morrison_solve(torch.ones(4), torch.zeros(4), 1e-30)
    assert torch.isfinite(x).all() and torch.allclose(x, torch.full((4,), 1e30))


# ----------------------------------------------------------------------------- Woodbury

@pytest.mark.parametrize("d,k", [(5, 1), (10, 3), (64, 8), (200, 32), (40, 40)])
@pytest.mark.parametrize("u_scale", [0.0, 1.0, 1e3])
@pytest.mark.parametrize("damping", [1e-4, 1.0, 100.0])
def test_woodbury_matches_dense_solve(d, k, u_scale, damping):
    gen = torch.Generator().manual_seed(d + 7 * k)
    g = torch.randn(d, generator=gen, dtype=D64)
    U = u_scale * torch.randn(d, k, generator=gen, dtype=D64)
    M = damping * torch.eye(d, dtype=D64) + U @ U.T
    x = woodbury_solve(g, U, damping)
    ref = dense_solve(M, g)
    assert torch.isfinite(x).all()
    cond = 1 + float(torch.linalg.matrix_norm(U, 2)) ** 2 / damping
    assert rel_err(x, ref) < 1e-13 * cond + 1e-14


def test_woodbury_rank1_equals_sherman_morrison():
    gen = torch.Generator().manual_seed(3)
    g, u = torch.randn(50, generator=gen, dtype=D64), torch.randn(50, generator=gen, dtype=D64)
    torch.testing.assert_close(woodbury_solve(g, u[:, None], 0.2), sherman_morrison_solve(g, u, 0.2),
                               rtol=1e-12, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    d=st.integers(1, 25), k=st.integers(1, 6), seed=st.integers(0, 10_000),
    log_scale=st.floats(-3, 3), damping=st.floats(1e-2, 1e2),
)
def test_woodbury_property(d, k, seed, log_scale, damping):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(d, generator=gen, dtype=D64)
    U = (10.0 ** log_scale) * torch.randn(d, k, generator=gen, dtype=D64)
    M = damping * torch.eye(d, dtype=D64) + U @ U.T
    x = woodbury_solve(g, U, damping)
    cond = 1 + float(torch.linalg.matrix_norm(U, 2)) ** 2 / damping
    assert rel_err(x, dense_solve(M, g)) < 1e-13 * cond + 1e-14


def test_woodbury_rejects_bad_shapes_and_damping():
    with pytest.raises(ValueError, match="shape"):
        woodbury_solve(torch.ones(3), torch.ones(4, 2), 1.0)
    with pytest.raises(ValueError, match="damping"):
        woodbury_solve(torch.ones(3), torch.ones(3, 2), 0.0)


# ----------------------------------------------------------------------------- conjugate gradient

def random_spd(d: int, cond: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=D64))
    eig = torch.logspace(0, math.log10(cond), d, dtype=D64)
    return Q @ torch.diag(eig) @ Q.T


@pytest.mark.parametrize("d", [1, 5, 30, 100])
@pytest.mark.parametrize("cond", [1.0, 1e2, 1e4])
def test_cg_converges_to_dense_solve(d, cond):
    A = random_spd(d, cond, seed=d)
    b = torch.randn(d, generator=torch.Generator().manual_seed(1), dtype=D64)
    res = conjugate_gradient(lambda v: A @ v, b, max_iter=20 * d, tol=1e-11)
    assert res.converged and not res.nonpositive_curvature
    assert res.residual_norm <= 1e-11
    # forward error ≤ cond · relative residual
    assert rel_err(res.x, dense_solve(A, b)) < cond * 1e-10


def test_cg_exact_in_d_steps_for_distinct_eigenvalues():
    A = random_spd(6, 10.0, seed=2)
    b = torch.arange(1.0, 7.0, dtype=D64)
    res = conjugate_gradient(lambda v: A @ v, b, max_iter=6, tol=0.0)
    assert rel_err(res.x, dense_solve(A, b)) < 1e-9
    assert res.iterations == 6


def test_cg_stops_on_nonpositive_curvature_with_finite_result():
    A = -torch.eye(4, dtype=D64)
    res = conjugate_gradient(lambda v: A @ v, torch.ones(4, dtype=D64), max_iter=10)
    assert res.nonpositive_curvature and torch.equal(res.x, torch.zeros(4, dtype=D64))


def test_cg_zero_rhs_returns_zero_without_products():
    calls = []
    res = conjugate_gradient(lambda v: calls.append(1) or v, torch.zeros(3), max_iter=5)
    assert res.iterations == 0 and not calls and torch.equal(res.x, torch.zeros(3))


def test_cg_rejects_zero_iterations():
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(lambda v: v, torch.ones(2), max_iter=0)


# ----------------------------------------------------------------------------- Hessian / Fisher products

def test_damped_hvp_matches_dense_hessian():
    torch.manual_seed(0)
    A = torch.randn(4, 3, dtype=D64)
    w = torch.randn(3, dtype=D64, requires_grad=True)
    b = torch.randn(2, dtype=D64, requires_grad=True)

    def f(w, b):
        return torch.tanh(A @ w).pow(3).sum() + (b.pow(4)).sum() + (w[:2] * b).sum() ** 2

    H = torch.autograd.functional.hessian(f, (w, b))
    Hd = torch.cat([torch.cat([H[0][0], H[0][1]], 1), torch.cat([H[1][0], H[1][1]], 1)], 0)
    matvec = damped_hvp(f(w, b), [w, b], damping=0.3)
    for seed in range(3):
        v = torch.randn(5, generator=torch.Generator().manual_seed(seed), dtype=D64)
        torch.testing.assert_close(matvec(v), Hd @ v + 0.3 * v, rtol=1e-12, atol=1e-12)


def test_kl_hessian_equals_analytic_fisher_of_softmax_policy():
    """For π(a|s) = softmax(W s), the Hessian of mean KL(π_old‖π_W) at W_old is
    F = mean_s (diag(p) − ppᵀ) ⊗ s sᵀ, the exact Fisher. The HVP must reproduce it."""
    torch.manual_seed(1)
    n, obs, acts = 6, 3, 4
    S = torch.randn(n, obs, dtype=D64)
    W = torch.randn(acts, obs, dtype=D64, requires_grad=True)
    logits = S @ W.T
    old = torch.distributions.Categorical(logits=logits.detach())
    kl = torch.distributions.kl_divergence(old, torch.distributions.Categorical(logits=logits)).mean()
    matvec = damped_hvp(kl, [W], damping=0.0)
    F = torch.zeros(acts * obs, acts * obs, dtype=D64)
    for s, p in zip(S, old.probs):
        F += torch.kron(torch.diag(p) - torch.outer(p, p), torch.outer(s, s)) / n
    for seed in range(3):
        v = torch.randn(acts * obs, generator=torch.Generator().manual_seed(seed), dtype=D64)
        torch.testing.assert_close(matvec(v), F @ v, rtol=1e-10, atol=1e-12)
    # and F is PSD, so CG on F + λI solves it
    b = torch.randn(acts * obs, dtype=D64)
    damped = damped_hvp(kl, [W], damping=0.1)
    res = conjugate_gradient(damped, b, max_iter=200, tol=1e-11)
    assert res.converged
    assert rel_err(res.x, dense_solve(F + 0.1 * torch.eye(acts * obs, dtype=D64), b)) < 1e-8


def test_woodbury_non_finite_input_gives_nan_not_an_exception():
    U = torch.ones(5, 2, dtype=D64)
    U[3, 1] = float("inf")
    assert torch.isnan(woodbury_solve(torch.ones(5, dtype=D64), U, 1.0)).all()
