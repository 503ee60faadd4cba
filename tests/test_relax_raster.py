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


# --- second order (issue 21): Hessians against finite differences of the gradient --------------
# two well-shaped triangles (one of each orientation) and a 4 × 4 image: no pixel centre
# near an edge, a vertex or a closest-edge switch, so the Hessian exists there
_H_TRIS = np.array(
    [
        [[0.18, 0.22], [0.71, 0.31], [0.36, 0.74]],
        [[0.55, 0.42], [0.47, 0.88], [0.93, 0.69]],
    ]
)
_H_S = 4
_H_CONFIGS = {
    "logistic": dict(distribution="logistic", scale=0.2),
    # squared distances, a density with a bounded support (its root outside it), Einstein sum
    "wigner_squared_einstein": dict(distribution="wigner_semicircle", squared=True, scale=0.05, tconorm="einstein"),
}
_H_W = np.random.default_rng(21).normal(size=(_H_S, _H_S))


def _h_grad(V: np.ndarray, kw: dict) -> np.ndarray:
    """The explicit gradient of ``Σ w α²`` (value_and_vjp, NumPy)."""
    y, vjp = dc.value_and_vjp(soft_silhouette, V, _H_S, **kw)
    return vjp(2 * _H_W * y)


def _h_fd(kw: dict, h: float = 1e-5) -> np.ndarray:
    n = _H_TRIS.size
    cols = []
    for e in np.eye(n):
        E = e.reshape(_H_TRIS.shape)
        cols.append(((_h_grad(_H_TRIS + h * E, kw) - _h_grad(_H_TRIS - h * E, kw)) / (2 * h)).ravel())
    return np.stack(cols, axis=1)


def test_silhouette_hessian_setup_is_away_from_kinks() -> None:
    # the Hessian jumps where a pixel's closest feature of a triangle changes: outside (a
    # convex set), where the closest edge's parameter crosses 0 or 1 (edge interior vs
    # vertex); inside, where the closest edge changes (the medial axis); and D is not
    # smooth on the boundary. Every pixel and triangle here is away from all three.
    from dopt_core.relax.raster import _edges, _forms, _geometry, _rows

    P = pixel_centers(_H_S)
    rows, E = _rows(P[:, 0], P[:, 1], xp=np), _edges(_H_TRIS[None], xp=np)
    d2, inside, d2e = _geometry(rows, E, xp=np, grad=True)[:3]
    t = np.stack(_forms(rows, E, xp=np)[1])
    assert np.min(np.minimum(np.abs(t), np.abs(t - 1))) > 1e-2
    gap = np.diff(np.sort(np.stack(d2e), axis=0), axis=0)[0]
    assert inside.any() and np.min(gap[inside]) > 1e-3
    assert np.min(d2) > 1e-4  # 0.01 from the boundary, 1000 steps of the differences


@pytest.mark.parametrize("config", list(_H_CONFIGS))
def test_silhouette_torch_double_backward_matches_finite_differences(config: str) -> None:
    torch = pytest.importorskip("torch")
    import dopt_torch  # noqa: F401

    kw = _H_CONFIGS[config]
    w = torch.from_numpy(_H_W)
    H = torch.autograd.functional.hessian(
        lambda V: torch.sum(soft_silhouette(V, _H_S, **kw) ** 2 * w), torch.from_numpy(_H_TRIS)
    )
    expected = _h_fd(kw)
    n = _H_TRIS.size
    np.testing.assert_allclose(H.numpy().reshape(n, n), expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


# one configuration under JAX (each costs a compilation; the conformance case `hvp` checks
# logistic with distances): squared distances, and the semicircle's density, whose root
# has an infinite derivative at the support's ends (a NaN tangent there before)
@pytest.mark.parametrize("config", ["wigner_squared_einstein"])
def test_silhouette_jax_hessian_matches_finite_differences(config: str) -> None:
    jax = pytest.importorskip("jax")
    import dopt_jax  # noqa: F401

    if not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    kw = _H_CONFIGS[config]
    w = jax.numpy.asarray(_H_W)
    H = jax.jit(jax.hessian(lambda V: jax.numpy.sum(soft_silhouette(V, _H_S, **kw) ** 2 * w)))(
        jax.numpy.asarray(_H_TRIS)
    )
    n = _H_TRIS.size
    H = np.asarray(H).reshape(n, n)
    expected = _h_fd(kw)
    np.testing.assert_allclose(H, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    np.testing.assert_allclose(H, H.T, atol=1e-12 * np.abs(expected).max())


# --- exact ties: each pixel counts for one closest edge --------------------------------------
# every coordinate is a multiple of 1/16, so the three edge distances are exact in any
# evaluation order: the pixels below the apex b are equidistant (bitwise) from edges 0 and 1
# (both clipped to b), those on the vertical x = 7/16 inside from edges 0 and 1 (the
# bisector of the apex)
_TIE_TRI = np.array([[[0.1875, 0.75], [0.4375, 0.5], [0.6875, 0.75]]])
_TIE_POINTS = np.array([[0.4375, 0.25], [0.4375, 0.625], [0.3, 0.9]])


def _one_edge_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    e = b - a
    t = np.clip((p - a) @ e / (e @ e), 0.0, 1.0)
    return float(np.sqrt(np.sum((p - a - t * e) ** 2)))


def test_tied_closest_edges_count_once() -> None:
    from dopt_core.relax.raster import _edges, _geometry, _rows

    P = _TIE_POINTS
    d2e = _geometry(_rows(P[:, 0], P[:, 1], xp=np), _edges(_TIE_TRI[None], xp=np), xp=np, grad=True)[2]
    assert d2e[0][0, 0, 0] == d2e[1][0, 0, 0] and d2e[0][0, 1, 0] == d2e[1][0, 1, 0]  # exact ties
    fn = dc.op.op_function(lambda V: triangle_signed_distance.bind(P, V))
    g = np.eye(3)[:, :, None]  # one point at a time
    grads = [dc.value_and_vjp(fn, _TIE_TRI)[1](gi) for gi in g]
    # the expected gradient: that of the distance to edge 0 (a, b) alone, signed, by central
    # differences; at the outside tie it is also edge 1's (both are |p - b| there)
    for i, sign in ((0, -1.0), (1, 1.0)):
        expected = np.zeros((1, 3, 2))
        for v in (0, 1):
            for j in (0, 1):
                for s in (1, -1):
                    V = _TIE_TRI[0].copy()
                    V[v, j] += s * 1e-6
                    expected[0, v, j] += s * sign * _one_edge_distance(P[i], V[0], V[1]) / 2e-6
        np.testing.assert_allclose(grads[i], expected, atol=1e-8)
    np.testing.assert_allclose(grads[0][0, 1], [0.0, -1.0], atol=1e-8)  # -(b - p)/|b - p|: once, not twice


def test_tied_closest_edges_jit_equals_numpy() -> None:
    jax = pytest.importorskip("jax")
    import dopt_jax  # noqa: F401

    if not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    jnp = jax.numpy
    S, kw = 8, dict(distribution="logistic", scale=0.1)
    w = np.random.default_rng(9).normal(size=(S, S))
    _, vjp = dc.value_and_vjp(soft_silhouette, _TIE_TRI, S, **kw)
    P = jnp.asarray(_TIE_POINTS)
    fn = dc.op.op_function(lambda V: triangle_signed_distance.bind(_TIE_POINTS, V))
    ref_d = dc.value_and_vjp(fn, _TIE_TRI)[1](np.ones((3, 1)))

    def losses(V):
        return jnp.sum(soft_silhouette(V, S, **kw) * w), jnp.sum(triangle_signed_distance(P, V))

    grad_s = jax.jit(jax.grad(lambda V: losses(V)[0]))(jnp.asarray(_TIE_TRI))
    grad_d, fwd_d = jax.jit(
        lambda V: (jax.grad(lambda x: losses(x)[1])(V), jax.jacfwd(lambda x: losses(x)[1])(V))
    )(jnp.asarray(_TIE_TRI))
    np.testing.assert_allclose(np.asarray(grad_s), vjp(w), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(grad_d), ref_d, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(fwd_d), ref_d, rtol=1e-12, atol=1e-12)


# --- degenerate triangles and pixels on edges (review) -----------------------------------------
_DEGENERATE = np.array(
    [
        [[0.1, 0.2], [0.9, 0.2], [0.5, 0.2]],  # collinear, the third vertex between
        [[0.2, 0.3], [0.8, 0.7], [0.8, 0.7]],  # a repeated vertex
        [[0.6, 0.4], [0.6, 0.4], [0.6, 0.4]],  # a point
    ]
)


def test_degenerate_triangles_are_their_segments() -> None:
    # zero area covers nothing (never inside), but the distance is still the one to the
    # (closed) boundary, the segment or point: continuous with a sliver of tiny area
    rng = np.random.default_rng(11)
    P = np.concatenate([rng.uniform(0, 1, (40, 2)), [[0.5, 0.2], [0.3, 0.4], [0.6, 0.4]]])
    D = triangle_signed_distance(P, _DEGENERATE)
    for t in range(3):
        ends = [(_DEGENERATE[t, k], _DEGENERATE[t, (k + 1) % 3]) for k in range(3)]
        d2s = [_seg_dist2(P, a, b) if np.any(a != b) else ((P - a) ** 2).sum(-1) for a, b in ends]
        d2 = np.min(d2s, axis=0)
        np.testing.assert_allclose(D[:, t], -np.sqrt(d2), atol=1e-12)
    sliver = _DEGENERATE[:1].copy()
    sliver[0, 2, 1] += 1e-12
    np.testing.assert_allclose(triangle_signed_distance(P, sliver)[:, 0], D[:, 0], atol=1e-11)
    # pixel centres on the segment (y = 0.125 of an 8 × 8 image) are not covered
    on_row = np.array([[[0.0, 0.125], [1.0, 0.125], [0.5, 0.125]]])
    assert soft_silhouette(on_row, 8, distribution="hard").max() == 0.0
    # the configuration is a kink (edges overlap or coincide): the vertex gradient is one
    # edge's, but a translation of the whole triangle is smooth, d(p, V + s) = d(p - s, V),
    # and the gradient summed over the vertices is its derivative
    Q = rng.uniform(0, 1, (30, 2))
    g = rng.normal(size=(30, 3))
    fn = dc.op.op_function(lambda V: triangle_signed_distance.bind(Q, V))
    grad = dc.value_and_vjp(fn, _DEGENERATE)[1](g).sum(axis=1)
    for j in range(2):
        s = np.zeros(2)
        s[j] = 1e-6
        up, down = (triangle_signed_distance(Q, _DEGENERATE + sg * s) for sg in (1, -1))
        dD = up - down
        fd = np.sum(g * dD, axis=0) / 2e-6
        np.testing.assert_allclose(grad[:, j], fd, atol=1e-7)


def test_gradient_at_pixels_on_an_edge() -> None:
    # the signed distance is smooth across an edge (away from the vertices): the pixel
    # centres on it (y = 0.375 of a 4 × 4 image) carry the density's peak f(0)/τ times
    # the edge's normal, not 0; VJP and JVP against central differences
    tri = np.array(
        [[[0.05, 0.375], [0.95, 0.375], [0.45, 0.95]], [[0.3, 0.05], [0.55, 0.3], [0.2, 0.25]]]
    )
    rng = np.random.default_rng(12)
    w = rng.normal(size=(4, 4))
    U = rng.normal(size=tri.shape)
    for kw in (dict(distribution="uniform", scale=0.3), dict(distribution="logistic", scale=0.1)):
        _, vjp = dc.value_and_vjp(soft_silhouette, tri, 4, **kw)
        fd = _fd(lambda V: soft_silhouette(V, 4, **kw), tri, w)
        np.testing.assert_allclose(vjp(w), fd, atol=1e-8)
        h = 1e-6
        up, down = (soft_silhouette(tri + sg * h * U, 4, **kw) for sg in (1, -1))
        jfd = (up - down) / (2 * h)
        jvp = dc.op.value_and_jvp(soft_silhouette, tri, 4, **kw)[1]
        np.testing.assert_allclose(jvp(U), jfd, atol=1e-8)


def test_float32_gradient_near_edges() -> None:
    # pixels within ~1e-4 of an edge: the gradient of d = |r| is formed from the edge's
    # linear function, not r/|r| (0/0-like in float32); float32 against float64
    rng = np.random.default_rng(3)
    tris = rng.uniform(0.2, 0.8, (20, 1, 2)) + 0.15 * rng.normal(size=(20, 3, 2))
    w = rng.normal(size=(64, 64))
    kw = dict(distribution="logistic", scale=1 / 64)
    g64 = dc.value_and_vjp(soft_silhouette, tris, 64, **kw)[1](w)
    t32, w32 = tris.astype(np.float32), w.astype(np.float32)
    g32 = dc.value_and_vjp(soft_silhouette, t32, 64, **kw)[1](w32)
    assert np.abs(g32 - g64).max() < 1e-4 * np.abs(g64).max()


def test_scale_outside_the_dtype_range_raises() -> None:
    # 1/scale overflows float32 below its smallest normal: the gradient was NaN silently
    tris = _random_tris(np.random.default_rng(6), 2).astype(np.float32)
    with pytest.raises(ValueError, match="scale must lie in"):
        soft_silhouette(tris, 4, distribution="logistic", scale=1e-40)
    y, vjp = dc.value_and_vjp(soft_silhouette, tris, 4, distribution="logistic", scale=1e-30)
    assert np.isfinite(y).all() and np.isfinite(vjp(np.ones((4, 4), np.float32))).all()


def test_signed_distance_float32_far_from_the_origin() -> None:
    # points and triangles at ~1000 (pixel or world units): h = e × (p - a) evaluated as
    # x h_x + y h_y + h_0 cancels terms of size |a|·|e|; float32 against float64
    rng = np.random.default_rng(7)
    tris = 1000.0 + _random_tris(rng, 3)
    P = 1000.0 + rng.uniform(0, 1, (50, 2))
    ref = triangle_signed_distance(P, tris)
    got = triangle_signed_distance(P.astype(np.float32), tris.astype(np.float32))
    np.testing.assert_allclose(got, ref, atol=2e-4)
    g = rng.normal(size=ref.shape)
    fn64 = dc.op.op_function(lambda V: triangle_signed_distance.bind(P, V))
    fn32 = dc.op.op_function(lambda V: triangle_signed_distance.bind(P.astype(np.float32), V))
    g64 = dc.value_and_vjp(fn64, tris)[1](g)
    g32 = dc.value_and_vjp(fn32, tris.astype(np.float32))[1](g.astype(np.float32))
    np.testing.assert_allclose(g32, g64, atol=1e-3 * np.abs(g64).max())
    assert triangle_signed_distance(np.zeros((0, 2)), tris).shape == (0, 3)  # no points
