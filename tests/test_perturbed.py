"""Perturbed optimizers, perturbed maxima and Fenchel-Young losses (NumPy reference).

The Monte-Carlo tests are probabilistic with fixed seeds. Their tolerances are 5
standard errors, where the standard error is either exact (a Bernoulli mean) or
estimated from independent replicates: the instance θ is repeated ``R`` times along
a batch axis, every replicate gets its own noise, and the spread of the ``R``
estimates gives the standard error of their mean.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import norm

import dopt_core as dc

S = dc.solvers
EULER_GAMMA = 0.5772156649015329
Z_TOL = 5.0  # tolerance in standard errors


def replicate(theta: np.ndarray, r: int) -> np.ndarray:
    return np.broadcast_to(theta, (r, *theta.shape)).copy()


def mean_se(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and its standard error."""
    return samples.mean(0), samples.std(0, ddof=1) / np.sqrt(samples.shape[0])


def jacobian_replicates(f: Any, theta: np.ndarray, r: int, seed: int) -> np.ndarray:
    """``(r, n, n)``: per replicate, the estimated Jacobian ``J[i, j] = ∂y_i/∂θ_j``
    (row i is the VJP with cotangent e_i, all from one forward pass)."""
    n = theta.shape[-1]
    _, vjp = dc.value_and_vjp(f, replicate(theta, r), rng=seed)
    rows = [vjp(np.broadcast_to(np.eye(n)[i], (r, n)).copy()) for i in range(n)]
    return np.stack(rows, axis=1)


THETA = np.array([0.5, -1.0, 1.2, 0.0, 2.0])


# --- Gumbel noise + argmax: closed forms ----------------------------------------------
def test_gumbel_argmax_is_softmax() -> None:
    eps, m = 0.7, 40_000
    f = dc.perturbed(S.argmax, sigma=eps, num_samples=m, noise="gumbel")
    y = f(THETA, rng=1)
    p = softmax(THETA / eps)
    se = np.sqrt(p * (1 - p) / m)  # exact: each entry is a Bernoulli(p_i) mean
    assert np.all(np.abs(y - p) < Z_TOL * se)
    assert np.isclose(y.sum(), 1.0)


def test_gumbel_perturbed_max_is_logsumexp() -> None:
    eps, r = 0.7, 400
    F = dc.perturbed_max(S.argmax, sigma=eps, num_samples=100, noise="gumbel")
    values = F(replicate(THETA, r), rng=2)
    mean, se = mean_se(values)
    expected = eps * logsumexp(THETA / eps) + eps * EULER_GAMMA
    assert abs(mean - expected) < Z_TOL * se


def test_gumbel_jacobian_is_softmax_jacobian() -> None:
    eps = 0.7
    f = dc.perturbed(S.argmax, sigma=eps, num_samples=100, noise="gumbel")
    J = jacobian_replicates(f, THETA, 400, seed=3)
    mean, se = mean_se(J)
    p = softmax(THETA / eps)
    expected = (np.diag(p) - np.outer(p, p)) / eps
    assert np.all(np.abs(mean - expected) < Z_TOL * se)


# --- Normal noise ---------------------------------------------------------------------
def test_normal_two_arms_closed_form() -> None:
    """n = 2: y_ε = (Φ(d/(ε√2)), Φ(-d/(ε√2))) with d = θ1 - θ2, J = φ(·)/(ε√2)·[[1,-1],[-1,1]]."""
    eps, theta = 0.8, np.array([0.3, -0.2])
    s = eps * np.sqrt(2)
    d = (theta[0] - theta[1]) / s
    f = dc.perturbed(S.argmax, sigma=eps, num_samples=200, noise="normal")
    J = jacobian_replicates(f, theta, 400, seed=4)
    mean, se = mean_se(J)
    expected = norm.pdf(d) / s * np.array([[1.0, -1.0], [-1.0, 1.0]])
    assert np.all(np.abs(mean - expected) < Z_TOL * se)
    y = dc.perturbed(S.argmax, sigma=eps, num_samples=40_000)(theta, rng=5)
    p = norm.cdf(d)
    assert abs(y[0] - p) < Z_TOL * np.sqrt(p * (1 - p) / 40_000)


def test_normal_jacobian_symmetric_psd() -> None:
    f = dc.perturbed(functools.partial(S.top_k, k=2), sigma=1.0, num_samples=100)
    J = jacobian_replicates(f, THETA, 400, seed=6)
    mean, se = mean_se(J)
    asym_mean, asym_se = mean_se(J - np.swapaxes(J, 1, 2))
    assert np.all(np.abs(asym_mean) < Z_TOL * asym_se + 1e-12)
    sym = (mean + mean.T) / 2
    # an eigenvalue moves by at most the Frobenius norm of the error
    assert np.linalg.eigvalsh(sym).min() > -Z_TOL * np.sqrt((se**2).sum())
    assert np.linalg.eigvalsh(sym).max() > 10 * np.sqrt((se**2).sum())  # and it is not ~0


@pytest.mark.parametrize("option", ["control_variate", "antithetic"])
def test_variance_reduction_keeps_mean_lowers_variance(option: str) -> None:
    theta = np.array([1.5, 0.2, -0.3, 0.0])
    plain = dc.perturbed(S.argmax, sigma=0.5, num_samples=20)
    reduced = dc.perturbed(S.argmax, sigma=0.5, num_samples=20, **{option: True})
    Jp = jacobian_replicates(plain, theta, 600, seed=7)
    Jr = jacobian_replicates(reduced, theta, 600, seed=8)
    (mp, sp), (mr, sr) = mean_se(Jp), mean_se(Jr)
    assert np.all(np.abs(mp - mr) < Z_TOL * np.sqrt(sp**2 + sr**2))
    var_plain, var_reduced = Jp.var(0, ddof=1).sum(), Jr.var(0, ddof=1).sum()
    assert var_reduced < 0.7 * var_plain, (var_reduced, var_plain)


@pytest.mark.parametrize("noise", ["normal", "gumbel"])
def test_vjp_matches_finite_differences_with_common_noise(noise: str) -> None:
    """The score-function Jacobian against central differences of y_ε (same noise)."""
    _check_fd(dict(noise=noise), np.array([0.4, -0.3, 0.1]), seed=9)


def test_multiplicative_vjp_matches_finite_differences() -> None:
    _check_fd(dict(multiplicative=True), -np.array([1.0, 1.3, 0.8]), seed=10)


def _check_fd(options: dict[str, Any], theta: np.ndarray, seed: int) -> None:
    r, m, h, n = 400, 500, 0.05, theta.shape[-1]
    f = dc.perturbed(S.argmax, sigma=0.5, num_samples=m, **options)
    law = "normal" if options.get("multiplicative") or options.get("noise", "normal") == "normal" else "gumbel"
    Z = dc.noise.get_noise(law).sample(dc.backend_for(theta), seed, (m, r, n), like=theta)
    J = jacobian_replicates_with_noise(f, theta, Z)
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        up = f(replicate(theta + e, r), noise=Z)
        down = f(replicate(theta - e, r), noise=Z)
        cols.append((up - down) / (2 * h))  # (r, n): column j per replicate
    FD = np.stack(cols, axis=-1)
    (mj, sj), (mf, sf) = mean_se(J), mean_se(FD)
    assert np.all(np.abs(mj - mf) < Z_TOL * np.sqrt(sj**2 + sf**2))
    assert np.abs(mj).max() > 10 * sj.max()  # the Jacobian is resolved, not noise


def jacobian_replicates_with_noise(f: Any, theta: np.ndarray, Z: np.ndarray) -> np.ndarray:
    r, n = Z.shape[1], theta.shape[-1]
    _, vjp = dc.value_and_vjp(f, replicate(theta, r), noise=Z)
    return np.stack([vjp(np.broadcast_to(np.eye(n)[i], (r, n)).copy()) for i in range(n)], axis=1)


# --- multiplicative ---------------------------------------------------------------------
def test_multiplicative_keeps_signs_and_mean() -> None:
    seen: list[np.ndarray] = []

    def spy(eta: np.ndarray) -> np.ndarray:
        seen.append(eta)
        return S.argmax(eta)

    theta = np.array([[-1.0, 2.0, -0.5], [0.3, -0.7, 1.1]])
    m = 20_000
    dc.perturbed(spy, sigma=0.5, num_samples=m, multiplicative=True, event_ndim=1)(theta, rng=11)
    (eta,) = seen
    assert eta.shape == (m, 2, 3)
    assert np.all(np.sign(eta) == np.sign(theta))  # positivity of the factors
    w = eta / theta
    assert np.all(np.abs(w.mean(0) - 1) < Z_TOL * w.std(0) / np.sqrt(m))  # E[w] = 1
    with pytest.raises(ValueError, match="theta must be non-zero"):
        dc.perturbed(S.argmax, multiplicative=True)(np.array([0.0, 1.0]), rng=0)


# --- Fenchel-Young ----------------------------------------------------------------------
def test_fy_gradient_is_y_eps_minus_y() -> None:
    rng = np.random.default_rng(12)
    theta = rng.normal(size=(6, 5))
    y = S.argmax(rng.normal(size=(6, 5)))
    Z = rng.gumbel(size=(30, 6, 5))
    for reduction, scale in (("sum", 1.0), ("mean", 1 / 6)):
        loss = dc.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=30, noise="gumbel", reduction=reduction)
        _, vjp = dc.value_and_vjp(loss, theta, y, noise=Z)
        y_eps = dc.perturbed(S.argmax, sigma=0.5, num_samples=30, noise="gumbel")(theta, noise=Z)
        np.testing.assert_allclose(vjp(np.array(1.0)), scale * (y_eps - y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [dict(noise="normal"), dict(noise="gumbel"), dict(multiplicative=True)])
def test_fy_nonnegative_and_unbiased(options: dict[str, Any]) -> None:
    rng = np.random.default_rng(13)
    theta = -rng.uniform(0.5, 2.0, size=(300, 4))
    y = S.top_k(rng.normal(size=(300, 4)), 2)
    loss = dc.fenchel_young_loss(functools.partial(S.top_k, k=2), sigma=0.5, num_samples=50, reduction="none", **options)
    values = loss(theta, y, rng=14)
    assert values.shape == (300,)
    if not options.get("multiplicative"):
        assert values.min() >= -1e-12  # every Monte-Carlo term is non-negative
    mean, se = mean_se(values)
    assert mean > -Z_TOL * se


def test_fy_gumbel_argmax_expectation_closed_form() -> None:
    eps, r = 0.5, 400
    y = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
    loss = dc.fenchel_young_loss(S.argmax, sigma=eps, num_samples=50, noise="gumbel", reduction="none")
    values = loss(replicate(THETA, r), replicate(y, r), rng=15)
    mean, se = mean_se(values)
    expected = eps * logsumexp(THETA / eps) + eps * EULER_GAMMA - THETA @ y
    assert abs(mean - expected) < Z_TOL * se


def test_fy_gradient_step_lowers_loss() -> None:
    rng = np.random.default_rng(16)
    theta = rng.normal(size=(8, 5))
    y = S.argmax(rng.normal(size=(8, 5)))
    Z = rng.standard_normal(size=(20, 8, 5))
    loss = dc.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=20)
    value, vjp = dc.value_and_vjp(loss, theta, y, noise=Z)
    grad = vjp(np.array(1.0))
    step = 1e-4
    after = loss(theta - step * grad, y, noise=Z)
    assert after < value
    # with the noise fixed, the loss is piecewise linear: the decrease is step * |grad|^2
    np.testing.assert_allclose(value - after, step * np.sum(grad**2), rtol=1e-6)


# --- mechanics ------------------------------------------------------------------------
def test_all_problems_in_one_solver_call_and_chunking() -> None:
    calls: list[tuple[int, ...]] = []

    def counting(eta: np.ndarray) -> np.ndarray:
        calls.append(eta.shape)
        return S.argmax(eta)

    theta = np.random.default_rng(17).normal(size=(4, 3, 6))
    Z = np.random.default_rng(18).standard_normal(size=(8, 4, 3, 6))
    y_full = dc.perturbed(counting, num_samples=8, event_ndim=1)(theta, noise=Z)
    assert calls == [(8, 4, 3, 6)]
    calls.clear()
    dc.perturbed(counting, num_samples=8, control_variate=True, event_ndim=1)(theta, noise=Z)
    assert calls == [(9, 4, 3, 6)]
    calls.clear()
    y_chunked = dc.perturbed(counting, num_samples=8, chunk_size=3, event_ndim=1)(theta, noise=Z)
    assert calls == [(3, 4, 3, 6), (3, 4, 3, 6), (2, 4, 3, 6)]
    np.testing.assert_array_equal(y_full, y_chunked)
    _, v1 = dc.value_and_vjp(dc.perturbed(S.argmax, num_samples=8), theta, noise=Z)
    _, v2 = dc.value_and_vjp(dc.perturbed(S.argmax, num_samples=8, chunk_size=5), theta, noise=Z)
    g = np.random.default_rng(19).normal(size=theta.shape)
    np.testing.assert_allclose(v1(g), v2(g), rtol=1e-12)


def test_matrix_valued_solver_and_event_ndim() -> None:
    """A solver with (n, n) outputs (permutation) and one with (n, n) inputs."""
    theta = np.random.default_rng(20).normal(size=(3, 4))
    f = dc.perturbed(S.permutation, sigma=0.5, num_samples=50)
    P = f(theta, rng=0)
    assert P.shape == (3, 4, 4)
    np.testing.assert_allclose(P.sum(-1), 1.0)
    np.testing.assert_allclose(P.sum(-2), 1.0)

    def row_argmax(t: np.ndarray) -> np.ndarray:  # (..., n, n) -> (..., n, n), one instance = a matrix
        return S.argmax(t.reshape(*t.shape[:-2], -1)).reshape(t.shape)

    g2 = dc.perturbed(row_argmax, sigma=0.5, num_samples=30, event_ndim=2)
    t2 = np.random.default_rng(21).normal(size=(2, 3, 3))
    Z = np.random.default_rng(22).standard_normal((30, 2, 3, 3))
    _, vjp = dc.value_and_vjp(g2, t2, noise=Z)
    flat = dc.perturbed(S.argmax, sigma=0.5, num_samples=30)
    _, vjp_flat = dc.value_and_vjp(flat, t2.reshape(2, 9), noise=Z.reshape(30, 2, 9))
    G = np.random.default_rng(23).normal(size=(2, 3, 3))
    np.testing.assert_allclose(vjp(G).reshape(2, 9), vjp_flat(G.reshape(2, 9)), rtol=1e-12)


def test_bad_configuration_and_inputs() -> None:
    for sigma in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma must be a finite positive number"):
            dc.perturbed(S.argmax, sigma=sigma)
    for sigma in (True, "1", None, 1j):  # a wrong kind is a TypeError (tests/test_kit_checks.py)
        with pytest.raises(TypeError, match="sigma must be a real number"):
            dc.perturbed(S.argmax, sigma=sigma)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        dc.perturbed(S.argmax, num_samples=0)
    with pytest.raises(ValueError, match="noise must be one of"):
        dc.perturbed(S.argmax, noise="cauchy")
    with pytest.raises(ValueError, match="multiplicative perturbation needs noise='normal'"):
        dc.perturbed(S.argmax, noise="gumbel", multiplicative=True)
    with pytest.raises(ValueError, match="need symmetric noise"):
        dc.perturbed(S.argmax, noise="gumbel", antithetic=True)
    with pytest.raises(ValueError, match="even num_samples"):
        dc.perturbed(S.argmax, num_samples=3, antithetic=True)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        dc.perturbed(S.argmax, chunk_size=0)
    with pytest.raises(TypeError, match="solver must be callable"):
        dc.perturbed("argmax")
    with pytest.raises(ValueError, match="reduction must be one of"):
        dc.fenchel_young_loss(S.argmax, reduction="avg")
    f = dc.perturbed(S.argmax, num_samples=4)
    theta = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"noise must have shape \(num_samples, \*theta.shape\)"):
        f(theta, noise=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="either rng or noise"):
        f(theta, rng=0, noise=np.zeros((4, 2, 3)))
    with pytest.raises(ValueError, match="noise contains NaN"):
        f(theta, noise=np.full((4, 2, 3), np.nan))
    with pytest.raises(ValueError, match="theta contains NaN"):
        f(np.full((2, 3), np.nan), rng=0)
    loss = dc.fenchel_young_loss(S.argmax, num_samples=4)
    with pytest.raises(ValueError, match="y_true must have theta's shape"):
        loss(theta, np.zeros((2, 4)), rng=0)
    with pytest.raises(ValueError, match="need a linear oracle"):
        dc.perturbed_max(S.permutation, num_samples=4)(theta, rng=0)


def test_matrix_solvers_declare_event_ndim() -> None:
    """linear_assignment scores are (n, n) per instance: the VJP sums over both axes,
    which equals treating the flattened matrix as one instance."""
    rng = np.random.default_rng(24)
    theta, Z, G = rng.normal(size=(3, 4, 4)), rng.standard_normal((20, 3, 4, 4)), rng.normal(size=(3, 4, 4))
    f = dc.perturbed(S.linear_assignment, sigma=0.5, num_samples=20)
    assert f.perturbation.event_ndim == 2
    y, vjp = dc.value_and_vjp(f, theta, noise=Z)
    np.testing.assert_allclose(y.sum(-1), 1.0)
    Y = S.linear_assignment(theta + 0.5 * Z)
    r = np.sum(Y * G, axis=(-2, -1))[..., None, None]
    np.testing.assert_allclose(vjp(G), np.sum(r * Z, axis=0) / (20 * 0.5), rtol=1e-12)
    lifted = dc.solvers.solver(lambda t: np.eye(t.shape[-1])[np.argmax(t.reshape(-1)) % t.shape[-1]], event_ndim=2)
    assert dc.perturbed(lifted).perturbation.event_ndim == 2
