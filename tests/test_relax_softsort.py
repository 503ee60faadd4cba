"""Soft sort / soft rank: PAV vs brute force, limits, VJP vs finite differences, torchsort."""

from __future__ import annotations

import importlib.util
import itertools
import zlib

import numpy as np
import pytest
from scipy.special import logsumexp

import dopt_core as dc
from dopt_core.relax import soft_rank, soft_sort
from dopt_core.relax._pav_host import isotonic_kl, isotonic_l2
from dopt_core.testing import finite_difference_vjp as _fd_vjp

REGS = ("l2", "kl")


def _brute_isotonic(y: np.ndarray, w: np.ndarray | None, reg: str) -> np.ndarray:
    """Best feasible solution over all partitions into consecutive blocks (2^(n-1) of them)."""
    n = y.size
    best, best_obj = None, np.inf
    for cuts in itertools.product((0, 1), repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        v = np.empty(n)
        for s, e in itertools.pairwise(bounds):
            v[s:e] = np.mean(y[s:e]) if reg == "l2" else logsumexp(y[s:e]) - logsumexp(w[s:e])
        if np.any(np.diff(v) > 1e-12):
            continue
        obj = (
            0.5 * np.sum((v - y) ** 2)
            if reg == "l2"
            else np.sum(np.exp(y - v)) + np.sum(np.exp(w) * v)
        )
        if obj < best_obj - 1e-12:
            best, best_obj = v, obj
    return best


def test_pav_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = 1 + trial % 7
        y = (
            rng.normal(size=n) if trial % 3 else rng.integers(-2, 3, size=n).astype(float)
        )  # ties too
        w = rng.normal(size=n)
        np.testing.assert_allclose(isotonic_l2(y), _brute_isotonic(y, None, "l2"), atol=1e-12)
        np.testing.assert_allclose(isotonic_kl(y, w), _brute_isotonic(y, w, "kl"), atol=1e-12)


@pytest.mark.parametrize("reg", REGS)
def test_small_strength_is_exact(reg: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 6))
    np.testing.assert_allclose(
        soft_sort(x, regularization_strength=1e-4, regularization=reg), np.sort(x, -1), atol=1e-9
    )
    np.testing.assert_allclose(
        soft_sort(x, regularization_strength=1e-4, regularization=reg, descending=True),
        -np.sort(-x, -1),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        soft_rank(x, regularization_strength=1e-4, regularization=reg),
        dc.solvers.rank(x),
        atol=1e-9,
    )
    np.testing.assert_allclose(
        soft_rank(x, regularization_strength=1e-4, regularization=reg, descending=True),
        dc.solvers.rank(-x),
        atol=1e-9,
    )


@pytest.mark.parametrize("reg", REGS)
def test_large_strength_limits(reg: str) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 7))
    r = soft_rank(x, regularization_strength=1e7, regularization=reg)
    np.testing.assert_allclose(r, 4.0, atol=1e-5)
    s = soft_sort(x, regularization_strength=1e7, regularization=reg)
    limit = x.mean(-1) if reg == "l2" else -np.log(np.mean(np.exp(-x), -1))
    np.testing.assert_allclose(s, np.broadcast_to(limit[:, None], x.shape), atol=1e-5)


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("strength", [0.3, 1.0, 4.0])
def test_ranks_in_permutahedron_and_sort_monotone(reg: str, strength: float) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 8)) * 2
    r = soft_rank(x, regularization_strength=strength, regularization=reg)
    np.testing.assert_allclose(r.sum(-1), 36.0, rtol=1e-12)
    # permutahedron: the k largest ranks sum to at most n + (n-1) + ... + (n-k+1)
    top = np.cumsum(-np.sort(-r, -1), -1)
    assert np.all(top <= np.cumsum(np.arange(8, 0, -1)) + 1e-9)
    # ranks preserve the order of x
    assert np.all(np.diff(np.take_along_axis(r, np.argsort(x, -1), -1), axis=-1) >= -1e-12)
    assert np.all(
        np.diff(soft_sort(x, regularization_strength=strength, regularization=reg), axis=-1)
        >= -1e-12
    )


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("descending", [False, True])
def test_vjps_match_finite_differences(reg: str, descending: bool) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6))
    for f in (soft_sort, soft_rank):
        kw = dict(regularization=reg, regularization_strength=0.7, descending=descending)
        g = rng.normal(size=x.shape)
        _, vjp = dc.value_and_vjp(f, x, **kw)
        fd = _fd_vjp(lambda t, f=f, kw=kw: f(t, **kw), x, g)
        np.testing.assert_allclose(vjp(g), fd, atol=1e-7)


def test_batch_shapes_and_float32() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 5)).astype(np.float32)
    for f in (soft_sort, soft_rank):
        for reg in REGS:
            y = f(x, regularization=reg)
            assert y.dtype == np.float32 and y.shape == x.shape
            np.testing.assert_allclose(y[1, 2], f(x[1, 2], regularization=reg), rtol=1e-6)
            np.testing.assert_allclose(
                y, f(x.astype(np.float64), regularization=reg), rtol=1e-5, atol=1e-5
            )


def test_backends(backend) -> None:
    x = backend.asarray(np.array([[0.3, -1.0, 2.0, 0.1]]))
    for f in (soft_sort, soft_rank):
        y = f(x, regularization_strength=0.5)
        assert dc.backend_for(y) is dc.backend_for(x)
        assert backend.same_device(backend.device_of(y), backend.device_of(x))
        np.testing.assert_allclose(
            backend.to_numpy(y),
            f(np.array([[0.3, -1.0, 2.0, 0.1]]), regularization_strength=0.5),
            rtol=1e-12,
        )


@pytest.mark.skipif(importlib.util.find_spec("torchsort") is None, reason="torchsort not installed")
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("strength", [0.1, 1.0, 3.0])
def test_equals_torchsort(reg: str, strength: float) -> None:
    import torch
    import torchsort

    rng = np.random.default_rng(6)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        x = (rng.normal(size=(4, 9)) * 2).astype(dtype)
        g = rng.normal(size=x.shape).astype(dtype)
        for f, tf in ((soft_sort, torchsort.soft_sort), (soft_rank, torchsort.soft_rank)):
            xt = torch.tensor(x, requires_grad=True)
            yt = tf(xt, regularization=reg, regularization_strength=strength)
            (gt,) = torch.autograd.grad((yt * torch.tensor(g)).sum(), xt)
            y, vjp = dc.value_and_vjp(f, x, regularization=reg, regularization_strength=strength)
            scale = max(1.0, float(np.abs(yt.detach().numpy()).max()))
            np.testing.assert_allclose(y, yt.detach().numpy(), atol=tol * scale)
            # the VJP sums terms of size |g| |y| / strength before they cancel: rounding
            # scales with that
            gscale = max(1.0, float(np.abs(g).max()) * scale / strength)
            np.testing.assert_allclose(vjp(g), gt.numpy(), atol=tol * gscale)


def test_bad_arguments() -> None:
    x = np.array([0.0, 1.0])
    for f in (soft_sort, soft_rank):
        with pytest.raises(ValueError, match="regularization_strength"):
            f(x, regularization_strength=0.0)
        with pytest.raises(ValueError, match="regularization_strength"):
            f(x, regularization_strength=float("inf"))
        with pytest.raises(ValueError, match="regularization"):
            f(x, regularization="entropy")
        with pytest.raises(TypeError, match="descending"):
            f(x, descending=None)
        with pytest.raises(ValueError, match="x"):
            f(np.array([1.0, np.nan]))
        with pytest.raises(ValueError, match="x"):
            f(np.zeros((2, 0)))


def test_batched_l2_pav_equals_row_by_row() -> None:
    """Rows chained with separating offsets (and split in chunks) give each row's own PAV:
    the same values, and the same blocks except where adjacent blocks have equal values
    (a kink: either partition is a valid subgradient)."""
    from dopt_core.relax._pav_host import _blocks_l2, _pav_l2_rows

    rng = np.random.default_rng(7)
    y = rng.normal(size=(300, 9)) * rng.uniform(0.01, 100, size=(300, 1))
    y[::7] = np.round(y[::7])  # ties
    y[::11] = np.round(y[::11] * 4) / 4  # dyadic ties: chaining is exact there
    blocks, value = _pav_l2_rows(y)
    v = np.repeat(value, np.diff(blocks)).reshape(300, 9)
    for r in range(300):
        v_r, blocks_r = _blocks_l2(y[r])
        tol = 1e-12 * np.abs(y).max()
        np.testing.assert_allclose(v[r], v_r, rtol=1e-12, atol=tol)
        row = blocks[(blocks >= 9 * r) & (blocks <= 9 * (r + 1))] - 9 * r
        if r % 11 == 0:
            np.testing.assert_array_equal(row, blocks_r)
        for j in set(row.tolist()) ^ set(blocks_r.tolist()):
            assert abs(v_r[j - 1] - v_r[j]) <= tol, (r, j)


# ---------------------------------------------------------------------------------
# the one-call host path against the former two-stage computation
# ---------------------------------------------------------------------------------
def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max())
    return e / e.sum()


def _two_stage(x: np.ndarray, rank: bool, reg: str, eps: float, descending: bool):
    """The former algorithm, row by row in float64: stable argsort, inverse permutation
    by a second argsort, one SciPy / Python PAV per row, VJP in sorted coordinates.
    Returns ``(y, vjp)``."""
    from dopt_core.relax._pav_host import _blocks_kl, _blocks_l2

    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    rho = np.arange(n, 0, -1, dtype=np.float64)
    out, saved = np.empty_like(rows), []
    for i, row in enumerate(rows):
        if rank:
            theta = (-row if descending else row) / eps
            order = np.argsort(-theta, kind="stable")
            s = theta[order]
            v, blocks = _blocks_l2(s - rho) if reg == "l2" else _blocks_kl(s, np.log(rho))
            r_sorted = s - v if reg == "l2" else np.exp(s - v)
        else:
            u = -row if descending else row
            order = np.argsort(u, kind="stable")
            s = -u[order]
            z = rho / eps
            v, blocks = _blocks_l2(z - s) if reg == "l2" else _blocks_kl(z, s)
            r_sorted = v - z
        inv = np.argsort(order, kind="stable")
        sizes = np.diff(blocks)
        aux = (
            1.0 / np.repeat(sizes, sizes)
            if reg == "l2"
            else np.concatenate([_softmax(s[a:b]) for a, b in itertools.pairwise(blocks)])
        )
        if rank:
            out[i] = r_sorted[inv]
        else:
            out[i] = -r_sorted if descending else r_sorted
        saved.append((order, inv, blocks, aux, r_sorted))

    def block_sum(u: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        sums = np.add.reduceat(u, blocks[:-1])
        return np.repeat(sums, np.diff(blocks))

    def vjp(g: np.ndarray) -> np.ndarray:
        grows = np.asarray(g, dtype=np.float64).reshape(-1, n)
        res = np.empty_like(grows)
        for i, (order, inv, blocks, aux, r_sorted) in enumerate(saved):
            if rank:
                gs = grows[i][order] * (r_sorted if reg == "kl" else 1.0)
                gs = gs - aux * block_sum(gs, blocks)
                gi = gs[inv] / eps
                res[i] = -gi if descending else gi
            else:
                gg = -grows[i] if descending else grows[i]
                gu = (aux * block_sum(gg, blocks))[inv]
                res[i] = -gu if descending else gu
        return res.reshape(x.shape)

    return out.reshape(x.shape), vjp


def _tied(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal data rounded to one decimal: many exact ties."""
    return np.round(rng.normal(size=shape) * 1.5, 1)


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("rank", [False, True], ids=["sort", "rank"])
@pytest.mark.parametrize(
    "shape",
    [(3, 4, 7), (9,), (2, 1), (0, 5), (2, 0, 3), (40, 33), (3, 100, 4)],  # 300 rows: chunks
)
def test_host_path_equals_two_stage(reg: str, descending: bool, rank: bool, shape: tuple) -> None:
    """The packed one-call host forward and the flat-index VJP give the former two-stage
    computation's numbers: float64 to rounding, float32 to float32 precision; also for
    ties, an empty batch and n = 1. ε has no small rational relation to the data's 0.1
    grid, so no two adjacent PAV blocks have exactly equal values (a kink, where either
    partition is a valid subgradient and rounding picks one)."""
    f = soft_rank if rank else soft_sort
    rng = np.random.default_rng(zlib.crc32(repr((reg, descending, rank, shape)).encode()))
    x = _tied(rng, shape)
    g = rng.normal(size=shape)
    kw = dict(regularization=reg, regularization_strength=0.3712345, descending=descending)
    y_ref, vjp_ref = _two_stage(x, rank, reg, 0.3712345, descending)
    y, vjp = dc.value_and_vjp(f, x, **kw)
    assert y.shape == shape and y.dtype == np.float64
    scale = max(1.0, float(np.abs(y_ref).max(initial=0.0)))
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12 * scale)
    gscale = max(1.0, scale * float(np.abs(g).max(initial=0.0)) / 0.3712345)
    np.testing.assert_allclose(vjp(g), vjp_ref(g), rtol=1e-11, atol=1e-11 * gscale)
    # float32 in: the same numbers to float32 precision, in float32
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    y32, vjp32 = dc.value_and_vjp(f, x32, **kw)
    assert y32.dtype == np.float32 and y32.shape == shape
    np.testing.assert_allclose(y32, y_ref, rtol=2e-6, atol=2e-6 * scale)
    gr = vjp_ref(g32.astype(np.float64))
    atol = 2e-6 * gscale * max(1, shape[-1])
    np.testing.assert_allclose(vjp32(g32), gr, rtol=1e-4, atol=atol)


def test_stable_order_matches_numpy_stable_argsort() -> None:
    """Introsort plus the tie fix is exactly NumPy's stable argsort: ties (±0 included)
    and NaN in index order, one row or many, rows with and without ties."""
    from dopt_core.relax._pav_host import _stable_order

    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        for n in (1, 2, 5, 64, 1000):
            key = rng.normal(size=(17, n)).astype(dtype)
            key[::3] = np.round(key[::3] * 2)  # ties
            key[1::4, : n // 2] = 0.0
            key[1::4, n // 2 :: 3] = -0.0  # signed zeros compare equal
            if n > 3:
                key[2, [0, n - 1, 1]] = np.nan
            order, flat, sk = _stable_order(key)
            expected = np.argsort(key, axis=-1, kind="stable")
            np.testing.assert_array_equal(order, expected)
            np.testing.assert_array_equal(flat, expected + np.arange(17)[:, None] * n)
            np.testing.assert_array_equal(sk, np.take_along_axis(key, expected, -1))


def test_tie_order_is_stable_and_the_same_on_every_backend(backend) -> None:
    """With tiny ε soft sort is the hard sort, and its VJP sends the cotangent of each
    sorted slot to the entry in that slot: the gradient reveals the tie order, which
    must be the stable one (equal entries keep their index order) on every backend."""
    x = np.array([[1.0, 0.0, 1.0, 0.0, 2.0, 0.0], [3.0, 3.0, 3.0, -1.0, 3.0, -1.0]])
    g = np.array([[10.0, 20.0, 30.0, 40.0, 50.0, 60.0], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    for descending in (False, True):
        order = np.argsort(-x if descending else x, axis=-1, kind="stable")
        expected = np.empty_like(g)
        np.put_along_axis(expected, order, g, axis=-1)
        kw = dict(regularization_strength=1e-3, descending=descending)
        with backend.context():
            grad = backend.vjp(soft_sort, (backend.asarray(x),), kw, backend.asarray(g))
            y = soft_sort(backend.asarray(x), **kw)
        np.testing.assert_allclose(backend.to_numpy(y), np.take_along_axis(x, order, -1), atol=1e-9)
        np.testing.assert_allclose(backend.to_numpy(grad), expected, rtol=1e-12)


def test_backends_agree_on_tied_data_forward_and_vjp(backend) -> None:
    """Tied data, both ops and regularisations: every backend's forward and its own
    autodiff VJP equal NumPy's (the residuals are built on the host, the VJP on the
    device with flat-index gathers)."""
    rng = np.random.default_rng(12)
    x, g = _tied(rng, (2, 3, 9)), rng.normal(size=(2, 3, 9))
    for f in (soft_sort, soft_rank):
        for reg in REGS:
            kw = dict(regularization=reg, regularization_strength=0.6)
            y_np, vjp_np = dc.value_and_vjp(f, x, **kw)
            with backend.context():
                xb = backend.asarray(x)
                y = f(xb, **kw)
                grad = backend.vjp(f, (xb,), kw, backend.asarray(g))
            assert backend.same_device(backend.device_of(y), backend.device_of(xb))
            np.testing.assert_allclose(backend.to_numpy(y), y_np, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(backend.to_numpy(grad), vjp_np(g), rtol=1e-10, atol=1e-10)


def test_jax_vmap_and_jit_of_the_vjp() -> None:
    """Under ``jax.vmap`` the host call sees the whole batch but each mapped example
    gathers with its own flat indices: vmap of the gradient equals the batched one."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(13)
    x, w = _tied(rng, (3, 2, 6)), rng.normal(size=6)
    for f in (soft_sort, soft_rank):
        for reg in REGS:
            kw = dict(regularization=reg, regularization_strength=0.5)

            def loss(t, f=f, kw=kw):
                return jnp.sum(f(t, **kw) * w)

            _, vjp = dc.value_and_vjp(f, x, **kw)
            expected = vjp(np.broadcast_to(w, x.shape).copy())
            got = jax.vmap(jax.grad(loss))(jnp.asarray(x))
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-10)
            got = jax.jit(jax.vmap(jax.grad(loss)))(jnp.asarray(x))
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reg", REGS)
def test_n_equals_one_and_empty_batch(reg: str) -> None:
    x = np.array([[2.5], [-1.0]])
    for desc in (False, True):
        y, vjp = dc.value_and_vjp(soft_sort, x, regularization=reg, descending=desc)
        np.testing.assert_allclose(y, x, rtol=1e-15)
        np.testing.assert_allclose(vjp(np.array([[3.0], [4.0]])), [[3.0], [4.0]])
        r, vjp = dc.value_and_vjp(soft_rank, x, regularization=reg, descending=desc)
        np.testing.assert_allclose(r, 1.0)
        np.testing.assert_allclose(vjp(np.array([[3.0], [4.0]])), 0.0, atol=1e-15)
    for f in (soft_sort, soft_rank):
        y, vjp = dc.value_and_vjp(f, np.zeros((0, 4), dtype=np.float32), regularization=reg)
        assert y.shape == (0, 4) and y.dtype == np.float32
        assert vjp(np.zeros((0, 4), dtype=np.float32)).shape == (0, 4)


def test_non_finite_input_without_check_does_not_raise() -> None:
    """``check_finite=False`` lets NaN/inf through; the host code must not raise."""
    x = np.array([[np.nan, 1.0, 0.0, np.inf], [1.0, -np.inf, 2.0, 0.0]])
    for f in (soft_sort, soft_rank):
        for reg in REGS:
            with np.errstate(all="ignore"):
                assert f(x, regularization=reg, check_finite=False).shape == x.shape


def test_float32_rows_longer_than_2_24_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sort positions travel in the float32 host result: exact up to 2**24 only."""
    import dopt_core.relax._softsort as mod

    monkeypatch.setattr(mod, "_MAX_N_FLOAT32", 4)
    for f in (soft_sort, soft_rank):
        with pytest.raises(ValueError, match="2\\*\\*24"):
            f(np.zeros(5, dtype=np.float32))
        assert f(np.zeros(5)).shape == (5,)  # float64 is fine


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_row_positions_equal_flat_positions(monkeypatch: pytest.MonkeyPatch, dtype) -> None:
    """Past the float's exact range the host writes per-row positions and the device adds
    row · n; forced here at small sizes, values and VJPs equal the flat-position path."""
    import dopt_core.relax._pav_host as mod

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(3, 4, 7)), 1).astype(dtype)  # ties too
    g = rng.normal(size=x.shape).astype(dtype)
    ref = {}
    for f in (soft_sort, soft_rank):
        for reg in REGS:
            y, vjp = dc.value_and_vjp(f, x, regularization_strength=0.3, regularization=reg)
            ref[f, reg] = (y, vjp(g))
    monkeypatch.setattr(mod, "MAX_FLAT", {4: 5, 8: 5})  # every batch here is larger
    for (f, reg), (y0, g0) in ref.items():
        y, vjp = dc.value_and_vjp(f, x, regularization_strength=0.3, regularization=reg)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(vjp(g), g0)


def test_host_call_batch_capability() -> None:
    """The adapters state whether a host callback sees the whole batch (JAX's vmap splits
    it); soft sort/rank read that capability instead of naming a framework."""
    from dopt_core.backend import Backend

    assert Backend.host_call_sees_whole_batch is True
    assert dc.backend_for(np.zeros(1)).host_call_sees_whole_batch is True
    jnp = pytest.importorskip("jax.numpy")
    import jax

    assert dc.backend_for(jnp.zeros(1)).host_call_sees_whole_batch is False
    x = np.random.default_rng(0).normal(size=(3, 5))
    per_row = np.stack([soft_rank(r, regularization_strength=0.4) for r in x])
    vm = jax.vmap(lambda r: soft_rank(r, regularization_strength=0.4))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(vm), per_row, rtol=1e-12)


@pytest.mark.parametrize("descending", [False, True])
def test_kl_soft_sort_of_large_values_uses_the_true_strength(descending: bool) -> None:
    """KL soft sort's PAV blocks are those of the true ε, also for |x| ~ 1e6.

    Sort's KL problem compares ρ/ε with the gaps of x: with every gap below 1/ε no block
    pools and the output is the exact sort; a floor on ε taken from |x| (right for soft
    rank, whose problem is x/ε against log ρ) pooled here and returned multiples of 1/ε.
    Against the unfloored PAV where it pools (ε = 1e-6: 1/ε equals the unit gap)."""
    from dopt_core.relax._pav_host import _kl_pav

    x = np.array([3.0, 0.0, 5.0, 1.0, -2.0, 4.5, 7.0]) * 1e6
    sign = -1.0 if descending else 1.0
    exact = sign * np.sort(sign * x)
    for eps in (1e-30, 1e-7):  # 1/ε above the largest gap (3e6): every block a singleton
        y = soft_sort(x, regularization_strength=eps, regularization="kl", descending=descending)
        np.testing.assert_array_equal(y, exact)
    eps, n = 1e-6, x.size
    rho = np.arange(n, 0, -1.0) / eps
    s = -np.sort(sign * x)  # ascending soft sort of sign·x: v_E(ρ/ε, s), s descending
    val, blocks = _kl_pav(rho, s)
    assert len(blocks) - 1 < n  # this ε pools
    ref = sign * -(rho - np.repeat(val, np.diff(blocks)))
    y = soft_sort(x, regularization_strength=eps, regularization="kl", descending=descending)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12 * np.abs(x).max())


@pytest.mark.parametrize("rank", [False, True], ids=["sort", "rank"])
def test_a_large_row_does_not_cost_the_other_rows_precision(rank: bool) -> None:
    """Rows chained into one PAV call are shifted by multiples of the chunk's spread; a
    row of values ~1e8 in the batch must not round the O(1) rows beside it (it cost them
    ~1e-5 absolute in float64 at ε >= 1): each row equals its own, to 1e-12 relative."""
    f = soft_rank if rank else soft_sort
    rng = np.random.default_rng(12)
    x = rng.normal(size=(130, 10))
    x[0] *= 1e8
    x[129] *= 1e-6
    for eps in (0.01, 1.0, 3.0):
        batched = f(x, regularization_strength=eps)
        for r in (1, 64, 128, 129):
            own = f(x[r], regularization_strength=eps)
            np.testing.assert_allclose(batched[r], own, rtol=1e-12, atol=1e-12 * np.abs(own).max())
