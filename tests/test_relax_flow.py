"""soft_while / soft_index / soft_assign / soft_eq / soft_and|or|not, and distribution
parameters accepted everywhere: closed forms, hard limits, VJPs vs finite differences."""

from __future__ import annotations

import doctest
import importlib
import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import gamma as gamma_law

import dopt_core as dc
from dopt_core.relax import (
    cdfs,
    soft_and,
    soft_assign,
    soft_compare,
    soft_eq,
    soft_if,
    soft_index,
    soft_index_weights,
    soft_min,
    soft_not,
    soft_or,
    soft_while,
    sorting_network,
)
from dopt_core.testing import finite_difference_vjp as _fd


def test_docstring_examples() -> None:
    result = doctest.testmod(importlib.import_module("dopt_core.relax._flow"))
    assert result.attempted > 0 and result.failed == 0


# --- soft_while ----------------------------------------------------------------------------
def _gcd_loop(beta: float):  # type: ignore[no-untyped-def]
    def cond(s):  # type: ignore[no-untyped-def]
        return soft_compare(s["b"], 0.5, beta=beta)  # b > 0 for integer b

    def body(s):  # type: ignore[no-untyped-def]
        b = s["b"]
        safe = np.where(b > 0.5, b, 1.0)
        return {"a": b, "b": np.where(b > 0.5, np.remainder(s["a"], safe), 0.0), "n": s["n"] + 1}

    return cond, body


def test_soft_while_is_euclid_as_beta_grows() -> None:
    a = np.array([12.0, 17.0, 100.0, 7.0])
    b = np.array([18.0, 5.0, 75.0, 0.0])
    steps = []
    for x, y in zip(a.astype(int), b.astype(int), strict=True):
        k = 0
        while y:
            x, y, k = y, x % y, k + 1
        steps.append((x, k))
    cond, body = _gcd_loop(1e6)
    out, w = soft_while(cond, body, {"a": a, "b": b, "n": np.zeros(4)}, return_weights=True)
    np.testing.assert_array_equal(out["a"], [math.gcd(12, 18), 1, 25, 7])
    np.testing.assert_array_equal(out["n"], [k for _, k in steps])
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=1e-15)


def test_soft_while_counting_loop_weights_and_closed_form() -> None:
    # while i < n: i += 1, with the logistic condition σ(β(n - i)): the weights are
    # Pr[K = k] = Π_{j<k} σ(β(n - j)) · (1 - σ(β(n - k))), and E[i] = Σ k Pr[K = k]
    n, beta = 2.7, 1.3
    out, w = soft_while(
        lambda s: soft_compare(-s["i"], -n, beta=beta),
        lambda s: {"i": s["i"] + 1.0, "c": s["c"] + 2.0},
        {"i": np.zeros(1), "c": np.zeros(1)},
        eps=1e-14,
        return_weights=True,
    )
    K = w.shape[0]
    c = expit(beta * (n - np.arange(K)))
    pk = np.concatenate([[1.0], np.cumprod(c)])
    ref = pk[:-1] * (1 - c)
    ref[-1] += pk[-1]
    np.testing.assert_allclose(w[:, 0], ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(out["i"], [np.dot(np.arange(K), ref)], rtol=1e-12)
    np.testing.assert_allclose(out["c"], 2 * out["i"], rtol=1e-12)
    hard = soft_while(
        lambda s: soft_compare(-s, -n, beta=1e8), lambda s: s + 1.0, np.zeros(2), max_iter=100
    )
    np.testing.assert_array_equal(hard, [3.0, 3.0])
    # max_iter caps the loop; the leftover mass goes to the last state
    capped, wc = soft_while(
        lambda s: soft_compare(-s, -n, beta=1e8), lambda s: s + 1.0, np.zeros(1), max_iter=2,
        return_weights=True,
    )
    np.testing.assert_array_equal(capped, [2.0])
    np.testing.assert_array_equal(wc[:, 0], [0.0, 0.0, 1.0])


def test_soft_while_vjp_finite_differences_torch() -> None:
    torch = pytest.importorskip("torch")
    beta = 1.7

    def run(x0):  # type: ignore[no-untyped-def]
        # while x < 3: x = x * 1.5 + 0.2 (x: the differentiated input), weighted by the
        # relaxed condition; dict state with a second leaf
        return soft_while(
            lambda s: soft_compare(-s["x"], -3.0, beta=beta),
            lambda s: {"x": s["x"] * 1.5 + 0.2, "y": s["y"] + s["x"]},
            {"x": x0, "y": x0 * 0},
            max_iter=12,
            eps=0.0,
        )

    x = np.array([0.4, 1.1, 2.5])
    g = np.array([0.3, -1.0, 0.7])
    xt = torch.tensor(x, requires_grad=True)
    out = run(xt)
    ((out["x"] + 0.5 * out["y"]) * torch.tensor(g)).sum().backward()
    f = lambda v: (lambda o: o["x"] + 0.5 * o["y"])(run(v))  # noqa: E731
    np.testing.assert_allclose(xt.grad.numpy(), _fd(f, x, g), rtol=1e-6, atol=1e-8)


def test_soft_while_validation() -> None:
    with pytest.raises(TypeError, match="callables"):
        soft_while(None, lambda s: s, np.zeros(1))
    with pytest.raises(ValueError, match="structure"):
        soft_while(lambda s: soft_compare(-s["i"], -2.0), lambda s: {"j": s["i"]}, {"i": np.zeros(1)})
    with pytest.raises(TypeError, match="floating"):
        soft_while(lambda s: np.ones(1) * 0.0, lambda s: s, np.zeros(1, dtype=int))


# --- index / assign / eq / logic -------------------------------------------------------------
def test_soft_index_weights_closed_form_and_limit() -> None:
    i = np.array([-0.7, 0.2, 1.5, 3.9])
    w = soft_index_weights(i, 4, beta=2.0)
    edges = np.arange(5) - 0.5
    C = expit(2.0 * (edges[None] - i[:, None]))
    C[:, 0], C[:, -1] = 0.0, 1.0
    np.testing.assert_allclose(w, np.diff(C, axis=-1), rtol=1e-13)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-14)
    hard = soft_index_weights(np.array([0.2, 2.6, 7.0]), 4, beta=1e6)
    np.testing.assert_array_equal(hard, np.eye(4)[[0, 3, 3]])


def test_soft_index_and_assign_vjps() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5))
    i = np.array([0.3, 2.2, 3.7])
    g = rng.normal(size=3)
    for dist in ("logistic", "cauchy", ("gamma_rev", 2.5)):
        _, vjp = dc.value_and_vjp(soft_index, a, i, beta=1.5, distribution=dist)
        np.testing.assert_allclose(
            vjp(g), _fd(lambda x: soft_index(x, i, beta=1.5, distribution=dist), a, g), atol=1e-8
        )
        fd_i = _fd(lambda t: soft_index(a, t, beta=1.5, distribution=dist), i, g)
        _, vjp_w = dc.value_and_vjp(soft_index_weights, i, 5, beta=1.5, distribution=dist)
        gw = g[:, None] * a  # <g, Σ w a> through the weights
        np.testing.assert_allclose(vjp_w(gw), fd_i, atol=1e-8)
    w = rng.uniform(0, 1, (3, 5))
    v = rng.normal(size=(3, 5))
    gg = rng.normal(size=(3, 5))
    np.testing.assert_allclose(soft_assign(a, w, v), w * v + (1 - w) * a, rtol=1e-15)
    _, vjp = dc.value_and_vjp(soft_assign, a, w, v)
    np.testing.assert_allclose(vjp(gg), gg * (1 - w), rtol=1e-15)


def test_soft_eq_and_logic() -> None:
    d = np.linspace(-3, 3, 13)
    beta = 1.7
    s = expit(beta * d)
    np.testing.assert_allclose(soft_eq(d, 0.0, beta=beta), 4 * s * (1 - s), rtol=1e-12)
    np.testing.assert_allclose(soft_eq(d, 0.0, beta=beta), np.cosh(beta * d / 2) ** -2, rtol=1e-12)
    assert float(soft_eq(np.array(2.0), 2.0)) == 1.0
    assert float(soft_eq(np.array(1.0), 0.0, beta=1e4)) == 0.0
    _, vjp = dc.value_and_vjp(soft_eq, d, 0.4, beta=beta)
    g = np.cos(d)
    np.testing.assert_allclose(vjp(g), _fd(lambda x: soft_eq(x, 0.4, beta=beta), d, g), atol=1e-8)
    p, q = np.array([0.2, 0.9, 1.0]), np.array([0.5, 0.3, 0.0])
    np.testing.assert_allclose(soft_and(p, q), p * q)
    np.testing.assert_allclose(soft_or(p, q), p + q - p * q)
    np.testing.assert_allclose(soft_not(p), 1 - p)
    _, vjp = dc.value_and_vjp(soft_or, p, q)
    np.testing.assert_allclose(vjp(np.ones(3)), 1 - q)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_and(p + 1, q)


def test_flow_backends(backend) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(2, 4))
    i = np.array([0.6, 2.4])
    g = rng.normal(size=2)
    ref = soft_index(a, i, beta=2.0)
    _, vjp = dc.value_and_vjp(soft_index, a, i, beta=2.0)
    with backend.context():
        A, I = backend.asarray(a), backend.asarray(i)
        y = backend.to_numpy(soft_index(A, I, beta=2.0))
        grad = backend.to_numpy(backend.vjp(soft_index, (A, I), {"beta": 2.0}, backend.asarray(g)))
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    np.testing.assert_allclose(grad, vjp(g), rtol=1e-12)


# --- CDF shape parameters everywhere ---------------------------------------------------------
def test_distribution_parameters_everywhere() -> None:
    x = np.array([-1.0, 0.2, 0.9])
    k = 3.0
    # soft_compare with ("gamma", k): F(βd) = P(k, βd)
    np.testing.assert_allclose(
        soft_compare(x, 0.0, beta=2.0, distribution=("gamma", k)),
        gamma_law.cdf(2.0 * x, k),
        rtol=1e-10,
        atol=1e-14,
    )
    same = [("gamma", k), ("gamma", {"shape": k}), cdfs.distribution("gamma", shape=k)]
    outs = [soft_compare(x, 0.0, beta=2.0, distribution=d) for d in same]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    # the default shape is 2; an object from the registry is accepted as well
    np.testing.assert_allclose(
        soft_compare(x, 0.0, beta=2.0, distribution=cdfs.get("gamma")),
        gamma_law.cdf(2.0 * x, 2.0),
        rtol=1e-10,
        atol=1e-14,
    )
    # pairs: soft_min uses α = F(β(y - x)), with the exponential's shift
    y = np.array([0.5, 0.1, 2.0])
    alpha = np.asarray(cdfs.cdf("exponential", 3.0 * (y - x), shift=0.5))
    np.testing.assert_allclose(
        soft_min(x, y, beta=3.0, distribution=("exponential", 0.5)),
        alpha * x + (1 - alpha) * y,
        rtol=1e-13,
    )
    # sorting networks: ("logistic_phi", λ) is sigmoid="logistic_phi", art_lambda=λ
    z = np.random.default_rng(2).normal(size=(2, 5))
    a1, p1 = sorting_network(z, sigmoid=("logistic_phi", 0.4), steepness=3.0)
    a2, p2 = sorting_network(z, sigmoid="logistic_phi", art_lambda=0.4, steepness=3.0)
    np.testing.assert_array_equal(a1, a2)
    a3, _ = sorting_network(z, sigmoid=("gamma_rev", 4.0), steepness=3.0)
    a4, _ = sorting_network(z, sigmoid="gamma_rev", steepness=3.0)
    assert np.abs(a3 - a4).max() > 1e-3  # the shape changes the relaxation
    # soft_compare's VJP with a shape parameter
    _, vjp = dc.value_and_vjp(soft_compare, x, 0.0, beta=2.0, distribution=("gamma", k))
    g = np.ones(3)
    fd = _fd(lambda t: soft_compare(t, 0.0, beta=2.0, distribution=("gamma", k)), x, g)
    np.testing.assert_allclose(vjp(g), fd, atol=1e-8)
    with pytest.raises(ValueError, match="no shape parameter"):
        soft_compare(x, 0.0, distribution=("logistic", 2.0))
    with pytest.raises(ValueError, match="shape must be"):
        soft_compare(x, 0.0, distribution=("gamma", 50.0))
    with pytest.raises(TypeError, match="distribution must be"):
        soft_compare(x, 0.0, distribution=3)
    assert soft_if(np.array([0.5]), 1.0, 0.0)[0] == 0.5


def test_soft_while_rejects_conditions_outside_the_unit_interval() -> None:
    # Pr[K = k] = p_{k-1} - p_k are weights only for c in [0, 1]; c = 2 gave the weights
    # (-1, -2, -4, 8) and silently a state extrapolated far outside the visited ones
    body = lambda s: s + 1.0  # noqa: E731
    for bad in (2.0, -0.5, math.nan):
        with pytest.raises(ValueError, match=r"cond.*\[0, 1\]"):
            soft_while(lambda s: s * 0 + bad, body, np.zeros(2), max_iter=3)
    # only at the second iteration
    with pytest.raises(ValueError, match=r"cond.*\[0, 1\]"):
        soft_while(lambda s: np.where(s > 0.5, 1.5, 0.5), body, np.zeros(2), max_iter=3)
    # the boundary values are fine, and a valid loop still reads one max per iteration
    out = soft_while(lambda s: np.where(s < 1.5, 1.0, 0.0), body, np.zeros(2), max_iter=5)
    np.testing.assert_array_equal(out, [2.0, 2.0])


def test_soft_eq_is_a_probability_in_float32() -> None:
    # sech²(v/2) <= 1; 4e/(1+e)² rounded to 1 + 1.2e-7 near v = 0 in float32, so the
    # AlgoVision pattern If(Eq(a, b)) = soft_if(soft_eq(a, b), ...) raised ValueError
    x = np.linspace(-1e-3, 1e-3, 20001, dtype=np.float32)
    e = soft_eq(x, 0.0, beta=1.0)
    assert e.dtype == np.float32 and e.max() <= 1 and e.min() > 0.9999
    np.testing.assert_allclose(e, 1 / np.cosh(x.astype(np.float64) / 2) ** 2, atol=2e-7)
    soft_if(e, np.float32(2.0), np.float32(0.0))  # no ValueError
