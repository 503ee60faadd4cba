"""PyEPO's problems on dopt's solvers (issue 18): TSP, multi-dimensional knapsack, portfolio.

Every optimum is checked against an exact enumeration (tours, subsets) or, for the
portfolio's cone program, against a second solver and its optimality conditions.
"""

from __future__ import annotations

import importlib.util
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import dopt_core as dc

S = dc.solvers
BACKENDS = ["numpy", "torch", "jax"]
DTYPES = ["float32", "float64"]
# JAX runs the device dynamic programs in the conformance cases (eager, jax.jit,
# jax.vmap: conformance/cases_dfl_problems.py): eager JAX compiles every primitive of every shape once, seconds
# per instance size on these machines.
EAGER = ["numpy", "torch"]


def _to(backend: str, a: np.ndarray) -> Any:
    if backend == "numpy":
        return a
    if backend == "torch":
        torch = pytest.importorskip("torch")
        return torch.asarray(a)
    jnp = pytest.importorskip("jax.numpy")
    return jnp.asarray(a)


def _np(a: Any) -> np.ndarray:
    return a.numpy() if hasattr(a, "numpy") and not isinstance(a, np.ndarray) else np.asarray(a)


# --- travelling salesman -----------------------------------------------------------------


def _tour_matrix(order: tuple[int, ...]) -> np.ndarray:
    n = len(order)
    y = np.zeros((n, n))
    for a, b in zip(order, order[1:] + order[:1], strict=True):
        y[a, b] = y[b, a] = 1.0
    return y


def _all_tours(n: int) -> np.ndarray:
    """Every tour of n nodes once (node 0 first, each direction once)."""
    tours = [(0, *p) for p in itertools.permutations(range(1, n)) if p[0] < p[-1]]
    return np.stack([_tour_matrix(t) for t in tours])


@pytest.mark.parametrize("backend", EAGER)
@pytest.mark.parametrize("dtype", DTYPES)
def test_tsp_dp_is_the_best_tour_by_enumeration(backend: str, dtype: str) -> None:
    rng = np.random.default_rng(1)
    for n in (3, 4, 5, 6, 7):
        theta = rng.normal(size=(2, 3, n, n)).astype(dtype)  # asymmetric, diagonal set
        y = _np(S.tsp(_to(backend, theta), method="dp"))
        assert y.shape == theta.shape and y.dtype == np.dtype(dtype)
        tours = _all_tours(n)
        values = np.einsum("bcij,tij->bct", theta.astype(np.float64), tours)
        best = tours[np.argmax(values, axis=-1)]
        np.testing.assert_array_equal(y, best)


def test_tsp_milp_is_the_best_tour_by_enumeration() -> None:
    rng = np.random.default_rng(2)
    for n in (3, 5, 7):
        theta = rng.normal(size=(3, n, n))
        tours = _all_tours(n)
        best = tours[np.argmax(np.einsum("bij,tij->bt", theta, tours), axis=-1)]
        np.testing.assert_array_equal(S.tsp(theta, method="milp"), best)


def test_tsp_methods_agree_beyond_enumeration_and_auto_switches() -> None:
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(2, 13, 13))
    y_dp = S.tsp(theta, method="dp")
    y_auto = S.tsp(theta)  # n = 13 > 12: HiGHS
    np.testing.assert_array_equal(y_auto, y_dp)
    theta10 = rng.normal(size=(3, 10, 10))
    with ThreadPoolExecutor(2) as ex:
        np.testing.assert_array_equal(
            S.tsp(theta10, method="milp", executor=ex), S.tsp(theta10, method="dp")
        )
    # a tour: symmetric, degree 2 everywhere, one cycle (n - 1 steps from 0 reach all)
    y = S.tsp(rng.normal(size=(18, 18)))
    assert (y == y.T).all() and (y.sum(axis=0) == 2).all() and np.trace(y) == 0
    reach = np.linalg.matrix_power(y + np.eye(18), 17)
    assert (reach[0] > 0).all()


def test_tsp_uses_the_symmetric_part_and_ignores_the_diagonal() -> None:
    rng = np.random.default_rng(4)
    theta = rng.normal(size=(4, 6, 6))
    sym = (theta + theta.transpose(0, 2, 1)) / 2
    sym[:, np.arange(6), np.arange(6)] = 100.0
    for method in ("dp", "milp"):
        np.testing.assert_array_equal(S.tsp(theta, method=method), S.tsp(sym, method=method))


def test_tsp_empty_batch_and_bad_input() -> None:
    assert S.tsp(np.zeros((0, 5, 5))).shape == (0, 5, 5)
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., n, n\)"):
        S.tsp(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="n >= 3"):
        S.tsp(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="at least 2 dimension"):
        S.tsp(np.zeros(4))
    with pytest.raises(ValueError, match="method"):
        S.tsp(np.zeros((4, 4)), method="greedy")
    with pytest.raises(TypeError, match="theta must have a real floating dtype"):
        S.tsp(np.zeros((4, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="NaN or infinite|finite"):
        S.tsp(np.full((4, 4), np.nan))
    with ThreadPoolExecutor(1) as ex:
        with pytest.raises(ValueError, match="executor applies to method='milp'"):
            S.tsp(np.zeros((4, 4)), executor=ex)
        with pytest.raises(ValueError, match="executor applies to method='milp'"):
            S.tsp(np.zeros((4, 4)), method="dp", executor=ex)
    with pytest.raises(ValueError, match=r"theta: the Held-Karp .* n = 16 .* method='milp'"):
        S.tsp(np.zeros((16, 16)), method="dp")
    with pytest.raises(ValueError, match="time_limit"):
        S.tsp(np.zeros((4, 4)), method="milp", time_limit=-1.0)


def test_tsp_time_limit_is_refused_where_it_would_be_ignored() -> None:
    """The dynamic program has no time limit: asking for one is an error, as for
    knapsack's, not a silently ignored argument (like ``executor``)."""
    for method in ("dp", "auto"):  # auto runs the dynamic program for n <= 12
        with pytest.raises(ValueError, match="time_limit applies to method='milp'"):
            S.tsp(np.zeros((4, 4)), method=method, time_limit=1.0)
    y = S.tsp(-np.ones((4, 4)), method="milp", time_limit=10.0)
    np.testing.assert_array_equal(y.sum(axis=-1), [2.0, 2.0, 2.0, 2.0])


# --- multi-dimensional knapsack -----------------------------------------------------------


def _best_subset_value(theta: np.ndarray, W: np.ndarray, C: np.ndarray) -> float:
    n = theta.shape[-1]
    ys = np.array(list(itertools.product((0.0, 1.0), repeat=n)))
    ok = np.all(ys @ W.T <= C + 1e-9, axis=-1)
    return float(np.max(ys[ok] @ theta))


@pytest.mark.parametrize("backend", EAGER)
@pytest.mark.parametrize("dtype", DTYPES)
def test_multi_knapsack_dp_by_enumeration(backend: str, dtype: str) -> None:
    rng = np.random.default_rng(6)
    for _ in range(8):
        n, m = int(rng.integers(1, 8)), int(rng.integers(2, 4))
        W = rng.integers(0, 6, size=(m, n))
        C = rng.integers(0, 12, size=m)
        theta = (rng.integers(-4, 9, size=(2, 3, n)) / 2).astype(dtype)  # ties
        y = _np(S.knapsack(_to(backend, theta), W, C))
        assert y.shape == theta.shape and y.dtype == np.dtype(dtype)
        assert np.all(np.einsum("kn,bcn->bck", W, y) <= C)
        assert set(np.unique(y)) <= {0.0, 1.0}
        for b, c in itertools.product(range(2), range(3)):
            assert theta[b, c] @ y[b, c] == _best_subset_value(theta[b, c], W, C)
            # ties: only strict improvements are taken, so no zero-score item is chosen
            assert not np.any((theta[b, c] <= 0) & (y[b, c] == 1))


def test_multi_knapsack_milp_with_pyepo_weights() -> None:
    weights, _, values = dc.data.knapsack(6, 3, 10, dim=2, deg=2, noise_width=0.5, seed=7)
    caps = np.array([20.0, 18.5])
    y = S.knapsack(values, weights, caps, method="milp")
    for i in range(6):
        assert np.all(weights @ y[i] <= caps + 1e-9)
        assert values[i] @ y[i] == pytest.approx(_best_subset_value(values[i], weights, caps))
    # the same problem in hundredths, by the dynamic program (n·∏(C+1) small enough)
    small = S.knapsack(values[:2, :6], np.round(weights[:, :6] * 100), [900, 1000])
    for i in range(2):
        best = _best_subset_value(values[i, :6], weights[:, :6], np.array([9.0, 10.0]))
        assert values[i, :6] @ small[i] == best
    with ThreadPoolExecutor(2) as ex:
        np.testing.assert_array_equal(
            S.knapsack(values, weights, caps, method="milp", executor=ex), y
        )


def test_multi_knapsack_reductions_keep_the_one_dimensional_answer() -> None:
    rng = np.random.default_rng(8)
    theta = (rng.integers(-2, 7, size=(20, 6)) / 2).astype(np.float64)
    w = np.array([3, 1, 4, 1, 5, 2])
    # a second constraint every subset meets is dropped; a duplicate row changes nothing
    loose = np.stack([w, np.ones(6, dtype=int)])
    np.testing.assert_array_equal(S.knapsack(theta, loose, [7, 6]), S.knapsack(theta, w, 7))
    np.testing.assert_array_equal(
        S.knapsack(theta, np.stack([w, w]), [7, 7]), S.knapsack(theta, w, 7)
    )
    # both constraints non-binding: every positive item
    np.testing.assert_array_equal(S.knapsack(theta, loose, [100, 100]), (theta > 0).astype(float))


def test_multi_knapsack_bad_input() -> None:
    t = np.zeros(3)
    with pytest.raises(ValueError, match=r"capacity must have shape \(2,\)"):
        S.knapsack(t, np.ones((2, 3)), [1, 2, 3])
    with pytest.raises(ValueError, match=r"weights must have shape \(n,\) or \(m, n\)"):
        S.knapsack(t, np.ones((2, 4)), [1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        S.knapsack(t, [[1, 1, 1], [1, -1, 1]], [1, 2])
    with pytest.raises(ValueError, match="capacity must be finite and non-negative"):
        S.knapsack(t, np.ones((2, 3)), [1, -2])
    with pytest.raises(TypeError, match="weights must hold integers"):
        S.knapsack(t, [[1, 1.5, 1], [1, 1, 1]], [1, 2])
    with pytest.raises(TypeError, match="capacity must hold integers"):
        S.knapsack(t, np.ones((2, 3)), [1, 2.5])
    with pytest.raises(ValueError, match="method"):
        S.knapsack(t, [1, 1, 1], 2, method="greedy")
    with ThreadPoolExecutor(1) as ex, pytest.raises(ValueError, match="method='milp' only"):
        S.knapsack(t, [1, 1, 1], 2, executor=ex)
    with pytest.raises(
        ValueError, match=r"capacity: .* more than the 33,554,432 allowed.*method='milp'"
    ):
        S.knapsack(np.ones(30), np.full((3, 30), 7) + np.arange(30), [300, 300, 300])
    with pytest.raises(ValueError, match="capacity"):
        S.knapsack(t, [1.5, 1, 1], -1.0, method="milp")
    # real weights and capacity through HiGHS
    np.testing.assert_array_equal(
        S.knapsack(np.array([3.0, 2.0, 2.0]), [1.5, 1.0, 1.0], 2.0, method="milp"), [0, 1, 1]
    )


# --- portfolio ----------------------------------------------------------------------------

clarabel_missing = importlib.util.find_spec("clarabel") is None
needs_clarabel = pytest.mark.skipif(clarabel_missing, reason="clarabel not installed")


def _slsqp(theta: np.ndarray, cov: np.ndarray, rho: float) -> np.ndarray:
    from scipy.optimize import minimize

    m = theta.shape[0]
    res = minimize(
        lambda y: -theta @ y,
        np.full(m, 1.0 / m),
        jac=lambda y: -theta,
        method="SLSQP",
        bounds=[(0, 1)] * m,
        constraints=[
            {"type": "eq", "fun": lambda y: y.sum() - 1, "jac": lambda y: np.ones(m)},
            {"type": "ineq", "fun": lambda y: rho - y @ cov @ y, "jac": lambda y: -2 * cov @ y},
        ],
        options={"ftol": 1e-12, "maxiter": 500},
    )
    return res.x


@needs_clarabel
@pytest.mark.parametrize("backend", BACKENDS)
def test_portfolio_is_feasible_and_optimal(backend: str) -> None:
    cov, _, r = dc.data.portfolio(6, 4, 8, deg=2, noise_level=1.0, seed=10)
    rho = 2.25 * cov.mean()
    y = _np(S.portfolio(_to(backend, r.reshape(2, 3, 8)), cov)).reshape(6, 8)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, atol=1e-12)
    assert y.min() >= 0.0
    risk = np.einsum("bi,ij,bj->b", y, cov, y)
    assert np.all(risk <= rho * (1 + 1e-6))
    rng = np.random.default_rng(11)
    samples = rng.dirichlet(np.full(8, 0.3), size=20000)
    feasible = samples[np.einsum("si,ij,sj->s", samples, cov, samples) <= rho]
    assert feasible.shape[0] > 100
    for i in range(6):
        ref = _slsqp(r[i], cov, rho)
        assert r[i] @ y[i] >= r[i] @ ref - 1e-7 * np.abs(r[i]).max()
        assert r[i] @ y[i] >= (feasible @ r[i]).max() - 1e-9
        # KKT: on the support, θ - 2μΣy is constant (the budget's multiplier λ), and
        # off it, no larger; μ >= 0 (Σ and θ from the generator: the risk budget binds)
        g = cov @ y[i]
        sup = y[i] > 1e-6
        A = np.stack([np.ones(sup.sum()), 2 * g[sup]], axis=1)
        (lam, mu), *_ = np.linalg.lstsq(A, r[i][sup], rcond=None)
        np.testing.assert_allclose(A @ [lam, mu], r[i][sup], atol=1e-6 * np.abs(r[i]).max())
        assert mu >= -1e-9
        assert np.all(r[i][~sup] - 2 * mu * g[~sup] <= lam + 1e-6 * np.abs(r[i]).max())


@needs_clarabel
def test_portfolio_closed_form_and_options() -> None:
    # two assets, Σ = I: the budget line y1 + y2 = 1 meets y1² + y2² = ρ at y1 = (1 + √(2ρ - 1))/2
    for rho in (0.5, 0.625, 0.9):
        y = S.portfolio(np.array([2.0, 1.0], dtype=np.float32), np.eye(2), risk_level=rho)
        assert y.dtype == np.float32
        np.testing.assert_allclose(
            y, [(1 + np.sqrt(2 * rho - 1)) / 2, (1 - np.sqrt(2 * rho - 1)) / 2], atol=1e-6
        )
    cov, _, r = dc.data.portfolio(4, 3, 5, seed=12)
    np.testing.assert_array_equal(
        S.portfolio(r, cov), S.portfolio(r, cov, risk_level=2.25 * cov.mean())
    )
    loose = S.portfolio(r, cov, gamma=1e6)  # risk never binds: all in the best asset
    np.testing.assert_allclose(loose, np.eye(5)[np.argmax(r, axis=-1)], atol=1e-6)
    with ThreadPoolExecutor(2) as ex:
        np.testing.assert_array_equal(S.portfolio(r, cov, executor=ex), S.portfolio(r, cov))


@needs_clarabel
def test_portfolio_bad_input() -> None:
    t = np.zeros(3)
    with pytest.raises(ValueError, match=r"covariance must have shape \(3, 3\)"):
        S.portfolio(t, np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        S.portfolio(t, np.triu(np.ones((3, 3))))
    with pytest.raises(ValueError, match="positive semi-definite"):
        S.portfolio(t, -np.eye(3))
    with pytest.raises(ValueError, match="no long-only portfolio has variance"):
        S.portfolio(t, np.eye(3), risk_level=0.3)  # the least variance is 1/3
    with pytest.raises(ValueError, match="gamma"):
        S.portfolio(t, np.eye(3), gamma=-1.0)
    with pytest.raises(ValueError, match="covariance must be finite"):
        S.portfolio(t, np.full((3, 3), np.inf))


# --- generators ---------------------------------------------------------------------------


def test_generators_shapes_and_structure() -> None:
    x, c = dc.data.tsp(5, 3, 6, deg=2, noise_width=0.2, seed=1)
    assert x.shape == (5, 3) and c.shape == (5, 15) and (c > 0).all()
    x2, sq = dc.data.tsp(5, 3, 6, deg=2, noise_width=0.2, seed=1, square=True)
    iu, ju = np.triu_indices(6, k=1)
    np.testing.assert_array_equal(sq[:, iu, ju], c)
    np.testing.assert_array_equal(sq, sq.transpose(0, 2, 1))
    np.testing.assert_array_equal(x2, x)
    assert (np.round(c, 4) == c).all()
    cov, x, r = dc.data.portfolio(7, 3, 4, deg=3, noise_level=0.5, seed=2)
    assert cov.shape == (4, 4) and x.shape == (7, 3) and r.shape == (7, 4)
    assert np.linalg.eigvalsh(cov).min() >= (0.005**2) * (1 - 1e-9)
    with pytest.raises(ValueError, match="num_nodes"):
        dc.data.tsp(2, 2, 2)
    with pytest.raises(ValueError, match="noise_level"):
        dc.data.portfolio(2, 2, 2, noise_level=-1.0)


@pytest.mark.skipif(importlib.util.find_spec("pyepo") is None, reason="pyepo not installed")
def test_generators_equal_pyepo() -> None:
    try:
        from pyepo.data import knapsack, portfolio, tsp
    except ImportError as exc:  # pyepo's package imports optional dependencies
        pytest.skip(f"pyepo.data does not import: {exc}")
    for args in [(30, 5, 7, 1, 0.0, 135), (20, 3, 10, 4, 0.5, 3)]:
        x, c = dc.data.tsp(*args)
        xp, cp = tsp.genData(*args)
        np.testing.assert_array_equal(x, xp)
        np.testing.assert_allclose(c, cp, rtol=1e-6)  # PyEPO stores float32
        cov, x, r = dc.data.portfolio(*args[:4], noise_level=args[4] + 1.0, seed=args[5])
        covp, xp, rp = portfolio.genData(*args[:4], noise_level=args[4] + 1.0, seed=args[5])
        np.testing.assert_array_equal(cov, covp)
        np.testing.assert_array_equal(x, xp)
        np.testing.assert_allclose(r, rp, rtol=1e-6, atol=1e-7)
    w, x, v = dc.data.knapsack(20, 4, 8, dim=3, deg=2, noise_width=0.3, seed=5)
    wp, xp, vp = knapsack.genData(20, 4, 8, dim=3, deg=2, noise_width=0.3, seed=5)
    np.testing.assert_array_equal(w, wp)
    np.testing.assert_array_equal(x, xp)
    np.testing.assert_array_equal(v, vp)


@pytest.mark.skipif(
    importlib.util.find_spec("pyepo") is None or importlib.util.find_spec("ortools") is None,
    reason="pyepo and ortools not installed",
)
def test_multi_knapsack_equals_pyepo_ortools_model() -> None:
    try:
        from pyepo.model.ort import knapsackModel
    except ImportError as exc:
        pytest.skip(f"pyepo.model.ort does not import: {exc}")
    w, _, v = dc.data.knapsack(4, 3, 12, dim=2, deg=2, noise_width=0.3, seed=4)
    caps = [20.0, 20.0]
    model = knapsackModel(w, caps)
    y = S.knapsack(v, w, caps, method="milp")
    for i in range(4):
        model.setObj(v[i])
        _, obj = model.solve()
        assert v[i] @ y[i] == pytest.approx(obj, abs=1e-9)
