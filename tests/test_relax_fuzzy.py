"""T-norms / T-conorms (relax.fuzzy): the axioms, closed forms, and the reduce VJP against
finite differences, including entries equal to 1; every backend."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.op import op_function
from dopt_core.relax import fuzzy as F
from dopt_core.testing import finite_difference_vjp as _fd

#: every family with parameters spanning its range
FAMILIES = [
    ("max", None),
    ("probabilistic", None),
    ("einstein", None),
    ("hamacher", 0.0),
    ("hamacher", 0.5),
    ("hamacher", 5.0),
    ("frank", 0.3),
    ("frank", 4.0),
    ("yager", 0.7),
    ("yager", 2.0),
    ("aczel_alsina", 0.5),
    ("aczel_alsina", 2.0),
    ("dombi", 0.5),
    ("dombi", 2.0),
    ("schweizer_sklar", -0.5),
    ("schweizer_sklar", -2.0),
]
IDS = [f"{n}-{p}" for n, p in FAMILIES]


def test_docstring_examples() -> None:
    result = doctest.testmod(importlib.import_module("dopt_core.relax.fuzzy"))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("name", "p"), FAMILIES, ids=IDS)
def test_axioms(name: str, p: float | None) -> None:
    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(0, 1, 200) for _ in range(3))
    co = lambda x, y: F.tconorm(name, x, y, p=p)  # noqa: E731
    # boundary: ⊥(a, 0) = a, ⊥(a, 1) = 1; and the dual T-norm's ⊤(a, 1) = a, ⊤(a, 0) = 0
    np.testing.assert_allclose(co(a, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(co(a, 1.0), 1.0, atol=1e-12)
    np.testing.assert_allclose(F.tnorm(name, a, 1.0, p=p), a, atol=1e-12)
    np.testing.assert_allclose(F.tnorm(name, a, 0.0, p=p), 0.0, atol=1e-12)
    # duality, commutativity, associativity (to rounding)
    np.testing.assert_allclose(co(a, b), 1 - F.tnorm(name, 1 - a, 1 - b, p=p), atol=1e-12)
    np.testing.assert_allclose(co(a, b), co(b, a), atol=1e-13)
    np.testing.assert_allclose(co(co(a, b), c), co(a, co(b, c)), atol=1e-10)
    # monotone in each argument, and bounded by [max(a, b), 1]
    assert np.all(co(a, np.maximum(b, c)) >= co(a, np.minimum(b, c)) - 1e-12)
    y = co(a, b)
    assert np.all(y >= np.maximum(a, b) - 1e-12) and np.all(y <= 1 + 1e-12)


@pytest.mark.parametrize(("name", "p"), FAMILIES, ids=IDS)
def test_reduce_equals_the_fold(name: str, p: float | None) -> None:
    A = np.random.default_rng(1).uniform(0, 1, (3, 5))
    fold = A[:, 0]
    for j in range(1, 5):
        fold = F.tconorm(name, fold, A[:, j], p=p)
    np.testing.assert_allclose(F.tconorm_reduce(name, A, p=p), fold, atol=1e-12)
    np.testing.assert_allclose(F.tconorm_reduce(name, A.T, axis=0, p=p), fold, atol=1e-12)


def test_closed_forms() -> None:
    A = np.random.default_rng(2).uniform(0, 1, (4, 6))
    A[0, 2] = 1.0
    np.testing.assert_allclose(
        F.tconorm_reduce("probabilistic", A), 1 - np.prod(1 - A, axis=-1), rtol=1e-14
    )
    np.testing.assert_allclose(F.tconorm_reduce("max", A), A.max(-1), rtol=0)
    np.testing.assert_allclose(F.tnorm_reduce("max", A), A.min(-1), rtol=0)
    a, b = A[1], A[2]
    np.testing.assert_allclose(F.tconorm("einstein", a, b), (a + b) / (1 + a * b), rtol=1e-13)
    # AlgoVision's Hamacher conorm (a + b + (p-2)ab)/(1 + (p-1)ab), and Yager-1 min(1, a+b)
    h = (a + b + 3 * a * b) / (1 + 4 * a * b)
    np.testing.assert_allclose(F.tconorm("hamacher", a, b, p=5.0), h, rtol=1e-12)
    np.testing.assert_allclose(F.tconorm("yager", a, b, p=1.0), np.minimum(1, a + b), rtol=1e-13)
    # hamacher p = 2 is einstein, p = 1 probabilistic; aczel_alsina and dombi at p -> large: max
    np.testing.assert_allclose(F.tconorm("hamacher", a, b, p=2.0), F.tconorm("einstein", a, b))
    np.testing.assert_allclose(F.tconorm("hamacher", a, b, p=1.0), a + b - a * b, rtol=1e-12)
    np.testing.assert_allclose(F.tconorm("dombi", a, b, p=200.0), np.maximum(a, b), atol=5e-3)


def _vjp(name: str, p: float | None, A: np.ndarray, g: np.ndarray) -> np.ndarray:
    _, vjp = dc.value_and_vjp(
        op_function(lambda X: F.tconorm_reduce.bind(name, X, p=p, check_finite=False)), A
    )
    return vjp(g)


@pytest.mark.parametrize(("name", "p"), [f for f in FAMILIES if f[0] != "max"], ids=IDS[1:])
def test_reduce_vjp_finite_differences(name: str, p: float | None) -> None:
    rng = np.random.default_rng(3)
    A = rng.uniform(0.05, 0.95, (3, 4))
    g = rng.normal(size=3)
    fd = _fd(lambda X: F.tconorm_reduce(name, X, p=p, check_finite=False), A, g)
    np.testing.assert_allclose(_vjp(name, p, A, g), fd, atol=1e-7)


# one-sided derivative at entries equal to 1, for the families whose T(x, R) is smooth at
# x = 0 (for aczel_alsina p > 1, dombi p < 1, schweizer_sklar -1 < p < 0 the difference
# quotient converges like a power of h: the one-sided value is still exact, but finite
# differences cannot confirm it)
AT_ONE = [
    ("probabilistic", None),
    ("einstein", None),
    ("hamacher", 0.5),
    ("hamacher", 5.0),
    ("frank", 0.3),
    ("frank", 4.0),
    ("yager", 2.0),
    ("aczel_alsina", 1.0),
    ("dombi", 2.0),
    ("schweizer_sklar", -2.0),
]


@pytest.mark.parametrize(("name", "p"), AT_ONE, ids=[f"{n}-{p}" for n, p in AT_ONE])
def test_reduce_vjp_with_entries_equal_to_one(name: str, p: float | None) -> None:
    rng = np.random.default_rng(4)
    A = rng.uniform(0.05, 0.95, (3, 4))
    A[0, 1] = 1.0  # one entry 1: it alone has a gradient (the leave-one-out slope)
    A[1, 1] = A[1, 2] = 1.0  # two: no gradient at all
    g = rng.normal(size=3)
    f = lambda X: F.tconorm_reduce(name, X, p=p, check_finite=False)  # noqa: E731
    h = 1e-7
    fd = np.zeros_like(A)
    for idx in np.ndindex(A.shape):
        lo = A.copy()
        lo[idx] -= h
        if A[idx] == 1.0:  # one-sided (A <= 1)
            fd[idx] = np.sum(g * (f(A) - f(lo))) / h
        else:
            hi = A.copy()
            hi[idx] += h
            fd[idx] = np.sum(g * (f(hi) - f(lo))) / (2 * h)
    got = _vjp(name, p, A, g)
    np.testing.assert_allclose(got, fd, atol=2e-6)
    assert np.all(got[1] == 0) or name == "yager"  # yager is nilpotent: 1 saturates as well
    assert np.all(got[1] == 0)


def test_max_splits_ties() -> None:
    A = np.array([[0.2, 0.7, 0.7], [0.1, 0.9, 0.3]])
    got = _vjp("max", None, A, np.ones(2))
    np.testing.assert_allclose(got, [[0, 0.5, 0.5], [0, 1, 0]])


def test_pair_vjp_and_validation() -> None:
    rng = np.random.default_rng(5)
    a, b, g = rng.uniform(0.05, 0.95, 5), rng.uniform(0.05, 0.95, 5), rng.normal(size=5)
    for name, p in [("frank", 4.0), ("dombi", 2.0), ("schweizer_sklar", -2.0)]:
        _, vjp = dc.value_and_vjp(op_function(lambda x: F.tconorm.bind(name, x, b, p=p)), a)
        fd = _fd(lambda x: F.tconorm(name, x, b, p=p, check_finite=False), a, g)
        np.testing.assert_allclose(vjp(g), fd, atol=1e-7)
    with pytest.raises(ValueError, match="p must be < 0"):
        F.tconorm("schweizer_sklar", a, b, p=1.0)
    with pytest.raises(ValueError, match="!= 1"):
        F.tconorm("frank", a, b, p=1.0)
    with pytest.raises(ValueError, match="no parameter"):
        F.tconorm("einstein", a, b, p=2.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.tconorm("max", a + 1, b)
    with pytest.raises(ValueError, match="name must be one of"):
        F.tconorm_reduce("lukasiewicz", a)


@pytest.mark.parametrize("name", ["hamacher"])  # the generator path (conformance: probabilistic)
def test_backends_and_float32(backend, name: str) -> None:
    rng = np.random.default_rng(6)
    A = rng.uniform(0.05, 0.95, (2, 3, 5))
    A[0, 0, 0] = 1.0
    g = rng.normal(size=(2, 3))
    fn = op_function(lambda X: F.tconorm_reduce.bind(name, X))
    ref_y = F.tconorm_reduce(name, A)
    ref_g = _vjp(name, None, A, g)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        with backend.context():
            X = backend.asarray(A.astype(dtype))
            y = backend.to_numpy(fn(X))
            grad = backend.to_numpy(backend.vjp(fn, (X,), {}, backend.asarray(g.astype(dtype))))
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref_y, atol=tol)
        np.testing.assert_allclose(grad, ref_g, atol=tol * 10)


@pytest.mark.parametrize(("name", "p"), FAMILIES, ids=IDS)
def test_vjp_at_the_identity_element(name: str, p: float | None) -> None:
    # ⊥(a, 0, ..., 0) = a for every a, so ∂⊥/∂a = 1 at a = 1 too (one-sided, exact):
    # the leave-one-out reduction of the zeros is the T-norm's identity 1
    for A in (np.array([1.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0, 0.0])):
        got = _vjp(name, p, A, np.array(1.0))
        h = 1e-7
        lo = A - h * (A == 1.0)
        fd = (F.tconorm_reduce(name, A, p=p) - F.tconorm_reduce(name, lo, p=p)) / h
        assert fd == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(got, (A == 1.0).astype(float), atol=1e-12)
    _, vjp = dc.value_and_vjp(
        op_function(lambda a: F.tconorm.bind(name, a, 0.0, p=p, check_finite=False)),
        np.array([1.0]),
    )
    np.testing.assert_allclose(vjp(np.array([1.0])), [1.0], atol=1e-12)


@pytest.mark.parametrize(("name", "p"), FAMILIES + [("frank", 1e-3), ("frank", 1e3)])
def test_float32_results_stay_in_the_unit_interval(name: str, p: float | None) -> None:
    # a T-(co)norm maps [0, 1]^n into [0, 1]: chained calls must accept each other's output
    g = np.concatenate([[0.0, 1e-7, 0.5, 1 - 1e-7, 1.0], np.linspace(0, 1, 41)]).astype(np.float32)
    a, b = np.meshgrid(g, g)
    for y in (
        F.tconorm(name, a, b, p=p),
        F.tnorm(name, a, b, p=p),
        F.tconorm_reduce(name, np.stack([a, b, a], -1), p=p),
        F.tnorm_reduce(name, np.stack([a, b, a], -1), p=p),
    ):
        assert y.dtype == np.float32
        assert np.all((y >= 0) & (y <= 1)), (float(y.min()), float(y.max()))
    F.tconorm(name, F.tconorm(name, a, b, p=p), b, p=p)  # no ValueError


def _diagonal(name: str, p: float, a: np.ndarray) -> np.ndarray:
    """⊥(a, a) in closed form (x = 1 - a): the power-mean families at their diagonal."""
    x = 1 - a
    if name == "yager":  # (2 a^p)^{1/p}
        return np.minimum(1.0, 2 ** (1 / p) * a)
    if name == "aczel_alsina":  # 1 - x^{2^{1/p}}
        return -np.expm1(2 ** (1 / p) * np.log(x))
    if name == "dombi":  # 1 - 1/(1 + 2^{1/p} (1-x)/x)
        r = 2 ** (1 / p) * a / x
        return r / (1 + r)
    # schweizer_sklar: 1 - (2 x^p - 1)^{1/p}, p < 0, as 1 - x (2 - x^{-p})^{1/p}
    return 1 - x * (2 - x ** (-p)) ** (1 / p)


@pytest.mark.parametrize(
    ("name", "p"),
    [("yager", 20.0), ("yager", 50.0), ("aczel_alsina", 20.0), ("aczel_alsina", 50.0),
     ("dombi", 20.0), ("dombi", 50.0), ("schweizer_sklar", -20.0), ("schweizer_sklar", -50.0)],
)
def test_large_p_has_no_underflow(name: str, p: float) -> None:
    # large p approaches max(a, b): the powers a^p (or x^p, ((1-x)/x)^p) under- or
    # overflow long before the result does; ⊥(a, 0) = a and ⊥(a, a) must survive that
    a = np.concatenate([np.logspace(-6, -0.01, 25), 1 - np.logspace(-5, -1, 9)])
    # (tolerances: ⊥ = 1 - T(1 - a, 1 - b) rounds 1 - a to the dtype's epsilon)
    for dtype, rtol, atol in ((np.float64, 1e-12, 1e-15), (np.float32, 1e-5, 2e-7)):
        ad = a.astype(dtype)
        ref = _diagonal(name, p, ad.astype(np.float64))
        tol = {"rtol": rtol, "atol": atol}
        np.testing.assert_allclose(F.tconorm(name, ad, 0.0, p=p), ad, **tol)
        np.testing.assert_allclose(F.tconorm(name, ad, ad, p=p), ref, **tol)
        A = np.stack([ad, np.zeros_like(ad), ad], -1)
        np.testing.assert_allclose(F.tconorm_reduce(name, A, p=p), ref, **tol)
        np.testing.assert_allclose(F.tnorm(name, 1 - ad, 1 - ad, p=p), 1 - ref, **tol)


@pytest.mark.parametrize("p", [1e-6, 1e-4, 0.3, 1 - 1e-6, 1 + 1e-6, 4.0, 1e6])
def test_frank_against_high_precision(p: float) -> None:
    # ⊥(a, b) = 1 - log_p(1 + (p^x - 1)(p^y - 1)/(p - 1)), x = 1 - a, y = 1 - b, in
    # 50-digit arithmetic; small p (towards max) amplified the rounding of the generator
    # near x = 1 and of log1p near -1 (float32 p = 1e-4: error 1e-4, p = 1e-6: 4e-3)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    g = np.array([0.0, 1e-4, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0])
    a, b = (v.ravel() for v in np.meshgrid(g, g))
    P = mpmath.mpf(p)

    def ref(ai: float, bi: float) -> float:
        x, y = 1 - mpmath.mpf(ai), 1 - mpmath.mpf(bi)
        return float(1 - mpmath.log(1 + (P**x - 1) * (P**y - 1) / (P - 1)) / mpmath.log(P))

    want = np.array([ref(ai, bi) for ai, bi in zip(a, b, strict=True)])
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        got = F.tconorm("frank", a.astype(dtype), b.astype(dtype), p=p)
        # the reference at the inputs as rounded to the dtype: 1 - a is exact in binary64
        np.testing.assert_allclose(got, want, atol=tol)
