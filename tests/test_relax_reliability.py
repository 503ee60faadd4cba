"""Issue 11 regression tests for the relaxations, on every backend.

* class 3 — degenerate strengths: every strength, temperature, steepness or β reaches
  its documented limit, or is refused (ValueError naming it) where it or its inverse
  is not a normal number of the arrays' dtype; soft sort/rank are exact as ε → 0;
* class 4 — ranks in a dtype too short for them are refused (``solvers.rank``,
  ``soft_rank``);
* class 7 — finite inputs whose ``x/τ`` or ``βx`` overflows give the exact limit and
  finite VJPs (softmax, sparsemax, gumbel_softmax, soft_argmin/argmax, vector
  soft_min/soft_max);
* class 10 — non-broadcastable arguments of soft_compare / soft_if / soft_min /
  soft_max raise one ValueError naming them and their shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

import dopt_core as dc
from dopt_core import relax

REGS = ("l2", "kl")


def _np(backend, y) -> np.ndarray:
    return np.asarray(backend.to_numpy(y), dtype=np.float64)


# ---------------------------------------------------------------------------------
# class 3: soft sort / soft rank as ε → 0, batched (chained PAV) and in float32
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_soft_sort_rank_exact_at_tiny_strength(backend, dtype) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(260, 8)).astype(dtype)  # 260 rows: three chained PAV chunks
    x[:, 3] = x[:, 7]  # an exact tie in every row: pooled, average rank
    ranks = dc.solvers.rank(x).astype(np.float64)
    ranks[:, 3] = ranks[:, 7] = (ranks[:, 3] + ranks[:, 7]) / 2
    xs = backend.asarray(x)
    g = rng.normal(size=x.shape).astype(dtype)
    tiny = float(np.finfo(dtype).smallest_normal)
    for eps in (1e-30, 4 * tiny):
        for reg in REGS:
            for desc in (False, True):
                kw = dict(regularization_strength=eps, regularization=reg, descending=desc)
                r = _np(backend, relax.soft_rank(xs, **kw))
                want = x.shape[-1] + 1 - ranks if desc else ranks
                np.testing.assert_array_equal(r, want, err_msg=f"rank {eps} {reg} {desc}")
                s = _np(backend, relax.soft_sort(xs, **kw))
                np.testing.assert_array_equal(s, -np.sort(-x, -1) if desc else np.sort(x, -1))
        # the Jacobian of the exact limit: soft rank's is 0 off the ties, soft sort's
        # the permutation (the VJP scatters g back to the input order)
        gr = _np(backend, backend.vjp(relax.soft_rank, (xs,), dict(regularization_strength=eps), backend.asarray(g)))
        free = np.ones(x.shape[-1], bool)
        free[[3, 7]] = False
        np.testing.assert_array_equal(gr[:, free], 0.0)  # exact zeros, also where g/ε overflows
        gs = _np(backend, backend.vjp(relax.soft_sort, (xs,), dict(regularization_strength=eps), backend.asarray(g)))
        ref = np.asarray(dc.value_and_vjp(dc.solvers.sort, x.astype(np.float64))[1](g.astype(np.float64)))
        np.testing.assert_allclose(gs[:, free], ref[:, free], rtol=1e-6)


def test_soft_sort_rank_refuse_strength_below_the_dtype() -> None:
    for dtype in (np.float32, np.float64):
        tiny = float(np.finfo(dtype).smallest_normal)
        for f in (relax.soft_sort, relax.soft_rank):
            with pytest.raises(ValueError, match="regularization_strength must be >= "):
                f(np.zeros(3, dtype), regularization_strength=tiny / 4)


# every op with a strength: name, call, argument
_STRENGTH_OPS = [
    ("tau", lambda x, v: relax.softmax(x, tau=v)),
    ("tau", lambda x, v: relax.sparsemax(x, tau=v)),
    ("tau", lambda x, v: relax.gumbel_softmax(x, tau=v, rng=0)),
    ("steepness", lambda x, v: relax.network_sort(x, steepness=v)),
    ("steepness", lambda x, v: relax.network_permutation(x, steepness=v)),
    ("steepness", lambda x, v: relax.sorting_network(x, steepness=v)),
    ("steepness", lambda x, v: relax.soft_top_k(x, 2, steepness=v)),
    ("beta", lambda x, v: relax.soft_compare(x, 0.5, beta=v)),
    ("beta", lambda x, v: relax.soft_min(x, 0.5, beta=v)),
    ("beta", lambda x, v: relax.soft_max(x, beta=v)),
    ("beta", lambda x, v: relax.soft_argmin(x, beta=v)),
    ("beta", lambda x, v: relax.soft_argmax(x, beta=v)),
]


@pytest.mark.parametrize("name, call", _STRENGTH_OPS)
def test_strengths_outside_the_dtype_are_refused(backend, name, call) -> None:
    """float32: 1e-300 and 1e300 become 0 / inf in the arrays (NaN results before)."""
    x = backend.asarray(np.array([3.0, 1.0, 2.0], dtype=np.float32))
    for v in (1e-300, 1e300):
        with pytest.raises(ValueError, match=f"{name} must lie in \\[1.17549e-38, 8.50706e\\+37\\]"):
            call(x, v)
    call(x, 1e30)  # inside: accepted (and no overflow warning)


def test_strength_limits_are_reached() -> None:
    """Inside the range the documented limits hold: β, steepness → ∞ exact, τ → 0 one-hot."""
    x = np.array([[3.0, 1.0, 2.0]])
    for dtype, big in ((np.float32, 1e37), (np.float64, 1e300)):
        xd = x.astype(dtype)
        np.testing.assert_array_equal(relax.network_sort(xd, steepness=big), np.sort(xd, -1))
        np.testing.assert_array_equal(relax.soft_top_k(xd, 1, steepness=big)[..., 0], [[1, 0, 0]])
        np.testing.assert_array_equal(relax.soft_min(xd, beta=big), [1.0])
        np.testing.assert_array_equal(relax.soft_min(xd, 2.0, beta=big), [[2.0, 1.0, 2.0]])
        np.testing.assert_array_equal(relax.soft_argmax(xd, beta=big), [[1, 0, 0]])
        tiny = 1e-37 if dtype == np.float32 else 1e-300
        np.testing.assert_array_equal(relax.softmax(xd, tau=tiny), [[1, 0, 0]])
        np.testing.assert_array_equal(relax.sparsemax(xd, tau=tiny), [[1, 0, 0]])


# ---------------------------------------------------------------------------------
# class 4: ranks in low-precision dtypes
# ---------------------------------------------------------------------------------
def _low_precision(backend) -> list[tuple[object, int]]:
    """(dtype, exact-integer range) of the backend's float16 / bfloat16."""
    x = backend.asarray(np.zeros(1))
    name = dc.backend_for(x).name
    if name == "torch":
        import torch

        return [(torch.float16, 2048), (torch.bfloat16, 256)]
    if name == "jax":
        import jax.numpy as jnp

        return [(jnp.float16, 2048), (jnp.bfloat16, 256)]
    if name == "numpy":
        return [(np.float16, 2048)]
    pytest.skip(f"{backend.name}: no float16/bfloat16 arrays here")


def test_ranks_refused_beyond_the_dtype_integers(backend) -> None:
    for dtype, limit in _low_precision(backend):
        for n, ok in ((limit, True), (limit + 1, False)):
            x = backend.asarray(np.random.default_rng(n).permutation(n).astype(np.float32))
            x = x.astype(dtype) if hasattr(x, "astype") else x.to(dtype)
            for f in (dc.solvers.rank, relax.soft_rank):
                if ok:
                    r = np.sort(_np(backend, f(x) if f is dc.solvers.rank else f(x, regularization_strength=1e-3)))
                    np.testing.assert_array_equal(r, np.arange(1, n + 1))  # a permutation
                else:
                    with pytest.raises(ValueError, match=f"ranks up to {n} are not exact .*up to {limit}"):
                        f(x)
    with pytest.raises(ValueError, match="ranks up to 16777217 are not exact in float32"):
        dc.solvers.rank(np.zeros(2**24 + 1, np.float32))


# ---------------------------------------------------------------------------------
# class 7: overflow inside the stable formulas
# ---------------------------------------------------------------------------------
_SIMPLEX = [
    (relax.softmax, dict(tau=1e-3), [1.0, 0.0, 0.0]),
    (relax.sparsemax, dict(tau=1e-3), [1.0, 0.0, 0.0]),
    (relax.gumbel_softmax, dict(tau=1e-3), [1.0, 0.0, 0.0]),
    (relax.soft_argmax, dict(beta=10.0), [1.0, 0.0, 0.0]),
    (relax.soft_argmin, dict(beta=10.0), [0.0, 1.0, 0.0]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_overflowing_scaled_inputs_stay_finite(backend, dtype) -> None:
    big = float(np.finfo(dtype).max)
    x_np = np.array([0.9 * big, 0.5 * big, 0.7 * big], dtype=dtype)
    x = backend.asarray(x_np)
    g = backend.asarray(np.array([1.0, -2.0, 0.5], dtype=dtype))
    for f, kw, want in _SIMPLEX:
        if f is relax.gumbel_softmax:
            kw = dict(kw, noise=backend.asarray(np.zeros(3, dtype)))
        y = _np(backend, f(x, **kw))
        np.testing.assert_array_equal(y, want)
        grad = _np(backend, backend.vjp(f, (x,), kw, g))
        assert np.isfinite(grad).all(), f.__name__
    g0 = backend.asarray(np.array(1.0, dtype))
    for f, want in ((relax.soft_min, 0.5 * big), (relax.soft_max, 0.9 * big)):
        y = _np(backend, f(x, beta=10.0))
        np.testing.assert_allclose(y, np.float64(dtype(want)), rtol=1e-6)
        grad = _np(backend, backend.vjp(f, (x,), dict(beta=10.0), g0))
        # the exact extremum's gradient: one-hot at the extremal entry
        np.testing.assert_array_equal(grad, [0.0, 1.0, 0.0] if f is relax.soft_min else [1.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------
# class 10: non-broadcastable arguments
# ---------------------------------------------------------------------------------
def test_non_broadcastable_arguments_are_named(backend) -> None:
    a, b = backend.asarray(np.zeros(3)), backend.asarray(np.zeros(4))
    p = backend.asarray(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match=r"a and b must broadcast .*a \(3,\), b \(4,\)"):
        relax.soft_compare(a, b)
    with pytest.raises(
        ValueError,
        match=r"p and then_value and else_value must broadcast .*p \(2, 3\), then_value \(4,\), else_value \(\)",
    ):
        relax.soft_if(p, b, 0.0)
    for f in (relax.soft_min, relax.soft_max):
        with pytest.raises(ValueError, match=r"x and y must broadcast .*x \(3,\), y \(4,\)"):
            f(a, b)
    # broadcastable shapes still broadcast
    assert tuple(relax.soft_min(p, a).shape) == (2, 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_networks_at_the_top_of_the_dtype(dtype) -> None:
    """Class 7 in the comparator: steepness · Δ overflows for finite inputs near the
    dtype's maximum (inf/inf in reciprocal, inf - inf in gamma gave NaN); every CDF
    now gives the exact sort / permutation and finite VJPs there."""
    import warnings

    big = float(np.finfo(dtype).max)
    x = np.array([0.9, 0.5, 0.7, 0.6], dtype) * dtype(big)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        for sig in relax.cdfs.NAMES:
            tol = 4e-9 if sig.startswith("levy") else 0.0  # Lévy tail: 1 - F(1e18) ~ 8e-10
            y, vjp = dc.value_and_vjp(relax.network_sort, x, steepness=10.0, sigmoid=sig)
            np.testing.assert_allclose(y, np.sort(x), rtol=tol, atol=0, err_msg=sig)
            assert np.isfinite(vjp(np.ones_like(y))).all(), sig
            P, vjp = dc.value_and_vjp(relax.network_permutation, x, network="bitonic", sigmoid=sig)
            np.testing.assert_allclose(P, dc.solvers.permutation(x), atol=tol, err_msg=sig)
            assert np.isfinite(vjp(np.ones_like(P))).all(), sig
            T, vjp = dc.value_and_vjp(relax.soft_top_k, x, 2, sigmoid=sig)
            np.testing.assert_allclose(T.sum(-1), dc.solvers.top_k(x, 2), atol=tol, err_msg=sig)
            assert np.isfinite(vjp(np.ones_like(T))).all(), sig
