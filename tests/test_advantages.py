"""GAE against values worked out by hand, including the time-limit case."""

from __future__ import annotations

import numpy as np
import pytest

from natpg.advantages import compute_gae

F, T = False, True


def col(*xs):
    return np.array(xs, dtype=np.float64)[:, None]


def test_gae_hand_computed_with_truncation_and_termination():
    # γ = 0.5, λ = 0.5 (γλ = 0.25). Step 2 is cut by a time limit (real next state has V = 10);
    # step 3 terminates (its next value must be ignored).
    #   δ0 = 1 + 0.5·1.0 − 0.5 = 1.0      A3 = δ3 = 4 − 2 = 2.0
    #   δ1 = 2 + 0.5·1.5 − 1.0 = 1.75     A2 = δ2 = 3 + 0.5·10 − 1.5 = 6.5   (episode cut after it)
    #                                     A1 = 1.75 + 0.25·6.5 = 3.375
    #                                     A0 = 1.0 + 0.25·3.375 = 1.84375
    adv, ret = compute_gae(
        rewards=col(1, 2, 3, 4), values=col(0.5, 1.0, 1.5, 2.0), next_values=col(1.0, 1.5, 10.0, 3.0),
        terminated=col(F, F, F, T).astype(bool), truncated=col(F, F, T, F).astype(bool), gamma=0.5, gae_lambda=0.5)
    np.testing.assert_allclose(adv[:, 0], [1.84375, 3.375, 6.5, 2.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(ret[:, 0], [2.34375, 4.375, 8.0, 4.0], rtol=0, atol=1e-15)


def test_truncation_is_not_termination():
    """Constant reward 1 and a perfect critic V = 1/(1−γ): every advantage is 0, also on the
    step cut by the time limit. Treating the cut as a termination would give δ = 1 − V there."""
    gamma, v = 0.9, 10.0
    n = 6
    trunc = np.zeros((n, 1), bool)
    trunc[2] = True  # time limit hit on step 2
    adv, ret = compute_gae(np.ones((n, 1)), np.full((n, 1), v), np.full((n, 1), v), np.zeros((n, 1), bool), trunc,
                           gamma, 0.95)
    np.testing.assert_allclose(adv, 0.0, atol=1e-12)
    np.testing.assert_allclose(ret, v, atol=1e-12)
    wrong, _ = compute_gae(np.ones((n, 1)), np.full((n, 1), v), np.full((n, 1), v), trunc, np.zeros((n, 1), bool),
                           gamma, 0.95)
    assert wrong[2, 0] == pytest.approx(1 - v)


def test_rollout_end_bootstraps_from_next_value():
    adv, _ = compute_gae(col(1.0), col(0.0), col(4.0), col(F).astype(bool), col(F).astype(bool), 0.5, 0.9)
    assert adv[0, 0] == pytest.approx(1 + 0.5 * 4)


def test_lambda_one_is_monte_carlo_and_zero_is_td():
    rng = np.random.default_rng(0)
    r, v, nv = rng.normal(size=(5, 1)), rng.normal(size=(5, 1)), rng.normal(size=(5, 1))
    nv[:-1] = v[1:]  # consistent values within the episode
    term = np.zeros((5, 1), bool)
    term[-1] = True
    g = 0.9
    adv1, _ = compute_gae(r, v, nv, term, np.zeros_like(term), g, 1.0)
    mc = np.array([sum(g ** (k - t) * r[k, 0] for k in range(t, 5)) for t in range(5)])
    np.testing.assert_allclose(adv1[:, 0], mc - v[:, 0], atol=1e-12)
    adv0, _ = compute_gae(r, v, nv, term, np.zeros_like(term), g, 0.0)
    delta = r[:, 0] + g * nv[:, 0] * (1 - term[:, 0]) - v[:, 0]
    np.testing.assert_allclose(adv0[:, 0], delta, atol=1e-12)


def test_envs_are_independent_columns():
    rng = np.random.default_rng(1)
    shape = (8, 3)
    r, v, nv = rng.normal(size=shape), rng.normal(size=shape), rng.normal(size=shape)
    term, trunc = rng.random(shape) < 0.2, rng.random(shape) < 0.2
    adv, ret = compute_gae(r, v, nv, term, trunc, 0.99, 0.9)
    for e in range(3):
        a1, r1 = compute_gae(r[:, e:e + 1], v[:, e:e + 1], nv[:, e:e + 1], term[:, e:e + 1], trunc[:, e:e + 1],
                             0.99, 0.9)
        np.testing.assert_allclose(adv[:, e], a1[:, 0], atol=1e-14)
        np.testing.assert_allclose(ret[:, e], r1[:, 0], atol=1e-14)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="next_values has shape"):
        compute_gae(np.zeros((3, 1)), np.zeros((3, 1)), np.zeros((2, 1)), np.zeros((3, 1), bool),
                    np.zeros((3, 1), bool), 0.9, 0.9)


def test_few_copy_and_many_copy_paths_give_the_same_bits():
    # n_envs <= 8 runs the recursion on Python floats, more copies on NumPy rows: same operations, same bits.
    rng = np.random.default_rng(0)
    shape = (300, 12)
    r, v, nv = rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(shape)
    term, trunc = rng.random(shape) < 0.05, rng.random(shape) < 0.05
    adv_many, ret_many = compute_gae(r, v, nv, term, trunc, 0.99, 0.95)
    for cols in (slice(0, 1), slice(3, 8)):
        adv_few, ret_few = compute_gae(r[:, cols], v[:, cols], nv[:, cols], term[:, cols], trunc[:, cols], 0.99, 0.95)
        np.testing.assert_array_equal(adv_few, adv_many[:, cols])
        np.testing.assert_array_equal(ret_few, ret_many[:, cols])
