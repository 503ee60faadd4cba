"""Knapsack, linear programs, MILPs and user oracles: brute force and scipy references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dopt_core as dc

S = dc.solvers


# --- knapsack ---------------------------------------------------------------------------
@settings(max_examples=40)
@given(st.integers(1, 7), st.booleans(), st.data())
def test_knapsack_by_enumeration(n: int, ties: bool, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    weights = rng.integers(0, 6, size=n)
    capacity = int(rng.integers(0, 3 * n + 1))
    theta = (rng.integers(-2, 4, size=(2, 2, n)) if ties else rng.normal(size=(2, 2, n))).astype(
        dtype
    )
    y = S.knapsack(theta, weights, capacity)
    assert y.shape == theta.shape and y.dtype == dtype
    subsets = np.array(list(itertools.product((0, 1), repeat=n)), dtype=float)
    feasible = subsets[subsets @ weights <= capacity]
    for b in np.ndindex(2, 2):
        t = theta[b].astype(np.float64)
        assert y[b] @ weights <= capacity and set(np.unique(y[b])) <= {0, 1}
        assert np.isclose(y[b] @ t, (feasible @ t).max(), atol=1e-5)


def test_knapsack_matches_scipy_milp() -> None:
    from scipy.optimize import Bounds, LinearConstraint, milp

    rng = np.random.default_rng(0)
    n, cap = 40, 300
    weights = rng.integers(3, 30, size=n)
    theta = rng.uniform(0, 10, size=(5, n))
    y = S.knapsack(theta, weights, cap)
    for t, row in zip(theta, y, strict=True):
        res = milp(
            -t,
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            constraints=LinearConstraint(weights[None], 0, cap),
        )
        assert np.isclose(row @ t, -res.fun, rtol=1e-7)
        assert row @ weights <= cap


def test_knapsack_bad_input() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        S.knapsack(np.zeros(2), [1, -1], 3)
    with pytest.raises(ValueError, match="capacity"):
        S.knapsack(np.zeros(2), [1, 1], -1)
    with pytest.raises(ValueError, match=r"weights must have shape \(n,\)"):
        S.knapsack(np.zeros(3), [1, 1], 3)
    with pytest.raises(TypeError, match="weights must hold integers"):
        S.knapsack(np.zeros(2), [1.5, 1], 3)
    with pytest.raises(ValueError, match="NaN"):
        S.knapsack(np.array([np.nan, 1.0]), [1, 1], 3)
    with pytest.raises(TypeError, match="capacity"):
        S.knapsack(np.zeros(2), [1, 1], 2.5)


# --- linear programs -----------------------------------------------------------------------
def _vertices(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Brute force: every feasible basic solution of {A y <= b, y >= 0} (small n)."""
    n = A.shape[1]
    G = np.vstack([A, -np.eye(n)])
    h = np.concatenate([b, np.zeros(n)])
    out = []
    for rows in itertools.combinations(range(len(G)), n):
        M = G[list(rows)]
        if abs(np.linalg.det(M)) < 1e-9:
            continue
        y = np.linalg.solve(M, h[list(rows)])
        if np.all(G @ y <= h + 1e-9):
            out.append(y)
    return np.array(out)


@settings(max_examples=25)
@given(st.integers(1, 4), st.data())
def test_linear_program_is_best_vertex(n: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    A = rng.uniform(0.1, 2.0, size=(3, n))  # positive rows: a bounded polytope
    b = rng.uniform(1.0, 3.0, size=3)
    theta = rng.normal(size=(2, 3, n))
    y = S.linear_program(theta, A_ub=A, b_ub=b)
    verts = _vertices(A, b)
    for idx in np.ndindex(2, 3):
        assert np.all(A @ y[idx] <= b + 1e-7) and np.all(y[idx] >= -1e-9)
        assert np.isclose(y[idx] @ theta[idx], (verts @ theta[idx]).max(), atol=1e-7)
        assert np.min(np.abs(verts - y[idx]).max(axis=1)) < 1e-7, "not a vertex"


def test_linear_program_equalities_and_bounds_match_linprog() -> None:
    from scipy.optimize import linprog

    rng = np.random.default_rng(1)
    n = 8
    A_eq, b_eq = np.ones((1, n)), np.array([3.0])
    theta = rng.normal(size=(4, n))
    y = S.linear_program(theta, A_eq=A_eq, b_eq=b_eq, bounds=(0, 1))
    for t, row in zip(theta, y, strict=True):
        ref = linprog(-t, A_eq=A_eq, b_eq=b_eq, bounds=(0, 1))
        assert np.isclose(row @ t, -ref.fun)
        assert (
            np.isclose(row.sum(), 3) and ((np.isclose(row, 0)) | np.isclose(row, 1)).all()
        )  # a vertex: top-3


def test_linear_program_unbounded_names_the_instance() -> None:
    theta = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, -2.0]])
    with pytest.raises(S.SolverError, match=r"linear_program failed on instance \(1,\).*unbounded"):
        S.linear_program(theta)  # y >= 0 only: unbounded along e_0 for the second row


def test_linear_program_bad_input() -> None:
    with pytest.raises(ValueError, match="infeasible"):
        S.linear_program(np.ones(2), A_ub=[[1.0, 1.0]], b_ub=[-1.0])
    with pytest.raises(ValueError, match="A_ub must have 2 columns"):
        S.linear_program(np.ones(2), A_ub=[[1.0, 1.0, 1.0]], b_ub=[1.0])
    with pytest.raises(ValueError, match="b_ub must have 1 entries"):
        S.linear_program(np.ones(2), A_ub=[[1.0, 1.0]], b_ub=[1.0, 2.0])
    with pytest.raises(ValueError, match="given together"):
        S.linear_program(np.ones(2), A_eq=[[1.0, 1.0]])
    with pytest.raises(ValueError, match="bounds"):
        S.linear_program(np.ones(2), bounds=[(0, 1)] * 3)
    with pytest.raises(ValueError, match="NaN"):
        S.linear_program(np.array([np.nan, 1.0]), bounds=(0, 1))


# --- MILP --------------------------------------------------------------------------------------
@settings(max_examples=25)
@given(st.integers(1, 4), st.data())
def test_milp_by_enumeration(n: int, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    A = rng.integers(1, 5, size=(2, n)).astype(float)
    b = rng.integers(2, 9, size=2).astype(float)
    theta = rng.normal(size=(3, n))
    y = S.milp(theta, A_ub=A, b_ub=b, bounds=(0, 3))
    points = np.array(list(itertools.product(range(4), repeat=n)), dtype=float)
    feasible = points[(points @ A.T <= b).all(axis=1)]
    for t, row in zip(theta, y, strict=True):
        assert np.array_equal(row, np.round(row)) and np.all(A @ row <= b)
        assert np.isclose(row @ t, (feasible @ t).max(), atol=1e-7)


def test_milp_mixed_integrality_and_errors() -> None:
    y = S.milp(
        np.array([1.0, 1.0]), A_ub=[[2.0, 2.0]], b_ub=[3.0], bounds=(0, None), integrality=[1, 0]
    )
    assert np.isclose(y.sum(), 1.5) and y[0] == np.round(y[0])
    with pytest.raises(ValueError, match="infeasible"):
        S.milp(np.ones(1), A_eq=[[2.0]], b_eq=[1.0])  # 2y = 1 has no integer solution
    with pytest.raises(ValueError, match="integrality"):
        S.milp(np.ones(2), integrality=[2, 0], bounds=(0, 1))
    with pytest.raises(S.SolverError, match=r"milp failed on instance \(\) .*unbounded"):
        S.milp(np.ones(2))


# --- user oracles ------------------------------------------------------------------------------
def _best_pair(t: np.ndarray) -> np.ndarray:
    k = int(np.argmax(t[:-1] + t[1:]))
    y = np.zeros_like(t)
    y[k : k + 2] = 1
    return y


def _best_pair_brute(t: np.ndarray) -> np.ndarray:
    cands = [np.array([float(i in (k, k + 1)) for i in range(len(t))]) for k in range(len(t) - 1)]
    return max(cands, key=lambda c: (c @ t, -np.argmax(c)))


def test_solver_lifts_per_instance_and_batched_oracles() -> None:
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(3, 4, 6))
    ref = np.array([_best_pair_brute(t) for t in theta.reshape(-1, 6)]).reshape(theta.shape)
    f = S.solver(_best_pair)
    np.testing.assert_array_equal(f(theta), ref)
    g = S.solver(lambda block: np.stack([_best_pair(t) for t in block]), batched=True)
    np.testing.assert_array_equal(g(theta), ref)
    d = S.solver(_best_pair, host=False)
    np.testing.assert_array_equal(d(theta), ref)


def test_solver_output_shape_and_event_ndim() -> None:
    def row_argmax(t: np.ndarray) -> np.ndarray:  # (n, n) -> (n,) best column of each row
        return np.argmax(t, axis=1).astype(float)

    f = S.solver(row_argmax, event_ndim=2, output_shape=lambda ev: ev[:1])
    theta = np.random.default_rng(4).normal(size=(5, 3, 3))
    np.testing.assert_array_equal(f(theta), np.argmax(theta, axis=-1))


def _fails_on_negative_first(t: np.ndarray) -> np.ndarray:
    if t[0] < 0:
        raise RuntimeError("no solution")
    return t


def test_solver_errors_name_the_instance() -> None:
    f = S.solver(_fails_on_negative_first)
    theta = np.ones((2, 3, 2))
    theta[1, 2, 0] = -1
    with pytest.raises(S.SolverError, match=r"instance \(1, 2\) \(flat index 5\).*no solution"):
        f(theta)
    wrong = S.solver(lambda t: t[:1])
    with pytest.raises(S.SolverError, match="returned shape"):
        wrong(np.ones((2, 3)))
    with pytest.raises(TypeError, match="callable"):
        S.solver(3)
    with pytest.raises(ValueError, match="host=True"):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as ex:
            S.solver(_best_pair, host=False, executor=ex)


def test_milp_agrees_with_the_knapsack_dynamic_program() -> None:
    """Two independent algorithms (branch and cut, dynamic programming) on larger instances."""
    rng = np.random.default_rng(5)
    n, cap = 30, 120
    weights = rng.integers(1, 20, size=n)
    theta = rng.uniform(-1, 10, size=(4, n))
    y_mip = S.milp(theta, A_ub=weights[None, :].astype(float), b_ub=[float(cap)], bounds=(0, 1))
    y_dp = S.knapsack(theta, weights, cap)
    np.testing.assert_allclose((y_mip * theta).sum(-1), (y_dp * theta).sum(-1), rtol=1e-9)
    assert np.all(y_mip @ weights <= cap)


def test_knapsack_milp_keeps_half_precision_dtype() -> None:
    """float16 scores are solved in float32 and cast back, whichever method runs."""
    theta = np.array([[3.0, 2.0, 2.5], [-1.0, 4.0, 1.0]], dtype=np.float16)
    for method in ("dp", "milp"):
        y = S.knapsack(theta, [2, 1, 2], 3, method=method)
        assert y.dtype == np.float16, method
        ref = S.knapsack(theta.astype(np.float32), [2, 1, 2], 3, method=method)
        np.testing.assert_array_equal(y, ref.astype(np.float16))


def test_infinite_right_hand_sides_mean_the_same_to_lp_and_milp() -> None:
    """``b_ub = +inf`` is no constraint; ``-inf`` in ``b_ub`` and non-finite ``b_eq``
    are rejected by name, by ``linear_program`` as by ``milp``."""
    from scipy.optimize import linprog

    theta = np.array([[1.0, 2.0, -0.5], [3.0, -1.0, 2.0]])
    A_ub = [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
    for f in (S.linear_program, S.milp):
        y = f(theta, A_ub=A_ub, b_ub=[np.inf, 1.0], bounds=(0, 1))
        for t, row in zip(theta, y, strict=True):
            ref = linprog(-t, A_ub=[A_ub[1]], b_ub=[1.0], bounds=(0, 1), method="highs-ds")
            assert np.isclose(row @ t, -ref.fun)
        with pytest.raises(ValueError, match="b_ub"):
            f(theta, A_ub=A_ub, b_ub=[-np.inf, 1.0], bounds=(0, 1))
        with pytest.raises(ValueError, match="b_eq"):
            f(theta, A_eq=A_ub, b_eq=[np.inf, 1.0], bounds=(0, 1))


def test_knapsack_huge_integer_weights_do_not_overflow() -> None:
    """Weights near 2**62 sum past int64: the table reduction must not wrap around
    (it made the capacity 10 here and silently left every item out)."""
    big = 2**62
    weights = [big + 1, big + 2, big + 3, big + 4]  # any one item fits, no two do
    theta = np.array([1.0, 3.0, 2.0, -1.0])
    with pytest.raises(ValueError, match="capacity"):  # the honest table is too large
        S.knapsack(theta, weights, big + 5)
    # a second, small constraint: the big one still binds and may not be dropped
    with pytest.raises(ValueError, match="capacity"):
        S.knapsack(theta, [weights, [1, 1, 1, 1]], [big + 5, 4])


def test_milp_solves_to_optimality_not_to_highs_default_gap() -> None:
    """HiGHS stops branch and bound at a 1e-4 relative gap by default; the oracles
    promise optimal solutions (here the default gap loses 7.8 of about 45000)."""
    rng = np.random.default_rng(4)
    w = rng.integers(20, 60, size=40)
    theta = w * 100.0 + rng.normal(size=40)  # values nearly proportional to weights
    capacity = int(w.sum() // 2)
    best = S.knapsack(theta, w, capacity) @ theta  # the dynamic program: exact
    y = S.knapsack(theta, w, capacity, method="milp")
    assert y @ w <= capacity and np.isclose(y @ theta, best, rtol=0, atol=1e-6)
    y = S.milp(theta, A_ub=w[None, :].astype(float), b_ub=[capacity], bounds=(0, 1))
    assert np.isclose(y @ theta, best, rtol=0, atol=1e-6)


def test_tsp_milp_is_optimal_on_near_ties() -> None:
    """The subtour-cut MILP returns the Held-Karp optimum even when every tour scores
    about -1.1e6 and the best ones differ by units (within HiGHS' default gap)."""
    rng = np.random.default_rng(0)
    theta = -(1e5 + rng.normal(size=(11, 11)))
    best = np.sum(theta * S.tsp(theta, method="dp"))
    y = S.tsp(theta, method="milp")
    assert np.isclose(np.sum(theta * y), best, rtol=0, atol=1e-6)


def test_solver_instances_of_zero_size() -> None:
    """An event shape with a zero axis (not the last) still has one instance per batch
    entry: the oracle runs on each (reshape(-1, ...) of an empty array failed)."""
    calls = []

    def row_sums(t: np.ndarray) -> np.ndarray:  # (0, 3) -> (3,)
        calls.append(t.shape)
        return t.sum(axis=0)

    theta = np.zeros((2, 0, 3))
    for host in (True, False):
        f = S.solver(row_sums, event_ndim=2, output_shape=lambda ev: ev[1:], host=host)
        y = f(theta)
        assert y.shape == (2, 3) and np.all(y == 0)
    assert calls == [(0, 3)] * 4
    g = S.solver(lambda t: t, event_ndim=2)
    assert g(np.zeros((0, 0, 3))).shape == (0, 0, 3)


def test_knapsack_without_constraints() -> None:
    """Weights of shape (0, n): no constraint, so the best subset is the items with a
    positive score, by either method (the dynamic program raised IndexError)."""
    theta = np.array([[1.0, -2.0, 3.0, 0.0], [-1.0, -1.0, 0.5, 2.0]])
    for method in ("dp", "milp"):
        y = S.knapsack(theta, np.zeros((0, 4)), [], method=method)
        np.testing.assert_array_equal(y, (theta > 0).astype(float))


def test_device_oracle_keeps_the_device_of_an_empty_batch() -> None:
    """``solver(host=False)`` on zero instances returns an empty array on theta's
    device (it was created on the default device)."""
    xp = pytest.importorskip("array_api_strict")
    dev = xp.Device("device1")
    f = S.solver(lambda t: t * 2, host=False)
    for shape in ((0, 3), (2, 3)):
        y = f(xp.zeros(shape, device=dev))
        assert y.device == dev and y.shape == shape


def test_solver_callable_output_shape_is_checked() -> None:
    """A callable ``output_shape`` must give non-negative ints, as a tuple must
    (``(2.5,)`` was truncated to ``(2,)`` silently)."""
    for host in (True, False):
        f = S.solver(lambda t: t[:2], output_shape=lambda ev: (2.5,), host=host)
        with pytest.raises(TypeError, match="output_shape"):
            f(np.ones((3, 4)))
        g = S.solver(lambda t: t[:2], output_shape=lambda ev: (ev[0] - 2,), host=host)
        np.testing.assert_array_equal(g(np.ones((3, 4))), np.ones((3, 2)))
