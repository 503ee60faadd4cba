"""Synthetic predict-then-optimise data and the regret metrics."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

import dopt_core as dc


def test_shortest_path_data_law() -> None:
    """Shapes, positivity and the closed-form mean of the noiseless costs."""
    x, c = dc.data.shortest_path(4000, 6, (5, 5), deg=1, noise_width=0.0, seed=1)
    assert x.shape == (4000, 6) and c.shape == (4000, 40)
    # deg = 1: c = ((Bx)_j/sqrt(p) + 3 + 1)/3.5 is affine in x, mean (3 + 1)/3.5
    mean, se = c.mean(0), c.std(0, ddof=1) / math.sqrt(4000)
    assert np.all(np.abs(mean - 4 / 3.5) < 5 * se)
    # x ~ N(0, I)
    assert np.all(np.abs(x.mean(0)) < 5 / math.sqrt(4000))
    _, c_noisy = dc.data.shortest_path(4000, 6, (5, 5), deg=1, noise_width=0.5, seed=1)
    ratio = c_noisy / c  # the multiplicative noise is U[0.5, 1.5]
    assert ratio.min() >= 0.5 and ratio.max() <= 1.5
    assert abs(ratio.mean() - 1.0) < 5 * math.sqrt(1 / 12 / ratio.size)
    x2, c2 = dc.data.shortest_path(10, 6, (3, 4), deg=2, noise_width=0.5, seed=1)
    assert c2.shape == (10, (3 - 1) * 4 + (4 - 1) * 3)
    np.testing.assert_array_equal(dc.data.shortest_path(10, 6, (3, 4), deg=2, noise_width=0.5, seed=1)[1], c2)


def test_knapsack_data() -> None:
    w, x, v = dc.data.knapsack(200, 5, 12, dim=2, deg=3, noise_width=0.2, seed=2)
    assert w.shape == (2, 12) and x.shape == (200, 5) and v.shape == (200, 12)
    assert np.all((w >= 3.0) & (w < 8.0)) and np.allclose(w * 100, np.round(w * 100))
    assert np.all(v >= 1) and np.all(v == np.ceil(v))


@pytest.mark.skipif(importlib.util.find_spec("pyepo") is None, reason="pyepo not installed")
def test_data_equal_pyepo() -> None:
    from pyepo.data import knapsack, shortestpath

    x, c = dc.data.shortest_path(50, 5, (5, 5), deg=4, noise_width=0.5, seed=135)
    xp_, cp_ = shortestpath.genData(50, 5, (5, 5), deg=4, noise_width=0.5, seed=135)
    np.testing.assert_allclose(x, xp_)
    np.testing.assert_allclose(c, cp_, rtol=1e-6)  # PyEPO stores float32
    w, x, v = dc.data.knapsack(50, 5, 10, dim=2, deg=2, noise_width=0.1, seed=7)
    wp, xp_, vp = knapsack.genData(50, 5, 10, dim=2, deg=2, noise_width=0.1, seed=7)
    np.testing.assert_allclose(w, wp)
    np.testing.assert_allclose(v, vp)


@pytest.mark.skipif(importlib.util.find_spec("pyepo") is None, reason="pyepo not installed")
@pytest.mark.parametrize(("deg", "noise", "seed"), [(1, 0.0, 0), (3, 0.5, 135), (6, 0.99, 2**31)])
def test_tsp_and_portfolio_equal_pyepo(deg: int, noise: float, seed: int) -> None:
    """Bit-equal to PyEPO after its float32 cast, odd and even node counts, τ = 0."""
    from pyepo.data import portfolio, shortestpath, tsp

    for n in (3, 6, 7):
        x, c = dc.data.tsp(5, 3, n, deg=deg, noise_width=noise, seed=seed)
        xp_, cp_ = tsp.genData(5, 3, n, deg=deg, noise_width=noise, seed=seed)
        np.testing.assert_array_equal(x, xp_)
        np.testing.assert_array_equal(c.astype(np.float32), cp_)
    for tau in (0.0, 0.5, 2.0):
        cov, x, r = dc.data.portfolio(6, 3, 4, deg=deg, noise_level=tau, seed=seed)
        covp, xp_, rp = portfolio.genData(6, 3, 4, deg=deg, noise_level=tau, seed=seed)
        np.testing.assert_array_equal(cov, covp)
        np.testing.assert_array_equal(x, xp_)
        np.testing.assert_array_equal(r.astype(np.float32), rp)
    x, c = dc.data.shortest_path(7, 3, (3, 4), deg=deg, noise_width=noise, seed=seed)
    xp_, cp_ = shortestpath.genData(7, 3, (3, 4), deg=deg, noise_width=noise, seed=seed)
    np.testing.assert_array_equal(c.astype(np.float32), cp_)


def test_bad_data_arguments() -> None:
    with pytest.raises(ValueError, match="deg must be >= 1"):
        dc.data.shortest_path(10, 5, deg=0)
    with pytest.raises(TypeError, match="deg must be an integer"):
        dc.data.shortest_path(10, 5, deg=1.5)
    with pytest.raises(ValueError, match="noise_width must be a number in"):
        dc.data.shortest_path(10, 5, noise_width=1.2)
    with pytest.raises(ValueError, match="grid must be a pair"):
        dc.data.shortest_path(10, 5, grid=(5,))
    with pytest.raises(ValueError, match="num_items must be >= 1"):
        dc.data.knapsack(10, 5, 0)


def test_regret_against_enumeration() -> None:
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(50, 6))
    pred = truth + rng.normal(size=(50, 6))
    k = 2
    solver = lambda t: dc.solvers.top_k(t, k)  # noqa: E731
    r = dc.regret(solver, pred, truth)
    import itertools

    for i in range(50):
        best = max(truth[i, list(s)].sum() for s in itertools.combinations(range(6), k))
        taken = truth[i][solver(pred[i]) == 1].sum()
        assert math.isclose(r[i], best - taken, abs_tol=1e-12)
    assert np.all(r >= 0) and dc.regret(solver, truth, truth).max() == 0.0
    opt = np.array([max(truth[i, list(s)].sum() for s in itertools.combinations(range(6), k)) for i in range(50)])
    assert math.isclose(dc.normalized_regret(solver, pred, truth), r.sum() / np.abs(opt).sum())
    with pytest.raises(ValueError, match="same shape"):
        dc.regret(solver, pred[:3], truth)


def test_metrics_check_an_undeclared_solver_once() -> None:
    """regret/normalized_regret check a solver without event_ndim on its first call
    only (issue 11 class 2), so later calls cost one solver call per argument."""
    calls = []

    def my_argmax(t):
        calls.append(t.shape)
        return dc.solvers.argmax(t)

    a = np.random.default_rng(0).normal(size=(4, 3))
    b = np.random.default_rng(1).normal(size=(4, 3))
    dc.regret(my_argmax, a, b)
    first = len(calls)
    del calls[:]
    dc.regret(my_argmax, a, b)
    assert first == 5 and len(calls) == 2  # 2 batched solves + 3 single rows, then 2
    del calls[:]
    dc.normalized_regret(my_argmax, a, b)
    assert len(calls) == 3  # the decisions, the optimum, the objective's scale


def test_normalized_regret_with_zero_optimal_objectives_raises() -> None:
    """Every optimum is 0 while the decisions lose 1 and 2: the ratio regret / |opt|
    is undefined (x/0); it used to come back as 3e12 from a 1e-12 floor."""
    truth = np.array([[0.0, -1.0], [-2.0, 0.0]])
    pred = -truth  # picks the losing entry in each row: regrets 1 and 2
    assert dc.regret(dc.solvers.argmax, pred, truth).tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="theta_true"):
        dc.normalized_regret(dc.solvers.argmax, pred, truth)
    # a tiny but non-zero denominator is divided by exactly, not floored at 1e-12
    tiny = np.array([[1e-13, -1.0]])
    assert dc.normalized_regret(dc.solvers.argmax, -tiny, tiny) == (1e-13 + 1.0) / 1e-13


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_data_seed_outside_randomstate_range(seed: int) -> None:
    """RandomState takes seeds in [0, 2**32 - 1]; 2**32 ended in NumPy's own message."""
    for make in (lambda: dc.data.shortest_path(3, 2, seed=seed),
                 lambda: dc.data.knapsack(3, 2, 4, seed=seed),
                 lambda: dc.data.tsp(3, 2, 4, seed=seed),
                 lambda: dc.data.portfolio(3, 2, 4, seed=seed)):
        with pytest.raises(ValueError, match="seed must be between 0 and 4294967295"):
            make()
    assert dc.data.shortest_path(2, 3, seed=2**32 - 1)[1].shape == (2, 40)
