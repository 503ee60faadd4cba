"""The perturbation-CDF registry: monotone, limits 0 and 1, density = derivative."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as sps
import scipy.stats as st

from dopt_core.relax import cdfs

NAMES = cdfs.NAMES
# kinks of the standardised F (density jumps or infinite slope): FD is not valid there
_KINKS = {
    "logistic_phi": (0.0,),
    "reciprocal": (0.0,),
    "reciprocal_gendr": (0.0,),
    "optimal": (-0.25, 0.25),
    "uniform": (-1.0, 1.0),
    "cubic_hermite": (-1.0, 1.0),
    "wigner_semicircle": (-1.0, 1.0),
    "laplace": (0.0,),
    "exponential": (-0.3,),
    "exponential_rev": (0.3,),
    "gamma": (-0.3,),
    "gamma_rev": (0.3,),
    "levy": (-0.3,),
    "levy_rev": (0.3,),
}


def _kw(name: str) -> dict:
    p = cdfs.get(name).params
    kw = {}
    if "shift" in p:
        kw["shift"] = 0.3
    if "shape" in p:
        kw["shape"] = 2.5
    return kw


def test_registry_has_diffsort_and_gendr_names() -> None:
    expected = {
        "logistic",
        "logistic_phi",
        "gaussian",
        "reciprocal",
        "cauchy",
        "optimal",
        "uniform",
        "cubic_hermite",
        "wigner_semicircle",
        "laplace",
        "hyperbolic_secant",
        "reciprocal_gendr",
        "gumbel_max",
        "gumbel_min",
        "exponential",
        "exponential_rev",
        "gamma",
        "gamma_rev",
        "levy",
        "levy_rev",
    }
    assert set(NAMES) == expected
    assert set(cdfs.DIFFSORT_NAMES) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_monotone_and_limits(name: str) -> None:
    x = np.linspace(-30, 30, 20001)
    F = cdfs.cdf(name, x, scale=0.5, **_kw(name))
    assert np.all(np.diff(F) >= 0)
    assert np.all((F >= 0) & (F <= 1))
    lo, hi = cdfs.cdf(name, np.array([-1e13, 1e13]), **_kw(name))
    assert lo == pytest.approx(0.0, abs=1e-5) and hi == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [0.3, 2.0])
def test_density_is_derivative(name: str, scale: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, size=400) * scale
    v = x / scale
    for k in _KINKS.get(name, ()):
        x = x[np.abs(v - k) > 1e-3]
        v = x / scale
    h = 1e-6 * scale
    kw = _kw(name)
    fd = (cdfs.cdf(name, x + h, scale=scale, **kw) - cdfs.cdf(name, x - h, scale=scale, **kw)) / (
        2 * h
    )
    np.testing.assert_allclose(cdfs.pdf(name, x, scale=scale, **kw), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", [n for n in NAMES if cdfs.get(n).symmetric])
def test_symmetric_entries(name: str) -> None:
    x = np.linspace(-5, 5, 1001)
    np.testing.assert_allclose(cdfs.cdf(name, -x), 1 - cdfs.cdf(name, x), atol=1e-15)


def test_closed_forms_against_scipy() -> None:
    x = np.linspace(-6, 6, 241)
    np.testing.assert_allclose(
        cdfs.cdf("gaussian", x, scale=1.5), st.norm.cdf(x / 1.5), rtol=3e-13, atol=1e-300
    )
    np.testing.assert_allclose(cdfs.cdf("logistic", x), sps.expit(x), rtol=1e-14)
    np.testing.assert_allclose(cdfs.cdf("laplace", x), st.laplace.cdf(x), rtol=1e-13)
    np.testing.assert_allclose(cdfs.cdf("cauchy", x), st.cauchy.cdf(x), rtol=1e-13)
    np.testing.assert_allclose(cdfs.cdf("gumbel_max", x), st.gumbel_r.cdf(x), rtol=1e-13)
    np.testing.assert_allclose(cdfs.cdf("gumbel_min", x), st.gumbel_l.cdf(x), rtol=1e-12)
    np.testing.assert_allclose(cdfs.cdf("hyperbolic_secant", x), st.hypsecant.cdf(x), rtol=1e-13)
    np.testing.assert_allclose(
        cdfs.cdf("wigner_semicircle", x / 6), st.semicircular.cdf(x / 6), atol=1e-14
    )
    np.testing.assert_allclose(
        cdfs.cdf("gamma", x, shape=3.5, shift=1.0), st.gamma.cdf(x + 1, 3.5), atol=1e-13
    )
    np.testing.assert_allclose(cdfs.cdf("levy", x, shift=0.2), st.levy.cdf(x + 0.2), atol=1e-13)
    np.testing.assert_allclose(
        cdfs.cdf("exponential_rev", x, shift=0.5), np.minimum(np.exp(x - 0.5), 1)
    )
    # diffsort's reciprocal vs GenDR's: different functions with the same slope at 0
    assert cdfs.cdf("reciprocal", np.array(2.0)) == pytest.approx(0.75)
    assert cdfs.cdf("reciprocal_gendr", np.array(1.0)) == pytest.approx(0.75)
    assert (
        cdfs.pdf("reciprocal", np.array(0.0)) == 0.25
        and cdfs.pdf("reciprocal_gendr", np.array(0.0)) == 0.5
    )
    np.testing.assert_allclose(
        cdfs.cdf("reciprocal", x), cdfs.cdf("reciprocal_gendr", x, scale=2.0), atol=1e-15
    )
    # optimal: linear in [-1/4, 1/4], 1 - 1/(16 v) beyond
    assert cdfs.cdf("optimal", np.array(1.0)) == pytest.approx(1 - 1 / 16, abs=1e-9)


def test_erf_matches_scipy() -> None:
    x = np.linspace(-9, 9, 40001)
    np.testing.assert_allclose(cdfs.erf(x), sps.erf(x), atol=4e-15)
    np.testing.assert_allclose(cdfs.erfc(x), sps.erfc(x), rtol=3e-13, atol=1e-300)
    x32 = x.astype(np.float32)
    assert cdfs.erf(x32).dtype == np.float32


def test_squared_option() -> None:
    x = np.array([-1.5, -0.2, 0.4, 2.0])
    np.testing.assert_allclose(
        cdfs.cdf("logistic", x, squared=True, scale=2.0), sps.expit(np.sign(x) * x**2 / 2.0)
    )
    h = 1e-6
    fd = (cdfs.cdf("cauchy", x + h, squared=True) - cdfs.cdf("cauchy", x - h, squared=True)) / (
        2 * h
    )
    np.testing.assert_allclose(cdfs.pdf("cauchy", x, squared=True), fd, rtol=1e-6)


def test_bad_arguments() -> None:
    x = np.zeros(3)
    with pytest.raises(ValueError, match="distribution"):
        cdfs.cdf("logistik", x)
    with pytest.raises(TypeError, match="distribution"):
        cdfs.cdf(3, x)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        cdfs.cdf("cauchy", x, scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        cdfs.pdf("cauchy", x, scale=math.nan)
    with pytest.raises(ValueError, match="shape"):
        cdfs.cdf("cauchy", x, shape=2.0)
    with pytest.raises(ValueError, match="shift"):
        cdfs.cdf("cauchy", x, shift=1.0)
    with pytest.raises(ValueError, match="art_lambda"):
        cdfs.cdf("logistic_phi", x, art_lambda=1.5)
    with pytest.raises(ValueError, match="already registered"):
        cdfs.register(cdfs.get("cauchy"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("squared", [False, True])
def test_infinite_and_overflowing_arguments(name: str, squared: bool) -> None:
    # F(-inf) = 0, F(inf) = 1 and f = 0 there, also when x / scale overflows (float32
    # 3e38 / 1e-2); no NaN from inf/inf or 0·inf inside the formulas
    for dtype in (np.float32, np.float64):
        big = np.finfo(dtype).max / 2
        x = np.array([-np.inf, -big, -1e3, 0.0, 1e3, big, np.inf], dtype=dtype)
        F = cdfs.cdf(name, x, scale=1e-2, squared=squared, **_kw(name))
        f = cdfs.pdf(name, x, scale=1e-2, squared=squared, **_kw(name))
        assert F.dtype == dtype and f.dtype == dtype
        assert np.all(np.isfinite(F)) and np.all(np.isfinite(f)), (F, f)
        assert np.all(np.diff(F) >= 0) and np.all(f >= 0)
        np.testing.assert_allclose(F[[0, 1, -2, -1]], [0, 0, 1, 1], atol=1e-6)
        np.testing.assert_allclose(f[[0, -1]], 0, atol=1e-6)


def test_non_floating_arguments_and_bad_scales_raise(backend) -> None:
    # integer or bool x gave float64 (NumPy), float32 (torch), float16 (NumPy bool) or an
    # unrelated TypeError (array_api_strict); Distribution's scale <= 0 gave
    # ZeroDivisionError or, for -1, the mirrored CDF silently
    with backend.context():
        for x in (backend.asarray(np.array([0, 1])), backend.asarray(np.array([True, False]))):
            for fn in (cdfs.cdf, cdfs.pdf):
                with pytest.raises(TypeError, match="x must have a real floating dtype"):
                    fn("cauchy", x)
            with pytest.raises(TypeError, match="x must have a real floating dtype"):
                cdfs.distribution("cauchy").cdf(x)
    d = cdfs.distribution("logistic")
    for scale in (0.0, -1.0, math.nan):
        for fn in (d.cdf, d.pdf):
            with pytest.raises(ValueError, match="scale"):
                fn(np.array([1.0]), scale=scale)
    np.testing.assert_allclose(d.cdf(np.array([1.0]), scale=2.0), sps.expit([0.5]), rtol=1e-15)


@pytest.mark.parametrize("name", NAMES)
def test_float32_values_are_probabilities(name: str) -> None:
    # F in [0, 1] to the last bit: relaxed weights built from F (soft_index_weights, the
    # edge differences) feed soft_assign / soft_if, which reject values outside [0, 1];
    # cubic_hermite's 3y² - 2y³ rounded to 1 + 1.2e-7 just below y = 1
    x = np.concatenate([np.linspace(-40, 40, 40001), np.linspace(-1.001, 1.001, 40001)])
    for dtype in (np.float32, np.float64):
        F = cdfs.cdf(name, x.astype(dtype), **_kw(name))
        assert F.min() >= 0 and F.max() <= 1, (F.min(), F.max())
    if name == "cubic_hermite":
        from dopt_core.relax import soft_assign, soft_index_weights

        i = np.linspace(-3, 8, 20001, dtype=np.float32)
        w = soft_index_weights(i, 6, beta=1.0, distribution=name)
        assert w.min() >= 0 and w.max() <= 1
        soft_assign(np.zeros((i.size, 6), np.float32), w, np.float32(1.0))  # no ValueError
