"""softmax, sparsemax, gumbel_softmax: closed forms, limits, VJP vs finite differences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp as _fd_vjp
from dopt_core.relax import gumbel_softmax, softmax, sparsemax

R = dc.relax




def _simplex_projection_bruteforce(z: np.ndarray) -> np.ndarray:
    """Projection onto the simplex by trying every support set (KKT on each)."""
    n = z.size
    best, best_val = None, np.inf
    for r in range(1, n + 1):
        for S in itertools.combinations(range(n), r):
            S = list(S)
            t = (z[S].sum() - 1) / r
            y = np.zeros(n)
            y[S] = z[S] - t
            if np.all(y >= -1e-12):
                val = np.sum((y - z) ** 2)
                if val < best_val:
                    best, best_val = y, val
    return best


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_sparsemax_is_simplex_projection(tau: float) -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        z = rng.normal(size=6) * 2
        np.testing.assert_allclose(
            sparsemax(z, tau=tau), _simplex_projection_bruteforce(z / tau), atol=1e-12
        )


@pytest.mark.parametrize("f", [softmax, sparsemax])
@pytest.mark.parametrize("tau", [0.7, 2.0])
def test_vjp_finite_differences(f, tau: float) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 5))
    g = rng.normal(size=(3, 5))
    _, vjp = dc.value_and_vjp(f, x, tau=tau)
    np.testing.assert_allclose(vjp(g), _fd_vjp(lambda t: f(t, tau=tau), x, g), atol=1e-7)


def test_softmax_closed_form_and_limits() -> None:
    x = np.array([[1.0, 2.0, 0.5]])
    e = np.exp(x / 0.3)
    np.testing.assert_allclose(softmax(x, tau=0.3), e / e.sum(), rtol=1e-14)
    np.testing.assert_array_equal(softmax(x, tau=1e-3), [[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(softmax(x, tau=1e6), np.full((1, 3), 1 / 3), atol=1e-6)
    assert softmax(np.array([1e4, 0.0])).tolist() == [1.0, 0.0]  # no overflow


def test_sparsemax_limits_and_sparsity() -> None:
    x = np.array([1.0, 2.0, 0.5])
    np.testing.assert_array_equal(sparsemax(x, tau=0.1), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(sparsemax(x, tau=1e6), np.full(3, 1 / 3), atol=1e-6)
    y = sparsemax(np.array([0.1, 0.2, 5.0, 0.3]))
    assert np.count_nonzero(y) == 1


def test_gumbel_softmax_matches_softmax_of_perturbed() -> None:
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(4, 6))
    G = -np.log(rng.exponential(size=(4, 6)))
    y = gumbel_softmax(theta, tau=0.5, noise=G)
    np.testing.assert_allclose(y, softmax(theta + G, tau=0.5), rtol=1e-14)
    yh = gumbel_softmax(theta, tau=0.5, noise=G, hard=True)
    np.testing.assert_array_equal(yh, np.eye(6)[np.argmax(theta + G, axis=-1)])
    # straight-through: the hard forward has the soft VJP
    g = rng.normal(size=(4, 6))
    _, vjp_h = dc.value_and_vjp(gumbel_softmax, theta, tau=0.5, noise=G, hard=True)
    _, vjp_s = dc.value_and_vjp(softmax, theta + G, tau=0.5)
    np.testing.assert_allclose(vjp_h(g), vjp_s(g), rtol=1e-14)


def test_gumbel_max_frequencies() -> None:
    """Probabilistic (fixed seed): hard samples follow softmax(theta)."""
    theta = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    y = gumbel_softmax(np.tile(theta, (20000, 1)), tau=1.0, rng=np.random.default_rng(4), hard=True)
    freq = y.mean(axis=0)
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)  # ~4.5 standard errors


def test_backends_keep_dtype_and_device(backend) -> None:
    x = backend.asarray(np.array([[0.3, -1.0, 2.0]], dtype=np.float32))
    for f in (softmax, sparsemax):
        y = f(x)
        assert dc.backend_for(y) is dc.backend_for(x)
        assert backend.same_device(backend.device_of(y), backend.device_of(x))
        assert backend.to_numpy(y).dtype == np.float32
    y = gumbel_softmax(x, tau=1.0, rng=0)
    assert dc.backend_for(y) is dc.backend_for(x)
    assert backend.to_numpy(y).shape == (1, 3)


def test_bad_arguments() -> None:
    x = np.array([0.0, 1.0])
    for f in (softmax, sparsemax):
        with pytest.raises(ValueError, match="tau"):
            f(x, tau=0.0)
        with pytest.raises(ValueError, match="tau"):
            f(x, tau=-1.0)
        with pytest.raises(TypeError, match="tau"):
            f(x, tau="1")
        with pytest.raises(ValueError, match="theta"):
            f(np.array([np.nan, 1.0]))
        with pytest.raises(TypeError, match="theta"):
            f(np.array([1, 2]))
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(x, tau=0.0, rng=0)
    with pytest.raises(ValueError, match="noise"):
        gumbel_softmax(x, tau=1.0, noise=np.zeros(3))
    with pytest.raises(TypeError, match="hard"):
        gumbel_softmax(x, tau=1.0, rng=0, hard=1)
