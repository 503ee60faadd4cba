"""Exact oracles against brute-force enumeration (hypothesis), batched and unbatched."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp

S = dc.solvers
DTYPES = [np.float32, np.float64]


@st.composite
def scores(draw: st.DrawFn, max_n: int = 6, batched: bool | None = None) -> np.ndarray:
    """Small score arrays; values on a coarse grid half of the time, so ties are common."""
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.sampled_from([(), (3,), (2, 2)])) if batched is None else ((2, 3) if batched else ())
    n = draw(st.integers(1, max_n))
    if draw(st.booleans()):
        elems = st.integers(-2, 2).map(float)
    else:
        elems = st.floats(-10, 10, width=32)
    return draw(hnp.arrays(dtype, (*batch, n), elements=elems))


def rows(theta: np.ndarray):  # type: ignore[no-untyped-def]
    return theta.reshape(-1, theta.shape[-1])


@given(scores())
def test_argmax_is_best_one_hot_lowest_index(theta: np.ndarray) -> None:
    y = S.argmax(theta)
    assert y.dtype == theta.dtype and y.shape == theta.shape
    for t, row in zip(rows(theta), rows(y), strict=True):
        candidates = np.eye(len(t), dtype=t.dtype)
        values = candidates @ t
        best = int(np.flatnonzero(values == values.max())[0])  # enumeration, first optimum
        np.testing.assert_array_equal(row, candidates[best])


@given(scores(), st.data())
def test_top_k_is_best_k_subset(theta: np.ndarray, data: st.DataObject) -> None:
    n = theta.shape[-1]
    k = data.draw(st.integers(1, n))
    y = S.top_k(theta, k)
    assert y.dtype == theta.dtype and y.shape == theta.shape
    for t, row in zip(rows(theta), rows(y), strict=True):
        subsets = list(itertools.combinations(range(n), k))
        t64 = t.astype(np.float64)
        best = max(float(np.sum(t64[list(s)])) for s in subsets)
        chosen = np.flatnonzero(row)
        assert len(chosen) == k and set(np.unique(row)) <= {0.0, 1.0}
        assert np.isclose(float(np.sum(t64[chosen])), best, rtol=1e-12, atol=1e-12)
        # exact order: every chosen item beats every other one, ties to the lower index
        for i in chosen:
            for j in set(range(n)) - set(chosen):
                assert t[i] > t[j] or (t[i] == t[j] and i < j)


@given(scores())
def test_rank_maximises_over_permutations(theta: np.ndarray) -> None:
    r = S.rank(theta)
    n = theta.shape[-1]
    for t, row in zip(rows(theta), rows(r), strict=True):
        assert sorted(row.tolist()) == list(range(1, n + 1))
        perms = [np.array(p, dtype=np.float64) + 1 for p in itertools.permutations(range(n))]
        best = max(float(p @ t.astype(np.float64)) for p in perms)
        assert np.isclose(float(row.astype(np.float64) @ t.astype(np.float64)), best, rtol=1e-12, atol=1e-12)
        # exact order: larger scores get larger ranks; at ties the lower index the lower rank
        for i, j in itertools.combinations(range(n), 2):
            assert (row[i] < row[j]) == (t[i] < t[j] or t[i] == t[j])


@given(scores(), st.booleans())
def test_sort_matches_numpy(theta: np.ndarray, descending: bool) -> None:
    y = S.sort(theta, descending=descending)
    expected = np.sort(theta, axis=-1)
    np.testing.assert_array_equal(y, expected[..., ::-1] if descending else expected)
    assert y.dtype == theta.dtype


@given(scores())
def test_permutation_sorts_and_agrees_with_rank(theta: np.ndarray) -> None:
    P = S.permutation(theta)
    n = theta.shape[-1]
    assert P.shape == (*theta.shape, n) and P.dtype == theta.dtype
    np.testing.assert_array_equal(P.sum(-1), 1)
    np.testing.assert_array_equal(P.sum(-2), 1)
    np.testing.assert_array_equal((theta[..., None, :] @ P)[..., 0, :], S.sort(theta))
    ranks = S.rank(theta).astype(int)
    np.testing.assert_array_equal(np.argmax(P, axis=-1) + 1, ranks)


@pytest.mark.parametrize("f", [S.argmax, S.rank, S.permutation, S.sort, lambda t: S.top_k(t, 2)])
def test_batched_equals_unbatched(f) -> None:  # type: ignore[no-untyped-def]
    theta = np.random.default_rng(0).normal(size=(3, 4, 5))
    batched = f(theta)
    for idx in np.ndindex(3, 4):
        np.testing.assert_array_equal(batched[idx], f(theta[idx]))


def test_sort_vjp_matches_finite_differences() -> None:
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(2, 3, 6))  # distinct values: sort is linear around theta
    g = rng.normal(size=theta.shape)
    for descending in (False, True):
        _, vjp = dc.value_and_vjp(S.sort, theta, descending=descending)
        grad = vjp(g)
        fd = finite_difference_vjp(lambda t: S.sort(t, descending=descending), theta, g)  # noqa: B023
        np.testing.assert_allclose(grad, fd, atol=1e-8)


def test_zero_gradient_solvers_have_zero_vjp() -> None:
    theta = np.random.default_rng(2).normal(size=(2, 5))
    for f in (S.argmax, S.rank):
        _, vjp = dc.value_and_vjp(f, theta)
        np.testing.assert_array_equal(vjp(np.ones((2, 5))), 0.0)
    _, vjp = dc.value_and_vjp(S.top_k, theta, 2)
    np.testing.assert_array_equal(vjp(np.ones((2, 5))), 0.0)


def test_half_precision_computed_in_float32() -> None:
    theta = np.array([[0.5, -1.0, 2.0]], dtype=np.float16)
    for f in (S.argmax, S.sort, S.rank):
        y = f(theta)
        assert y.dtype == np.float16
        np.testing.assert_array_equal(y, f(theta.astype(np.float32)).astype(np.float16))
    y, vjp = dc.value_and_vjp(S.sort, theta)
    assert y.dtype == np.float16 and vjp(np.ones(3, np.float16).reshape(1, 3)).dtype == np.float16


# --- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("f", [S.argmax, S.rank, S.permutation, S.sort, lambda t: S.top_k(t, 1)])
def test_bad_theta(f) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="theta must have a real floating dtype"):
        f(np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="theta must have a real floating dtype"):
        f(np.array([1 + 1j, 2]))
    with pytest.raises(ValueError, match="theta must have at least 1 dimension"):
        f(np.float64(1.0) * np.ones(()))
    with pytest.raises(ValueError, match="non-empty last dimension"):
        f(np.ones((3, 0)))
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="theta contains NaN or infinite"):
            f(np.array([[0.0, bad]]))
    with pytest.raises(TypeError, match="theta must be an array"):
        f([0.0, 1.0])


def test_bad_parameters() -> None:
    theta = np.zeros((2, 4))
    for k in (0, 5, -1):
        with pytest.raises(ValueError, match="k must be between 1 and 4"):
            S.top_k(theta, k)
    with pytest.raises(TypeError, match="k must be an integer"):
        S.top_k(theta, 2.0)
    with pytest.raises(TypeError, match="k must be an integer"):
        S.top_k(theta, True)
    with pytest.raises(TypeError, match="descending must be True or False"):
        S.sort(theta, descending="yes")
    assert S.argmax(np.array([np.nan, 1.0]), check_finite=False).shape == (2,)


def test_value_and_vjp_errors() -> None:
    with pytest.raises(TypeError, match="f must be a dopt function"):
        dc.value_and_vjp(np.sort, np.ones(3))
    _, vjp = dc.value_and_vjp(S.sort, np.ones((2, 3)))
    with pytest.raises(ValueError, match="cotangent must have the output's shape"):
        vjp(np.ones(3))


def test_mixed_backends_and_devices() -> None:
    torch = pytest.importorskip("torch")
    from dopt_core._lib._checks import check_same_device

    with pytest.raises(TypeError, match="y is a torch array but theta is a numpy array"):
        check_same_device({"theta": np.zeros(2), "y": torch.zeros(2)})
    with pytest.raises(ValueError, match="y is on device meta but theta is on cpu"):
        check_same_device({"theta": torch.zeros(2), "y": torch.zeros(2, device="meta")})
    check_same_device({"theta": torch.zeros(2), "y": torch.ones(2)})
