"""relax.raster: the hard limit is an exact even-odd raster, SoftRas's and DIB-R's formulas
are special cases, vertex gradients match finite differences, every backend."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
from scipy.special import expit

import dopt_core as dc
from dopt_core.relax.raster import pixel_centers, soft_silhouette, triangle_signed_distance
from dopt_core.testing import finite_difference_vjp as _fd


def test_docstring_examples() -> None:
    result = doctest.testmod(importlib.import_module("dopt_core.relax.raster"))
    assert result.attempted > 0 and result.failed == 0


# --- an independent reference: even-odd rule and brute-force distances ----------------------
def _even_odd(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Crossing-number point-in-polygon test (the even-odd rule)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    straddle = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return (np.sum(straddle & (x < xc), axis=1) % 2) == 1


def _star(n: int, r_out: float, r_in: float, centre=(0.5, 0.5), phase: float = 0.1) -> np.ndarray:
    ang = phase + np.pi * np.arange(2 * n) / n
    r = np.where(np.arange(2 * n) % 2 == 0, r_out, r_in)
    return np.stack([centre[0] + r * np.cos(ang), centre[1] + r * np.sin(ang)], axis=-1)


def _fan(poly: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """A star-shaped polygon as triangles (centre, v_i, v_{i+1})."""
    nxt = np.roll(poly, -1, axis=0)
    return np.stack([np.broadcast_to(centre, poly.shape), poly, nxt], axis=1)


def _seg_dist2(P: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # sample the segment densely and refine at the best sample: brute force, no algebra shared
    s = np.linspace(0, 1, 2001)
    pts = a[None] + s[:, None] * (b - a)[None]
    d2 = ((P[:, None, :] - pts[None]) ** 2).sum(-1)
    j = d2.argmin(1)
    e = b - a
    t = np.clip(((P - a) @ e) / (e @ e), 0, 1)  # the exact minimiser, checked against samples
    exact = ((P - a - t[:, None] * e) ** 2).sum(-1)
    assert np.all(exact <= d2[np.arange(len(P)), j] + 1e-12)
    return exact


def _ref_inside_and_d2(P: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = np.min([_seg_dist2(P, tri[k], tri[(k + 1) % 3]) for k in range(3)], axis=0)
    return _even_odd(P, tri), d2


def _random_tris(rng: np.random.Generator, T: int, size: float = 0.25) -> np.ndarray:
    c = rng.uniform(0.2, 0.8, (T, 1, 2))
    return c + size * rng.normal(size=(T, 3, 2)) * 0.5


# --- the hard limit ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["star", "convex"])
def test_hard_and_small_scale_equal_the_even_odd_raster(which: str) -> None:
    S = 24
    if which == "star":
        poly = _star(5, 0.4, 0.17)
    else:
        ang = 0.3 + 2 * np.pi * np.arange(7) / 7
        poly = np.stack([0.5 + 0.37 * np.cos(ang), 0.45 + 0.3 * np.sin(ang)], -1)
    tris = _fan(poly, np.array([0.5, 0.5]) if which == "star" else poly.mean(0))
    P = pixel_centers(S)
    exact = _even_odd(P, poly).reshape(S, S).astype(float)
    assert 0.15 < exact.mean() < 0.6
    for tconorm in ("max", "probabilistic", "einstein", "yager"):
        np.testing.assert_array_equal(
            soft_silhouette(tris, S, distribution="hard", tconorm=tconorm), exact
        )
    # scale -> 0 with a compact law: equal except at pixels within τ of the boundary
    soft = soft_silhouette(tris, S, distribution="uniform", scale=1e-9)
    np.testing.assert_array_equal(soft, exact)
    soft = soft_silhouette(tris, S, distribution="logistic", scale=1e-6)
    np.testing.assert_allclose(soft, exact, atol=1e-12)


def test_signed_distance_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    tris = _random_tris(rng, 4)
    tris[1] = tris[1][::-1]  # the other orientation
    P = rng.uniform(0, 1, (60, 2))
    D = triangle_signed_distance(P, tris)
    D2 = triangle_signed_distance(P, tris, squared=True)
    for t in range(4):
        inside, d2 = _ref_inside_and_d2(P, tris[t])
        np.testing.assert_allclose(np.abs(D[:, t]), np.sqrt(d2), atol=1e-12)
        np.testing.assert_array_equal(D[:, t] > 0, inside)
        np.testing.assert_allclose(D2[:, t], np.where(inside, d2, -d2), atol=1e-12)


# --- SoftRas and DIB-R as special cases --------------------------------------------------------
def test_softras_and_dibr_formulas() -> None:
    rng = np.random.default_rng(1)
    tris = _random_tris(rng, 5)
    S, sigma = 16, 3e-3
    P = pixel_centers(S)
    ins, d2 = zip(*(_ref_inside_and_d2(P, tris[t]) for t in range(5)), strict=True)
    delta = np.where(np.array(ins), 1.0, -1.0)  # (T, P)
    d2 = np.array(d2)
    # SoftRas (Liu et al. 2019): D_j = sigmoid(δ d²/σ), A = 1 - Π_j (1 - D_j)
    softras = 1 - np.prod(1 - expit(delta * d2 / sigma), axis=0)
    got = soft_silhouette(tris, S, distribution="logistic", squared=True, scale=sigma)
    np.testing.assert_allclose(got.reshape(-1), softras, atol=1e-12)
    # DIB-R (Chen et al. 2019): A_j = exp(-d²/δ) outside, 1 inside; same aggregation
    dibr = 1 - np.prod(1 - np.where(delta > 0, 1.0, np.exp(-d2 / sigma)), axis=0)
    got = soft_silhouette(tris, S, distribution="exponential_rev", squared=True, scale=sigma)
    np.testing.assert_allclose(got.reshape(-1), dibr, atol=1e-12)


# --- gradients -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("distribution", "squared", "tconorm", "chunk"),
    [
        ("uniform", False, "probabilistic", None),
        ("logistic", True, "probabilistic", 7),
        ("gaussian", False, "einstein", 13),
        (("gamma_rev", 3.0), False, "hamacher", None),
        ("cauchy", True, "yager", 50),
    ],
)
def test_vertex_gradients_finite_differences(distribution, squared, tconorm, chunk) -> None:
    rng = np.random.default_rng(2)
    tris = _random_tris(rng, 3)[None].repeat(2, 0) + rng.normal(size=(2, 3, 3, 2)) * 0.02
    S = 8
    scale = 0.01 if squared else 0.1
    kw = dict(distribution=distribution, squared=squared, tconorm=tconorm, scale=scale)
    g = rng.normal(size=(2, S, S))
    _, vjp = dc.value_and_vjp(soft_silhouette, tris, S, chunk_size=chunk, **kw)
    fd = _fd(lambda V: soft_silhouette(V, S, **kw), tris, g)
    np.testing.assert_allclose(vjp(g), fd, atol=2e-6 * max(1.0, np.abs(fd).max()))


def test_signed_distance_gradient() -> None:
    rng = np.random.default_rng(3)
    tris = _random_tris(rng, 3)
    P = rng.uniform(0, 1, (25, 2))
    g = rng.normal(size=(25, 3))
    for squared in (False, True):
        _, vjp = dc.value_and_vjp(
            dc.op.op_function(lambda V: triangle_signed_distance.bind(P, V, squared=squared)), tris
        )
        fd = _fd(lambda V: triangle_signed_distance(P, V, squared=squared), tris, g)
        np.testing.assert_allclose(vjp(g), fd, atol=1e-7)


def test_chunks_and_validation() -> None:
    rng = np.random.default_rng(4)
    tris = _random_tris(rng, 6)
    full = soft_silhouette(tris, 12, distribution="gaussian")
    np.testing.assert_allclose(soft_silhouette(tris, 12, distribution="gaussian", chunk_size=5), full, rtol=1e-14)
    # the default scale is one pixel (1/S)
    np.testing.assert_array_equal(soft_silhouette(tris, 12, distribution="gaussian", scale=1 / 12), full)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 3, 2\)"):
        soft_silhouette(tris[..., :1], 8)
    with pytest.raises(ValueError, match="tconorm must be one of"):
        soft_silhouette(tris, 8, tconorm="nope")
    with pytest.raises(ValueError, match="chunk_size"):
        soft_silhouette(tris, 8, chunk_size=0)


def test_raster_backends(backend) -> None:
    if backend.name == "jax":  # eager JAX compiles each of ~150 primitives: the conformance
        pytest.skip("case relax.soft_silhouette[logistic] covers JAX (float64)")
    rng = np.random.default_rng(5)
    tris = _random_tris(rng, 4)[None].repeat(2, 0)
    S = 6
    g = rng.normal(size=(2, S, S))
    kw = {"distribution": "logistic", "scale": 0.05}
    ref = soft_silhouette(tris, S, **kw)
    _, vjp = dc.value_and_vjp(soft_silhouette, tris, S, **kw)
    ref_g = vjp(g)
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        with backend.context():
            V = backend.asarray(tris.astype(dtype))
            y = backend.to_numpy(soft_silhouette(V, S, **kw))
            grad = backend.to_numpy(backend.vjp(soft_silhouette, (V, S), kw, backend.asarray(g.astype(dtype))))
        assert y.dtype == dtype
        np.testing.assert_allclose(y, ref, atol=tol)
        np.testing.assert_allclose(grad, ref_g, atol=tol * np.abs(ref_g).max())
