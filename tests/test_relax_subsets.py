"""Subset sampling (gumbel_top_k, relaxed_subset), the exact k-subset distribution
(k_subset_marginals, k_subset_sample) and neural_sort: enumeration, limits, finite
differences, Monte-Carlo frequencies at fixed seeds (5 standard errors), backends."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp as _fd_vjp

R = dc.relax


def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return -np.log(rng.exponential(size=shape))


# ---------------------------------------------------------------------------------
# exact references by enumeration
# ---------------------------------------------------------------------------------
def _subset_distribution(theta: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    w = np.exp(theta - theta.max())
    subsets = list(itertools.combinations(range(theta.size), k))
    p = np.array([np.prod(w[list(s)]) for s in subsets])
    return dict(zip(subsets, p / p.sum()))


def _enum_marginals(theta: np.ndarray, k: int) -> np.ndarray:
    mu = np.zeros(theta.size)
    for s, p in _subset_distribution(theta, k).items():
        mu[list(s)] += p
    return mu


def _enum_covariance(theta: np.ndarray, k: int) -> np.ndarray:
    n = theta.size
    second = np.zeros((n, n))
    for s, p in _subset_distribution(theta, k).items():
        v = np.zeros(n)
        v[list(s)] = 1
        second += p * np.outer(v, v)
    mu = np.diag(second)
    return second - np.outer(mu, mu)


def _pl_sequence_probs(theta: np.ndarray, k: int) -> dict[tuple[int, ...], float]:
    """Probability of each ordered sequence of k draws without replacement, w = exp θ."""
    w = np.exp(theta)
    out = {}
    for seq in itertools.permutations(range(theta.size), k):
        p, left = 1.0, w.sum()
        for i in seq:
            p *= w[i] / left
            left -= w[i]
        out[seq] = p
    return out


def _reference_relaxed_subset(keys: np.ndarray, k: int, tau: float) -> np.ndarray:
    """The paper's recursion, written naively (float64, moderate τ)."""
    tiny = np.finfo(keys.dtype).tiny
    alpha, out = keys.copy(), np.zeros_like(keys)
    for _ in range(k):
        z = alpha / tau
        a = np.exp(z - z.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        out += a
        alpha = alpha + np.log(np.maximum(1 - a, tiny))
    return out


# ---------------------------------------------------------------------------------
# relaxed_subset
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tau", [0.01, 0.3, 1.0, 5.0])
def test_relaxed_subset_nonnegative_sums_to_k(dtype, tau: float) -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(2, 3, 7)).astype(dtype)
    y = R.relaxed_subset(theta, 3, tau=tau, rng=1)
    assert y.shape == theta.shape and y.dtype == dtype
    assert np.all(y >= 0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y.sum(-1), 3.0, atol=tol)


def test_relaxed_subset_matches_naive_recursion() -> None:
    rng = np.random.default_rng(1)
    theta, g = rng.normal(size=(4, 6)), _gumbel(rng, (4, 6))
    for tau in (0.2, 1.0, 3.0):
        np.testing.assert_allclose(
            R.relaxed_subset(theta, 3, tau=tau, noise=g),
            _reference_relaxed_subset(theta + g, 3, tau),
            rtol=1e-12,
            atol=1e-14,
        )


def test_relaxed_subset_overshoot_shrinks_and_tends_to_gumbel_top_k() -> None:
    # two dominant keys: the larger keeps weight in both rounds and exceeds 1 (the
    # relaxation's overshoot) at moderate τ; the overshoot vanishes as τ → 0
    theta = np.array([2.0, 1.5, 0.0, 0.0, 0.0])
    g = np.zeros(5)
    taus = (0.2, 0.1, 0.05, 0.02)
    overshoot = [float(R.relaxed_subset(theta, 2, tau=t, noise=g).max()) - 1 for t in taus]
    assert overshoot[0] > 0.05 and overshoot[0] > overshoot[1] > overshoot[2] >= overshoot[3]
    assert abs(overshoot[3]) < 1e-6
    rng = np.random.default_rng(2)
    theta, g = rng.normal(size=(50, 8)), _gumbel(rng, (50, 8))
    hard = R.gumbel_top_k(theta, 3, noise=g)
    taus = (1.0, 0.1, 1e-2, 1e-3)
    errors = [np.abs(R.relaxed_subset(theta, 3, tau=t, noise=g) - hard).mean() for t in taus]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    # instances whose 4 largest keys are 40 τ apart have converged (near ties of the
    # keys need τ below the gap)
    keys = np.sort(theta + g, axis=-1)
    clear = np.min(np.diff(keys[:, -4:], axis=-1), axis=-1) > 40 * 1e-3
    assert clear.sum() > 40
    y = R.relaxed_subset(theta, 3, tau=1e-3, noise=g)
    np.testing.assert_allclose(y[clear], hard[clear], atol=1e-9)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_relaxed_subset_vjp_matches_finite_differences(k: int) -> None:
    rng = np.random.default_rng(3)
    theta, g, ct = rng.normal(size=(2, 5)), _gumbel(rng, (2, 5)), rng.normal(size=(2, 5))
    for tau in (0.5, 2.0):
        _, vjp = dc.value_and_vjp(R.relaxed_subset, theta, k, tau=tau, noise=g)
        fd = _fd_vjp(lambda t: R.relaxed_subset(t, k, tau=tau, noise=g), theta, ct)
        np.testing.assert_allclose(vjp(ct), fd, atol=1e-7)


def test_relaxed_subset_vjp_equals_torch_autograd_of_the_reference() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    theta, g, ct = rng.normal(size=(3, 9)), _gumbel(rng, (3, 9)), rng.normal(size=(3, 9))
    t = torch.tensor(theta, requires_grad=True)
    alpha, out = t + torch.tensor(g), 0
    tiny = torch.finfo(torch.float64).tiny
    for _ in range(5):
        a = torch.softmax(alpha / 0.4, dim=-1)
        out = out + a
        alpha = alpha + torch.log(torch.clamp(1 - a, min=tiny))
    (out * torch.tensor(ct)).sum().backward()
    _, vjp = dc.value_and_vjp(R.relaxed_subset, theta, 5, tau=0.4, noise=g)
    np.testing.assert_allclose(vjp(ct), t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_relaxed_subset_hard_is_k_hot_with_the_relaxed_gradient() -> None:
    rng = np.random.default_rng(5)
    theta, g, ct = rng.normal(size=(4, 7)), _gumbel(rng, (4, 7)), rng.normal(size=(4, 7))
    y, vjp_h = dc.value_and_vjp(R.relaxed_subset, theta, 3, tau=0.5, noise=g, hard=True)
    np.testing.assert_array_equal(y, R.gumbel_top_k(theta, 3, noise=g))
    assert set(np.unique(y)) == {0.0, 1.0} and np.all(y.sum(-1) == 3)
    _, vjp_s = dc.value_and_vjp(R.relaxed_subset, theta, 3, tau=0.5, noise=g)
    np.testing.assert_array_equal(vjp_h(ct), vjp_s(ct))


def test_relaxed_subset_float32_small_tau_is_finite() -> None:
    rng = np.random.default_rng(6)
    theta = (rng.normal(size=(8, 20)) * np.array([[1.0], [10.0], [100.0], [1e3]] * 2)).astype(np.float32)
    g = _gumbel(rng, (8, 20)).astype(np.float32)
    ct = rng.normal(size=(8, 20)).astype(np.float32)
    for tau in (0.01, 0.05):
        for k in (1, 5, 19):
            y, vjp = dc.value_and_vjp(R.relaxed_subset, theta, k, tau=tau, noise=g)
            grad = vjp(ct)
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad))
            np.testing.assert_allclose(y.sum(-1), k, rtol=1e-5)


# ---------------------------------------------------------------------------------
# gumbel_top_k
# ---------------------------------------------------------------------------------
def test_gumbel_top_k_inclusion_and_order_frequencies() -> None:
    theta = np.log(np.array([0.05, 0.1, 0.15, 0.3, 0.4]))
    k, m = 2, 40000
    seqs = _pl_sequence_probs(theta, k)
    incl = np.zeros(5)
    for seq, p in seqs.items():
        incl[list(seq)] += p
    order = R.gumbel_top_k(np.broadcast_to(theta, (m, 5)).copy(), k, rng=7, return_order=True)
    khot = order.sum(-2)
    np.testing.assert_array_equal(khot, R.gumbel_top_k(np.broadcast_to(theta, (m, 5)).copy(), k, rng=7))
    se = np.sqrt(incl * (1 - incl) / m)
    assert np.all(np.abs(khot.mean(0) - incl) < 5 * se)
    idx = order.argmax(-1)  # (m, k)
    codes = idx[:, 0] * 5 + idx[:, 1]
    counts = np.bincount(codes, minlength=25)
    for (i, j), p in seqs.items():
        f = counts[i * 5 + j] / m
        assert abs(f - p) < 5 * math.sqrt(p * (1 - p) / m), (i, j, f, p)


# ---------------------------------------------------------------------------------
# k_subset_marginals / k_subset_sample
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_marginals_equal_enumeration_every_k(n: int) -> None:
    rng = np.random.default_rng(n)
    theta = rng.normal(size=(3, n)) * 2
    for k in range(1, n + 1):
        mu = R.k_subset_marginals(theta, k)
        expected = np.stack([_enum_marginals(t, k) for t in theta])
        np.testing.assert_allclose(mu, expected, atol=1e-10, rtol=0)
        np.testing.assert_allclose(mu.sum(-1), k, atol=1e-10)


def test_marginals_vjp_is_the_covariance_and_matches_finite_differences() -> None:
    rng = np.random.default_rng(9)
    theta, ct = rng.normal(size=(2, 6)), rng.normal(size=(2, 6))
    for k in (1, 3, 6):
        _, vjp = dc.value_and_vjp(R.k_subset_marginals, theta, k)
        cov = np.stack([_enum_covariance(t, k) @ c for t, c in zip(theta, ct)])
        np.testing.assert_allclose(vjp(ct), cov, atol=1e-10)
        fd = _fd_vjp(lambda t: R.k_subset_marginals(t, k), theta, ct)
        np.testing.assert_allclose(vjp(ct), fd, atol=1e-7)


def test_marginals_float32_large_scores_finite() -> None:
    rng = np.random.default_rng(10)
    theta = rng.uniform(-1e3, 1e3, size=(4, 30)).astype(np.float32)
    for k in (1, 7, 29):
        mu, vjp = dc.value_and_vjp(R.k_subset_marginals, theta, k)
        assert mu.dtype == np.float32 and np.all(np.isfinite(mu))
        assert np.all(np.isfinite(vjp(np.ones_like(theta))))
        # log-space rounding: relative error ~ eps32 · |log e_k| ~ 6e-8 · 2e4
        np.testing.assert_allclose(mu.sum(-1), k, rtol=2e-3)
        # with scores this far apart the distribution is the top-k
        np.testing.assert_allclose(mu, R.gumbel_top_k(theta, k, noise=np.zeros_like(theta)), atol=2e-3)
    mu64 = R.k_subset_marginals(theta.astype(np.float64), 7)
    np.testing.assert_allclose(R.k_subset_marginals(theta, 7), mu64, atol=2e-3)


def test_k_subset_sample_frequencies_match_enumeration() -> None:
    theta = np.array([0.5, -0.3, 1.0, 0.0, -1.0])
    k, m = 2, 30000
    dist = _subset_distribution(theta, k)
    y = R.k_subset_sample(np.broadcast_to(theta, (m, 5)).copy(), k, rng=11)
    assert np.all(y.sum(-1) == k) and set(np.unique(y)) <= {0.0, 1.0}
    codes = (y * (2 ** np.arange(5))).sum(-1).astype(int)
    counts = np.bincount(codes, minlength=32)
    for s, p in dist.items():
        f = counts[sum(2**i for i in s)] / m
        assert abs(f - p) < 5 * math.sqrt(p * (1 - p) / m), (s, f, p)


def test_k_subset_sample_simple_gradient_is_the_marginals_vjp() -> None:
    rng = np.random.default_rng(12)
    theta, ct = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    noise = _gumbel(rng, (3, 6))
    _, vjp_m = dc.value_and_vjp(R.k_subset_marginals, theta, 2)
    y, vjp_s = dc.value_and_vjp(R.k_subset_sample, theta, 2, noise=noise, simple=True)
    np.testing.assert_allclose(vjp_s(ct), vjp_m(ct), rtol=1e-14)
    np.testing.assert_array_equal(y, R.k_subset_sample(theta, 2, noise=noise))
    _, vjp0 = dc.value_and_vjp(R.k_subset_sample, theta, 2, noise=noise)
    np.testing.assert_array_equal(vjp0(ct), 0)


# ---------------------------------------------------------------------------------
# neural_sort
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neural_sort_rows_sum_to_one_and_tends_to_the_sort(dtype) -> None:
    rng = np.random.default_rng(13)
    s = rng.normal(size=(2, 3, 6)).astype(dtype)
    p = R.neural_sort(s, tau=1.0)
    assert p.shape == (2, 3, 6, 6) and p.dtype == dtype
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-6)
    order = np.argsort(-s, axis=-1)
    exact = (order[..., :, None] == np.arange(6)).astype(dtype)
    errs = [np.abs(R.neural_sort(s, tau=t) - exact).max() for t in (1.0, 0.3, 0.1, 1e-3)]
    assert errs[0] > errs[1] > errs[2] > errs[3] - 1e-30 and errs[3] < 1e-5
    np.testing.assert_array_equal(R.neural_sort(s, hard=True), exact)


def test_neural_sort_closed_form_vjp_and_straight_through() -> None:
    rng = np.random.default_rng(14)
    s, ct = rng.normal(size=(2, 5)), rng.normal(size=(2, 5, 5))
    n = 5
    a = np.abs(s[..., :, None] - s[..., None, :]).sum(-1)
    c = n + 1 - 2 * np.arange(1, n + 1)
    logits = (c[:, None] * s[..., None, :] - a[..., None, :]) / 0.7
    e = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(R.neural_sort(s, tau=0.7), e / e.sum(-1, keepdims=True), rtol=1e-12)
    _, vjp = dc.value_and_vjp(R.neural_sort, s, tau=0.7)
    np.testing.assert_allclose(vjp(ct), _fd_vjp(lambda t: R.neural_sort(t, tau=0.7), s, ct), atol=1e-7)
    _, vjp_h = dc.value_and_vjp(R.neural_sort, s, tau=0.7, hard=True)
    np.testing.assert_array_equal(vjp_h(ct), vjp(ct))


# ---------------------------------------------------------------------------------
# errors and backends
# ---------------------------------------------------------------------------------
def test_bad_arguments() -> None:
    x = np.zeros((2, 4))
    for f in (R.gumbel_top_k, R.relaxed_subset, R.k_subset_marginals, R.k_subset_sample):
        for k in (0, 5):
            with pytest.raises(ValueError, match="k must be between 1 and 4"):
                f(x, k)
        with pytest.raises(TypeError, match="k must be an integer"):
            f(x, 1.5)
        with pytest.raises(TypeError, match="theta must have a real floating dtype"):
            f(np.zeros((2, 4), dtype=int), 2)
        with pytest.raises(ValueError, match="theta contains NaN"):
            f(np.array([0.0, np.nan]), 1)
    for f in (R.gumbel_top_k, R.relaxed_subset, R.k_subset_sample):
        with pytest.raises(ValueError, match="noise must have theta's shape"):
            f(x, 2, noise=np.zeros(4))
        with pytest.raises(ValueError, match="either rng or noise"):
            f(x, 2, rng=0, noise=np.zeros((2, 4)))
    for tau in (0.0, -1.0):
        with pytest.raises(ValueError, match="tau"):
            R.relaxed_subset(x, 2, tau=tau)
        with pytest.raises(ValueError, match="tau"):
            R.neural_sort(x, tau=tau)
    with pytest.raises(TypeError, match="s must have a real floating dtype"):
        R.neural_sort(np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match="hard"):
        R.relaxed_subset(x, 2, hard=1)


def test_backends_agree(backend) -> None:
    if backend.name.startswith("jax"):
        pytest.skip("JAX: forward, VJP, jit and vmap are checked by the conformance cases")
    rng = np.random.default_rng(15)
    theta, g, ct = rng.normal(size=(2, 6)), _gumbel(rng, (2, 6)), rng.normal(size=(2, 6))
    ct2 = rng.normal(size=(2, 6, 6))
    calls = [
        (R.relaxed_subset, (3,), {"tau": 0.5, "noise": g}, ct),
        (R.k_subset_marginals, (3,), {}, ct),
        (R.neural_sort, (), {"tau": 0.5}, ct2),
    ]
    with backend.context():
        for f, args, kw, c in calls:
            ref_y, ref_vjp = dc.value_and_vjp(f, theta, *args, **kw)
            kwb = {key: backend.asarray(v) if isinstance(v, np.ndarray) else v for key, v in kw.items()}
            xb = backend.asarray(theta)
            y = f(xb, *args, **kwb)
            assert backend.same_device(backend.device_of(y), backend.device_of(xb))
            np.testing.assert_allclose(backend.to_numpy(y), ref_y, rtol=1e-10, atol=1e-12)
            grad = backend.vjp(f, (xb, *args), kwb, backend.asarray(c))
            np.testing.assert_allclose(backend.to_numpy(grad), ref_vjp(c), rtol=1e-9, atol=1e-11)
        for f in (R.gumbel_top_k, R.k_subset_sample):
            y = f(backend.asarray(theta), 3, noise=backend.asarray(g))
            np.testing.assert_array_equal(backend.to_numpy(y), f(theta, 3, noise=g))


def test_relaxed_subset_vjp_with_tied_and_dominant_keys() -> None:
    """Tied maximal keys (the leave-one-out sums take their other branch) and one key
    dominating at small τ (1 - a ≈ 1e-9): the VJP still matches finite differences."""
    ct = np.array([[0.3, -1.0, 0.5, 2.0, 0.1], [1.0, 0.2, -0.4, 0.3, -0.6]])
    theta = np.array([[1.0, 1.0, 0.0, -0.5, 0.2], [4.0, 0.0, -0.3, 0.1, 0.2]])
    g = np.zeros_like(theta)
    for k, tau in ((2, 0.7), (3, 0.2)):
        _, vjp = dc.value_and_vjp(R.relaxed_subset, theta, k, tau=tau, noise=g)
        fd = _fd_vjp(lambda t: R.relaxed_subset(t, k, tau=tau, noise=g), theta, ct)
        np.testing.assert_allclose(vjp(ct), fd, atol=1e-6)


def test_relaxed_subset_vjp_many_rounds_small_tau() -> None:
    """k close to n at small τ: y(θ + c) = y(θ), so the gradient sums to 0, and it is the
    derivative of the forward (torch autograd through the same rounds). A rounding-level
    constant in the round adjoints grew by 1/τ per round before (k = 8, τ = 0.01: an
    error of 2.1 in float64 on a gradient of size 3, 5e8 in float32)."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt

    from dopt_core.relax._subsets import _relaxed_rounds_sum

    rng = np.random.default_rng(1)
    theta, g, ct = rng.normal(size=(4, 9)), _gumbel(rng, (4, 9)), rng.normal(size=(4, 9))
    for k, tau in ((8, 0.01), (8, 0.05), (5, 0.02)):
        keys = torch.tensor(theta + g, requires_grad=True)
        (_relaxed_rounds_sum(keys, k, tau, xp=xpt) * torch.tensor(ct)).sum().backward()
        ref = keys.grad.numpy()
        grad = dc.value_and_vjp(R.relaxed_subset, theta, k, tau=tau, noise=g)[1](ct)
        np.testing.assert_allclose(grad, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
        assert np.all(np.abs(grad.sum(-1)) < 1e-9 * np.abs(ref).max())
        f32 = [x.astype(np.float32) for x in (theta, g, ct)]
        grad32 = dc.value_and_vjp(R.relaxed_subset, f32[0], k, tau=tau, noise=f32[1])[1](f32[2])
        np.testing.assert_allclose(grad32, ref, atol=1e-3 * np.abs(ref).max())
