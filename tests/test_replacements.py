"""Gradient replacements, projections, sum-of-gamma noise and SPO+ (NumPy reference)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.special import softmax

import dopt_conformance as conformance
import dopt_core as dc
from dopt_core.noise import SumOfGamma
from dopt_core.testing import finite_difference_vjp

S = dc.solvers
Z_TOL = 5.0
EULER_GAMMA = 0.5772156649015329


# --- sign checks ------------------------------------------------------------------------
ESTIMATORS = {
    "identity": lambda: dc.identity(S.argmax),
    "identity[mean]": lambda: dc.identity(S.argmax, projection="mean"),
    "identity[norm]": lambda: dc.identity(S.argmax, projection="norm"),
    "identity[standardize]": lambda: dc.identity(S.argmax, projection="standardize"),
    "interpolation": lambda: dc.interpolation(S.argmax, lam=5.0),
    "imle": lambda: dc.imle(S.argmax, lam=5.0, num_samples=20, sigma=0.1),
    "imle[two_sided]": lambda: dc.imle(S.argmax, lam=5.0, num_samples=20, sigma=0.1, two_sided=True),
    "straight_through": lambda: dc.straight_through(
        S.argmax,
        functools.partial(
            dc.perturbed(S.argmax, sigma=1.0, num_samples=500, noise="gumbel"),
            noise=np.random.default_rng(0).gumbel(size=(500, 4)),
        ),
    ),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_sign_step_moves_decision_towards_target(name: str) -> None:
    """The decision is item 0, the target item 1 (loss |y - e_1|^2). Minus the estimated
    gradient must raise the target's score relative to the current decision's, and
    repeated small steps must reach the target."""
    f = ESTIMATORS[name]()
    theta = np.array([2.0, 1.0, 0.0, -1.0])
    target = np.eye(4)[1]
    kw: dict[str, Any] = {"rng": 1} if name.startswith("imle") else {}
    y, vjp = dc.value_and_vjp(f, theta, **kw)
    assert y.argmax() == 0
    grad = vjp(2 * (y - target))
    assert float(-grad @ (target - np.eye(4)[0])) > 0
    for step in range(200):
        if S.argmax(theta).argmax() == 1:
            break
        y, vjp = dc.value_and_vjp(f, theta, **({"rng": step} if kw else {}))
        theta = theta - 0.05 * vjp(2 * (y - target))
    assert S.argmax(theta).argmax() == 1, f"{name} did not reach the target"


def test_spo_plus_and_fy_sign_steps() -> None:
    theta_true = np.array([[0.0, 1.0, -1.0, 0.5]])
    theta_hat = np.array([[2.0, 1.0, 0.0, -1.0]])
    for loss in (dc.spo_plus_loss(S.argmax), dc.fenchel_young_loss(S.argmax, num_samples=50, sigma=0.5)):
        kwargs = {"rng": 0} if "fenchel" in loss.__name__ else {}
        target = S.argmax(theta_true)
        args = (theta_hat, theta_true) if "spo" in loss.__name__ else (theta_hat, target)
        value, vjp = dc.value_and_vjp(loss, *args, **kwargs)
        grad = vjp(np.array(1.0))
        assert float(-grad[0] @ (target[0] - S.argmax(theta_hat)[0])) > 0


# --- projections ------------------------------------------------------------------------
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 6)), elements=st.floats(-5, 5)),
    st.sampled_from(["mean", "norm", "standardize"]),
)
def test_projection_keeps_invariant_solvers(theta: np.ndarray, projection: str) -> None:
    theta = theta + np.arange(theta.shape[-1]) * 1e-3  # break exact ties: P rounds
    p = dc.projections.project(theta, projection)
    if projection != "mean" and np.any(np.linalg.norm(theta - theta.mean(-1, keepdims=True), axis=-1) < 1e-6):
        return
    for f in (S.argmax, S.rank, lambda t: S.top_k(t, 1)):
        np.testing.assert_array_equal(f(p), f(theta))


@pytest.mark.parametrize("projection", ["mean", "norm", "standardize"])
@pytest.mark.parametrize("event_ndim", [1, 2])
def test_projection_vjp_matches_finite_differences(projection: str, event_ndim: int) -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(2, 3, 4))
    g = rng.normal(size=theta.shape)
    _, vjp = dc.value_and_vjp(dc.projections.project, theta, projection, event_ndim=event_ndim)
    fd = finite_difference_vjp(lambda t: dc.projections.project(t, projection, event_ndim=event_ndim), theta, g)
    np.testing.assert_allclose(vjp(g), fd, atol=1e-8)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.float32, 1e20), (np.float32, 1e-24), (np.float64, 1e160), (np.float64, 1e-170)],
)
def test_norm_projections_at_extreme_scales(dtype: type, scale: float) -> None:
    """P and its VJP are scale-equivariant (P(cθ) = P(θ), J(cθ) = J(θ)/c): the sum of
    squares must not overflow (it made P(θ) = 0, so argmax chose item 0) or underflow
    (it left P(θ) = θ unnormalised, with a zero VJP)."""
    v = np.array([[3.0, 10.0, 2.0, -1.0]])
    g = np.array([[1.0, 0.0, -2.0, 0.5]])
    theta = (v * scale).astype(dtype)
    for projection in ("norm", "standardize"):
        ref_p, ref_vjp = dc.value_and_vjp(dc.projections.project, v, projection)
        p, vjp = dc.value_and_vjp(dc.projections.project, theta, projection)
        np.testing.assert_allclose(p, ref_p, rtol=1e-5)
        np.testing.assert_allclose(vjp(g.astype(dtype)) * scale, ref_vjp(g), rtol=1e-5, atol=1e-6)
        layer = dc.identity(S.argmax, projection=projection)
        np.testing.assert_array_equal(layer(theta), S.argmax(v))


def test_project_check_finite_must_be_a_flag() -> None:
    # a string such as "no" is truthy: it silently kept the check on
    with pytest.raises(TypeError, match="check_finite must be True or False"):
        dc.projections.project(np.array([1.0, 2.0]), "norm", check_finite="no")


def test_identity_backward_is_projection_vjp() -> None:
    rng = np.random.default_rng(1)
    theta, g = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    for projection in (None, "mean", "norm", "standardize"):
        _, vjp = dc.value_and_vjp(dc.identity(S.argmax, projection=projection), theta)
        expected = g if projection is None else dc.value_and_vjp(dc.projections.project, theta, projection)[1](g)
        np.testing.assert_allclose(vjp(g), expected, rtol=1e-12)


def test_identity_noise_only_when_training() -> None:
    f = dc.identity(S.argmax, noise="gumbel", noise_sigma=5.0)
    theta = np.array([[0.0, 0.1, 0.2]] * 200)
    np.testing.assert_array_equal(f(theta), S.argmax(theta))  # evaluation: deterministic
    noisy = f(theta, rng=0)
    assert len({int(i) for i in noisy.argmax(-1)}) == 3  # training: perturbed decisions
    xi = np.random.default_rng(0).normal(size=theta.shape)
    np.testing.assert_array_equal(f(theta, noise=xi), S.argmax(theta + 5.0 * xi))
    with pytest.raises(ValueError, match="noise_sigma > 0 needs a noise law"):
        dc.identity(S.argmax, noise_sigma=1.0)
    with pytest.raises(ValueError, match="projection must be None or one of"):
        dc.identity(S.argmax, projection="l1")


# --- interpolation ----------------------------------------------------------------------
def test_interpolation_small_lambda_is_zero() -> None:
    rng = np.random.default_rng(2)
    theta, g = rng.normal(size=(100, 5)), rng.normal(size=(100, 5))
    _, vjp = dc.value_and_vjp(dc.interpolation(S.argmax, lam=1e-9), theta)
    np.testing.assert_array_equal(vjp(g), 0.0)


def test_interpolation_large_lambda_closed_form() -> None:
    """3-item argmax with a linear loss <w, y>: for λ beyond every crossing,
    y*(θ - λw) = e_{argmin w}, so the gradient is (e_{argmax θ} - e_{argmin w}) / λ."""
    theta, w = np.array([0.5, 2.0, 1.0]), np.array([0.3, 0.9, -0.4])
    lam = 100.0
    _, vjp = dc.value_and_vjp(dc.interpolation(S.argmax, lam=lam), theta)
    np.testing.assert_allclose(vjp(w), (np.eye(3)[1] - np.eye(3)[2]) / lam)
    # below the first crossing (θ1 - θ2 = 1 > λ (w1 - w2) = 1.3 λ) nothing moves
    _, vjp_small = dc.value_and_vjp(dc.interpolation(S.argmax, lam=0.5), theta)
    np.testing.assert_array_equal(vjp_small(w), 0.0)


# --- I-MLE and sum-of-gamma -------------------------------------------------------------
def test_imle_gumbel_matches_softmax_jacobian() -> None:
    """With Gumbel noise, E y*(θ + Z) = softmax(θ); the two-sided I-MLE difference with
    small λ and shared noise estimates the softmax Jacobian-vector product."""
    theta, g = np.array([0.2, -0.5, 0.9]), np.array([1.0, -2.0, 0.5])
    r, m = 200, 1000
    f = dc.imle(S.argmax, lam=0.1, num_samples=m, noise="gumbel", two_sided=True)
    _, vjp = dc.value_and_vjp(f, np.broadcast_to(theta, (r, 3)).copy(), rng=3)
    est = vjp(np.broadcast_to(g, (r, 3)).copy())
    mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(r)
    p = softmax(theta)
    expected = (np.diag(p) - np.outer(p, p)) @ g
    assert np.all(np.abs(mean - expected) < Z_TOL * se)


def test_imle_one_sided_formula_with_shared_noise() -> None:
    rng = np.random.default_rng(4)
    theta, g = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    Z = rng.gumbel(size=(7, 5, 6))
    f = dc.imle(S.argmax, lam=3.0, num_samples=7, noise="gumbel", sigma=0.5)
    y, vjp = dc.value_and_vjp(f, theta, noise=Z)
    np.testing.assert_allclose(y, S.argmax(theta + 0.5 * Z).mean(0))
    expected = (S.argmax(theta + 0.5 * Z) - S.argmax(theta - 3.0 * g + 0.5 * Z)).mean(0) / 3.0
    np.testing.assert_allclose(vjp(g), expected)


@pytest.mark.parametrize(("kappa", "terms"), [(3.0, 10), (1.0, 4)])
def test_sum_of_gamma_exact_moments(backend: conformance.Env, kappa: float, terms: int) -> None:
    """One SoG draw has mean (H_s - log s)/κ and variance Σ_{i≤s} i^-2 / κ (exact)."""
    like = backend.asarray(np.zeros(1))
    b = dc.backend_for(like)
    n = 40_000
    rng: Any = 5
    if backend.autodiff == "jax":
        import jax

        rng = jax.random.key(5)
    law = SumOfGamma(kappa, terms)
    z = backend.to_numpy(law.sample(b, rng, (n,), like=like)).astype(np.float64)
    mean = (sum(1 / i for i in range(1, terms + 1)) - math.log(terms)) / kappa
    var = sum(1 / i**2 for i in range(1, terms + 1)) / kappa
    assert abs(z.mean() - mean) < Z_TOL * math.sqrt(var / n)
    assert abs(z.var() - var) < Z_TOL * np.std((z - z.mean()) ** 2) / math.sqrt(n)


def test_sum_of_gamma_kfold_sum_is_gumbel() -> None:
    """The sum of κ draws is Σ_{i≤s} E_i/i - log s: mean H_s - log s and variance
    Σ_{i≤s} 1/i², which tend to the standard Gumbel's γ and π²/6 as s grows."""
    k, s, n = 4, 100, 40_000
    z = SumOfGamma(float(k), s).sample(dc.backend_for(np.zeros(1)), 6, (n, k), like=np.zeros(1))
    total = z.sum(-1)
    mean = sum(1 / i for i in range(1, s + 1)) - math.log(s)
    var = sum(1 / i**2 for i in range(1, s + 1))
    assert abs(mean - EULER_GAMMA) < 1 / s and abs(var - math.pi**2 / 6) < 1 / s  # near Gumbel
    assert abs(total.mean() - mean) < Z_TOL * math.sqrt(var / n)
    fourth = np.mean((total - total.mean()) ** 4)
    assert abs(total.var() - var) < Z_TOL * math.sqrt((fourth - var**2) / n)


def test_sum_of_gamma_top_k_is_not_gumbel_top_k() -> None:
    """What the SumOfGamma docstring claims, and what it does not: top-2 of θ + SoG(κ=2)
    noise differs from the Gumbel top-k law (per-entry Gumbel noise, which is sampling
    without replacement with probabilities softmax(θ)), by many standard errors."""
    theta, n = np.array([1.0, 0.0, -0.5, 0.3]), 20_000
    b = dc.backend_for(np.zeros(1))
    z = SumOfGamma(2.0, 30).sample(b, 0, (n, 4), like=np.zeros(1))
    best = S.argmax(theta + z)  # with top-2, the first pick is the argmax
    p_sog = best.mean(0)
    p_gumbel = softmax(theta)  # the Gumbel top-k law's first pick
    se = np.sqrt(p_gumbel * (1 - p_gumbel) / n)
    assert np.max(np.abs(p_sog - p_gumbel) / se) > 20


# --- SPO+ -------------------------------------------------------------------------------
@given(
    hnp.arrays(np.float64, (4, 5), elements=st.floats(-3, 3)),
    hnp.arrays(np.float64, (4, 5), elements=st.floats(-3, 3)),
)
def test_spo_plus_properties(theta_hat: np.ndarray, theta: np.ndarray) -> None:
    solver = functools.partial(S.top_k, k=2)
    loss = dc.spo_plus_loss(solver, reduction="none")
    values = loss(theta_hat, theta)
    assert np.all(values >= -1e-9)
    np.testing.assert_allclose(loss(theta, theta), 0.0, atol=1e-12)
    assert np.all(values >= dc.regret(solver, theta_hat, theta) - 1e-9)
    # convex along the segment to another point
    other = theta_hat[::-1] * 0.7
    for t in (0.25, 0.5, 0.75):
        mid = loss(t * theta_hat + (1 - t) * other, theta)
        assert np.all(mid <= t * values + (1 - t) * loss(other, theta) + 1e-9)


def test_spo_plus_float32_large_scores_nonnegative() -> None:
    """SPO+ = <a, y*(a) - y> with a = 2θ̂ - θ, and y*(a) maximises <a, ·>: in float32
    with scores ~1000 the value must stay ≥ 0 and match the float64 formula to the
    rounding of a (the three separate sums cancelled to -6e-5 here)."""
    rng = np.random.default_rng(0)
    theta = (rng.normal(size=(10_000, 10)) * 10 + 1000).astype(np.float32)
    theta_hat = theta + (rng.normal(size=theta.shape) * 0.01).astype(np.float32)
    values = dc.spo_plus_loss(S.argmax, reduction="none")(theta_hat, theta)
    assert values.dtype == np.float32 and float(values.min()) >= 0.0
    a = 2 * theta_hat.astype(np.float64) - theta
    ref = np.sum(a * (S.argmax(a) - S.argmax(theta.astype(np.float64))), axis=-1)
    # |a| ~ 1000: one float32 rounding of a is ≤ 6.1e-5 per entry, two entries differ
    np.testing.assert_allclose(values, ref, atol=2 * 1000 * 2.0**-24 * 2)


def test_spo_plus_gradient_and_reductions() -> None:
    rng = np.random.default_rng(7)
    theta_hat, theta = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    y = S.argmax(theta)
    expected = 2 * (S.argmax(2 * theta_hat - theta) - y)
    for reduction, scale in (("sum", 1.0), ("mean", 1 / 6)):
        _, vjp = dc.value_and_vjp(dc.spo_plus_loss(S.argmax, reduction=reduction), theta_hat, theta, y)
        np.testing.assert_allclose(vjp(np.array(1.0)), scale * expected)
    with pytest.raises(ValueError, match="theta_true must have theta_hat's shape"):
        dc.spo_plus_loss(S.argmax)(theta_hat, theta[:, :3])
    with pytest.raises(ValueError, match="reduction must be one of"):
        dc.spo_plus_loss(S.argmax, reduction="max")


def test_bad_replacement_arguments() -> None:
    for lam in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lam must be a finite positive number"):
            dc.interpolation(S.argmax, lam=lam)
        with pytest.raises(ValueError, match="lam must be a finite positive number"):
            dc.imle(S.argmax, lam=lam)
    with pytest.raises(ValueError, match="kappa must be a finite positive number"):
        dc.imle(S.argmax, kappa=0.0)
    with pytest.raises(ValueError, match="no closed-form score"):
        dc.perturbed(S.argmax, noise="sum_of_gamma")
    with pytest.raises(TypeError, match="relaxation must be a dopt function"):
        dc.straight_through(S.argmax, np.tanh)(np.zeros(3))
    with pytest.raises(ValueError, match="needs a solver whose output has theta's shape"):
        dc.interpolation(S.permutation)(np.zeros(3))


def test_straight_through_uses_relaxation_vjp() -> None:
    rng = np.random.default_rng(8)
    theta, g = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    relax = functools.partial(dc.relax.softmax, tau=0.5)
    y, vjp = dc.value_and_vjp(dc.straight_through(S.argmax, relax), theta)
    np.testing.assert_array_equal(y, S.argmax(theta))
    p = softmax(theta / 0.5, axis=-1)
    expected = p * (g - np.sum(p * g, axis=-1, keepdims=True)) / 0.5  # softmax Jacobian, closed form
    np.testing.assert_allclose(vjp(g), expected, rtol=1e-10)


def test_imle_kappa_only_with_the_named_sum_of_gamma_law() -> None:
    """A kappa next to a SumOfGamma instance was silently dropped (the instance's own
    kappa was used); now it is refused, and the named law takes it."""
    with pytest.raises(ValueError, match="kappa apply only to noise='sum_of_gamma'"):
        dc.imle(S.argmax, noise=dc.noise.SumOfGamma(2.0), kappa=7.0)
    assert dc.imle(S.argmax, kappa=7.0).perturbation.noise.kappa == 7.0
    assert dc.imle(S.argmax).perturbation.noise.kappa == 5.0
    assert dc.aimle(S.argmax, noise=dc.noise.SumOfGamma(2.0)).perturbation.noise.kappa == 2.0
