"""Soft sort / soft rank: PAV vs brute force, limits, VJP vs finite differences, torchsort."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp as _fd_vjp
from dopt_core.relax import soft_rank, soft_sort
from dopt_core.relax._softsort import isotonic_kl, isotonic_l2

REGS = ("l2", "kl")




def _brute_isotonic(y: np.ndarray, w: np.ndarray | None, reg: str) -> np.ndarray:
    """Best feasible solution over all partitions into consecutive blocks (2^(n-1) of them)."""
    n = y.size
    best, best_obj = None, np.inf
    for cuts in itertools.product((0, 1), repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        v = np.empty(n)
        for s, e in zip(bounds[:-1], bounds[1:]):
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
        np.testing.assert_allclose(vjp(g), _fd_vjp(lambda t: f(t, **kw), x, g), atol=1e-7)


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
            # the VJP sums terms of size |g| |y| / strength before they cancel: rounding scales with that
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
    from dopt_core.relax._softsort import _blocks_l2, _pav_l2_rows

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
