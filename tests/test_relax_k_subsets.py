"""k_subset_marginals and k_subset_sample (the tilted, grouped computation) against the
previous log-space recursion kept here as the reference, enumeration, finite
differences, the adjoint identity of the symmetric Jacobian and hard inputs (ties, a
dominant score, |θ| = 1e3 in float32)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.relax import _k_subsets as K
from dopt_core.testing import finite_difference_vjp as _fd_vjp

R = dc.relax

# ---------------------------------------------------------------------------------
# the previous implementation (log-space elementary symmetric polynomials, one step per
# item), kept as the reference: NumPy only
# ---------------------------------------------------------------------------------
_LOG_ZERO = -1.0e30


def _ref_shift(v: np.ndarray) -> np.ndarray:
    pad = np.full((*v.shape[:-1], 1), _LOG_ZERO, dtype=v.dtype)
    return np.concatenate([pad, v[..., :-1]], axis=-1)


def _ref_tables(theta: np.ndarray, k: int, g: np.ndarray | None, reverse: bool):
    """log e_j of the prefixes (suffixes), j = 0..k, with forward-mode tangents along g."""
    n = theta.shape[-1]
    row = np.array([0.0] + [_LOG_ZERO] * k, dtype=theta.dtype)
    v = np.broadcast_to(row, (*theta.shape[:-1], k + 1))
    dv = np.zeros_like(v)
    out, dout = [v], [dv]
    for i in range(n - 1, -1, -1) if reverse else range(n):
        t = theta[..., i : i + 1]
        new = np.logaddexp(v, t + _ref_shift(v))
        if g is not None:
            left = np.exp(v - new)
            dv = left * dv + (1.0 - left) * (g[..., i : i + 1] + _ref_shift(dv))
            dout.append(dv)
        v = new
        out.append(v)
    return (out[::-1], dout[::-1]) if reverse else (out, dout)


def _ref_marginals(theta: np.ndarray, k: int, g: np.ndarray | None = None):
    """μ (and J g when g is given) by the old log-space recursion."""
    n = theta.shape[-1]
    pre, dpre = _ref_tables(theta, k, g, reverse=False)
    suf, dsuf = _ref_tables(theta, k, g, reverse=True)
    m = np.stack(pre[:n], axis=-2)[..., :k] + np.flip(np.stack(suf[1:], axis=-2)[..., :k], axis=-1)
    top = m.max(-1, keepdims=True)
    w = np.exp(m - top)
    s = w.sum(-1, keepdims=True)
    loo = (top + np.log(s))[..., 0]
    log_z = pre[-1][..., k : k + 1]
    mu = np.exp(theta + loo - log_z)
    if g is None:
        return mu
    dm = np.stack(dpre[:n], axis=-2)[..., :k]
    dm = dm + np.flip(np.stack(dsuf[1:], axis=-2)[..., :k], axis=-1)
    dloo = ((w / s) * dm).sum(-1)
    return mu * (g + dloo - dpre[-1][..., k : k + 1])


def _enum_marginals(theta: np.ndarray, k: int) -> np.ndarray:
    w = np.exp(theta - theta.max())
    mu, total = np.zeros(theta.size), 0.0
    for s in itertools.combinations(range(theta.size), k):
        p = np.prod(w[list(s)])
        mu[list(s)] += p
        total += p
    return mu / total


def _hard_inputs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Rows that stress the tilt and the conditioning."""
    dominant = np.zeros((2, n))
    dominant[0, 0], dominant[1, -1] = 1e3, -1e3
    return {
        "ties": np.zeros((1, n)),
        "dominant": dominant,
        "uniform 1e3": rng.uniform(-1e3, 1e3, size=(2, n)),
        "clusters": np.round(rng.normal(size=(2, n))) * 50.0,
        "two levels": np.where(rng.random((2, n)) < 0.5, 0.0, 3.0),
        "cauchy": rng.standard_cauchy(size=(2, n)) * 10.0,
        "staircase": np.cumsum(rng.exponential(size=(1, n)) * 30.0, axis=-1),
    }


# ---------------------------------------------------------------------------------
# marginals
# ---------------------------------------------------------------------------------
def test_marginals_equal_enumeration_small_n_every_k() -> None:
    rng = np.random.default_rng(20)
    for n in range(1, 9):
        theta = rng.normal(size=(2, n)) * 3.0
        for k in range(1, n + 1):
            mu = R.k_subset_marginals(theta, k)
            expected = np.stack([_enum_marginals(t, k) for t in theta])
            np.testing.assert_allclose(mu, expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("n", [3, 17, 64, 130, 300])
def test_marginals_and_vjp_equal_the_log_space_recursion(n: int) -> None:
    rng = np.random.default_rng(n)
    for k in sorted({1, 2, max(1, n // 3), n // 2, n - 1, n}):
        for scale in (0.1, 1.0, 5.0, 30.0):
            theta = rng.normal(size=(2, n)) * scale
            g = rng.normal(size=(2, n))
            mu, vjp = dc.value_and_vjp(R.k_subset_marginals, theta, k)
            np.testing.assert_allclose(mu, _ref_marginals(theta, k), atol=1e-10, rtol=0)
            np.testing.assert_allclose(mu.sum(-1), k, atol=1e-10)
            assert np.all((mu >= 0) & (mu <= 1))
            np.testing.assert_allclose(vjp(g), _ref_marginals(theta, k, g), atol=1e-10, rtol=0)


def test_marginals_n_1000_k_50_and_batch_axes() -> None:
    # the benchmark's size, where the cyclic window is much shorter than n + 1
    rng = np.random.default_rng(21)
    theta = rng.normal(size=(1, 1000)) * 2.0
    _, _, m = K._layout(1000, 50, float(np.finfo(np.float64).eps))
    assert m < 1001
    mu = R.k_subset_marginals(theta, 50)
    np.testing.assert_allclose(mu, _ref_marginals(theta, 50), atol=1e-10)
    theta = rng.normal(size=(2, 3, 40))
    mu = R.k_subset_marginals(theta, 9)
    assert mu.shape == theta.shape
    ref = _ref_marginals(theta.reshape(6, 40), 9).reshape(2, 3, 40)
    np.testing.assert_allclose(mu, ref, atol=1e-10)


@pytest.mark.parametrize("n", [2, 9, 60])
def test_hard_inputs_float64_exact_float32_close(n: int) -> None:
    rng = np.random.default_rng(22 + n)
    for name, theta in _hard_inputs(rng, n).items():
        for k in sorted({1, max(1, n // 4), n // 2, n - 1, n}):
            ref = _ref_marginals(theta, k)
            mu = R.k_subset_marginals(theta, k)
            np.testing.assert_allclose(mu, ref, atol=1e-10, rtol=0, err_msg=f"{name} k={k}")
            mu32, vjp32 = dc.value_and_vjp(R.k_subset_marginals, theta.astype(np.float32), k)
            assert mu32.dtype == np.float32 and np.all(np.isfinite(mu32)), (name, k)
            assert np.all(np.isfinite(vjp32(np.ones_like(mu32))))
            # probabilities all along: float32 rounding, not log-space cancellation
            np.testing.assert_allclose(mu32, ref, atol=2e-5, err_msg=f"{name} k={k}")
            np.testing.assert_allclose(mu32.sum(-1), k, rtol=1e-5)


def test_tilt_conditions_the_count() -> None:
    # |Σ σ(θ + ρ) - k| below 1/2: P(N = k) is then of order 1 / sd(N), never tiny
    rng = np.random.default_rng(23)
    for n in (2, 10, 100, 1000):
        for name, theta in _hard_inputs(rng, n).items():
            for k in sorted({1, 2, n // 2, n - 1} - {0, n}):
                for dtype in (np.float32, np.float64):
                    rho = K._tilt(theta.astype(dtype), k, xp=np)
                    assert rho.dtype == dtype
                    x = theta + rho.astype(np.float64)
                    count = (0.5 + 0.5 * np.tanh(0.5 * x)).sum(-1)
                    assert np.all(np.abs(count - k) < 0.5), (name, n, k, dtype, count)


# ---------------------------------------------------------------------------------
# the VJP
# ---------------------------------------------------------------------------------
def test_vjp_finite_differences_adjoint_identity_and_zero_row_sums() -> None:
    rng = np.random.default_rng(24)
    theta = rng.normal(size=(2, 40)) * 3.0
    g, h = rng.normal(size=(2, 40)), rng.normal(size=(2, 40))
    for k in (1, 7, 39):
        _, vjp = dc.value_and_vjp(R.k_subset_marginals, theta, k)
        jg, jh = vjp(g), vjp(h)
        fd = _fd_vjp(lambda t: R.k_subset_marginals(t, k), theta, g)
        np.testing.assert_allclose(jg, fd, atol=1e-7)
        # J is symmetric (a covariance): <J g, h> = <g, J h>; J 1 = 0 (|S| = k is fixed)
        np.testing.assert_allclose((jg * h).sum(-1), (g * jh).sum(-1), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(vjp(np.ones_like(g)), 0.0, atol=1e-12)


def test_k_equal_n_is_all_in_with_zero_gradient() -> None:
    theta = np.random.default_rng(25).normal(size=(3, 5))
    mu, vjp = dc.value_and_vjp(R.k_subset_marginals, theta, 5)
    np.testing.assert_array_equal(mu, 1.0)
    np.testing.assert_array_equal(vjp(theta), 0.0)
    y, vjp = dc.value_and_vjp(R.k_subset_sample, theta, 5, rng=0, simple=True)
    np.testing.assert_array_equal(y, 1.0)
    np.testing.assert_array_equal(vjp(theta), 0.0)


# ---------------------------------------------------------------------------------
# the sampler
# ---------------------------------------------------------------------------------
def test_sample_frequencies_match_enumeration_spread_scores() -> None:
    theta = np.array([2.0, -1.5, 0.0, 3.0, -3.0, 0.5])
    k, m = 3, 30000
    w = np.exp(theta)
    subsets = list(itertools.combinations(range(6), k))
    probs = np.array([np.prod(w[list(s)]) for s in subsets])
    probs /= probs.sum()
    y = R.k_subset_sample(np.broadcast_to(theta, (m, 6)).copy(), k, rng=26)
    assert np.all(y.sum(-1) == k)
    codes = (y * (2 ** np.arange(6))).sum(-1).astype(int)
    counts = np.bincount(codes, minlength=64)
    for s, p in zip(subsets, probs):
        f = counts[sum(2**i for i in s)] / m
        assert abs(f - p) < 5 * math.sqrt(p * (1 - p) / m) + 1e-12, (s, f, p)


def test_sample_hard_inputs_float32_is_k_hot() -> None:
    rng = np.random.default_rng(27)
    for name, theta in _hard_inputs(rng, 30).items():
        for k in (1, 7, 29):
            y = R.k_subset_sample(theta.astype(np.float32), k, rng=1)
            assert y.dtype == np.float32 and np.all(y.sum(-1) == k), name
    # scores 1e3 apart: the sample is the top k
    theta = (rng.permutation(30)[None, :] * 1e3 / 30).astype(np.float32) * 30
    y = R.k_subset_sample(theta, 5, rng=2)
    np.testing.assert_array_equal(y, R.gumbel_top_k(theta, 5, noise=np.zeros_like(theta)))


def test_numpy_row_chunks_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(28)
    theta, g = rng.normal(size=(7, 30)) * 2.0, rng.normal(size=(7, 30))
    mu, vjp = dc.value_and_vjp(R.k_subset_marginals, theta, 4)
    jg = vjp(g)
    monkeypatch.setattr(K, "_CHUNK", 64)  # two rows per chunk, one for the VJP
    mu_c, vjp_c = dc.value_and_vjp(R.k_subset_marginals, theta, 4)
    np.testing.assert_allclose(mu_c, mu, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(vjp_c(g), jg, rtol=1e-14, atol=1e-15)
