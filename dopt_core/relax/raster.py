r"""A 2-D differentiable silhouette rasteriser: the silhouette subset of GenDR.

GenDR (Petersen et al., "GenDR: A generalized differentiable renderer", CVPR 2022;
Petersen's thesis §4) renders the coverage of a pixel :math:`p` by a triangle
:math:`t` as the probability that a perturbed inside test passes,

.. math::

    A_t(p) = F\bigl(\delta_t(p)\, d_t(p)^{(2)} / \tau\bigr), \qquad
    \alpha(p) = \bot_t\, A_t(p),

with :math:`d_t(p)` the Euclidean distance from the pixel centre to the triangle,
:math:`\delta_t(p) = +1` inside and :math:`-1` outside, the exponent 2 when
``squared``, :math:`F` a CDF of :mod:`dopt_core.relax.cdfs`, :math:`\tau` the
``scale`` and :math:`\bot` a T-conorm of :mod:`dopt_core.relax.fuzzy`. SoftRas
(Liu et al., ICCV 2019) is ``logistic`` + ``squared`` + ``probabilistic``; DIB-R's
silhouette (Chen et al., NeurIPS 2019) is ``exponential_rev`` + ``squared`` (+
``probabilistic``).

Conventions: triangles live in the unit square :math:`[0, 1]^2` as ``(x, y)`` vertex
pairs, and pixel ``(i, j)`` of an ``S × S`` image (row ``i``, column ``j``) has its
centre at :math:`((j + \tfrac12)/S, (i + \tfrac12)/S)` — ``y`` grows with the row
index, as in image arrays. Both orientations of a triangle count (double-sided);
degenerate triangles (zero area: collinear or repeated vertices) cover nothing, their
distance being the one to their segments (or point), the limit of a thin sliver. The
explicit VJP recomputes the distances from
the vertices and uses the T-conorm's closed-form leave-one-out factor, so nothing of
shape ``(batch, pixels, triangles)`` is stored between the passes; ``chunk_size``
bounds the transient arrays to ``(batch, chunk_size, triangles)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import (
    check_choice,
    check_flag,
    check_in_dtype_range,
    check_int,
    check_positive,
    check_scores,
)
from .._lib._compat import device
from ..op import Bound, Op, op_function
from . import cdfs
from .fuzzy import NAMES as _FAMILIES
from .fuzzy import check_family, tnorm_last_axis

__all__ = ["pixel_centers", "soft_silhouette", "triangle_signed_distance"]


# ---------------------------------------------------------------------------------
# geometry: signed distance of points to triangles, and its gradient
# ---------------------------------------------------------------------------------
@dataclass
class _Edges:
    """Per-triangle coefficients, ``(B, T)`` arrays (``(B, 1, T)`` once expanded).

    For edge ``e = b - a`` of a triangle with orientation ``o = sign(area)`` (``o = 1``
    for a degenerate one), the point ``p`` has the oriented edge function
    ``h_e(p) = o (e × (p - a))`` (``>= 0`` on the inner side) and the projection
    parameter ``t_e(p) = (p - a)·e / |e|²``, both linear in ``p``: their coefficients
    form ``W (B, 3, 6T)``, so one matrix product with the rows ``(x, y, 1)`` evaluates
    all six for every pixel. With ``L = |e|²`` the squared distance to the segment is
    exactly

        d²_e = h_e² / L + L (t_e - clip(t_e, 0, 1))²

    (perpendicular part plus the overshoot along the edge; no cancellation). A
    zero-length edge (a repeated vertex) is given the direction ``(1, 0)`` and the
    clip range ``[0, 0]`` (``ok = 0``): its distance is then ``|p - a|²``. A triangle
    of zero area (``solid = False``) contains no point, but its distance is still the
    one to its segments.
    """

    W: Any
    L: list[Any]
    inv: list[Any]
    ok: list[Any]
    a: list[tuple[Any, Any]]
    e: list[tuple[Any, Any]]
    o: Any
    solid: Any


def _edges(V: Any, *, xp: Any) -> _Edges:
    X = [V[..., e, 0] for e in range(3)]
    Y = [V[..., e, 1] for e in range(3)]
    area2 = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0])
    solid = area2 != 0
    o = xp.where(solid, xp.sign(area2), xp.ones_like(area2))
    hx, hy, h0, tx, ty, t0, Ls, invs, oks, As, Es = [], [], [], [], [], [], [], [], [], [], []
    one, zero = xp.ones_like(area2), xp.zeros_like(area2)
    for k in range(3):
        ax, ay, bx, by = X[k], Y[k], X[(k + 1) % 3], Y[(k + 1) % 3]
        ex, ey = bx - ax, by - ay
        L = ex * ex + ey * ey
        ok = L > 0
        fx, fy = xp.where(ok, ex, one), xp.where(ok, ey, zero)  # (1, 0) for a zero-length edge
        Lm = xp.where(ok, L, one)
        inv = 1 / Lm
        hx.append(-o * fy)
        hy.append(o * fx)
        h0.append(o * xp.where(ok, ax * by - ay * bx, -ay))
        tx.append(fx * inv)
        ty.append(fy * inv)
        t0.append(-(ax * fx + ay * fy) * inv)
        Ls.append(Lm)
        invs.append(inv)
        oks.append(xp.astype(ok, V.dtype))
        As.append((ax, ay))
        Es.append((ex, ey))
    rows = [xp.concat(r, axis=-1) for r in ((*hx, *tx), (*hy, *ty), (*h0, *t0))]
    W = xp.stack(rows, axis=-2)  # (B, 3, 6T)
    return _Edges(W, Ls, invs, oks, As, Es, o, solid)


def _forms(P: Any, E: _Edges, *, xp: Any) -> tuple[list[Any], list[Any]]:
    """``h_e`` and ``t_e`` at the points ``P (n, 3)`` (rows ``(x, y, 1)``): ``(B, n, T)``."""
    H = xp.matmul(P, E.W)  # (B, n, 6T)
    T = H.shape[-1] // 6
    parts = [H[..., k * T : (k + 1) * T] for k in range(6)]
    return parts[:3], parts[3:]


def _geometry(P: Any, E: _Edges, *, xp: Any, grad: bool) -> tuple[Any, ...]:
    """Squared distance ``d2`` and ``inside`` of the points to every triangle, ``(B, n, T)``;
    with ``grad`` also the per-edge squared distances, clipped parameters and edge
    functions ``h``."""
    h, t = _forms(P, E, xp=xp)
    d2e, tc = [], []
    for k in range(3):
        L = E.L[k][:, None, :]
        inv = E.inv[k][:, None, :]
        c = xp.clip(t[k], 0.0, 1.0) * E.ok[k][:, None, :]
        u = t[k] - c
        d2e.append(inv * (h[k] * h[k]) + L * (u * u))
        tc.append(c)
    d2 = xp.minimum(xp.minimum(d2e[0], d2e[1]), d2e[2])
    inside = (xp.minimum(xp.minimum(h[0], h[1]), h[2]) >= 0) & E.solid[:, None, :]
    if not grad:
        return d2, inside
    return d2, inside, d2e, tc, h, t


def _vertex_grad(c: Any, P: Any, E: _Edges, d2e: list[Any], tc: list[Any], *, xp: Any) -> Any:
    """``Σ_p c ∂d2/∂V`` (``c`` the cotangent of ``d2``, ``(B, n, T)``) as ``(B, T, 3, 2)``.

    Envelope theorem: with the closest edge ``(a, b)``, its clipped parameter ``t`` and
    ``r = p - a - t e``, ``∂d2/∂a = -2(1 - t) r`` and ``∂d2/∂b = -2 t r``. Summed over the
    points this needs ``Σ w``, ``Σ w p`` for ``w ∈ {c, c t, c t²}`` only: matrix products
    with the rows ``(x, y, 1)``.

    The closest edge is the one arg-min of the three distances (the first minimum: ties
    to the lowest index), as in :func:`_d2_tangent`, and ``c`` is scattered onto it by a
    one-hot of that single index (the transpose of the JVP's gather): each point counts
    for exactly one edge. Three comparison masks would let a compiler that evaluates the
    distances in different fused kernels (with different rounding) count a tied edge
    twice or not at all.
    """
    closest = _closest_edge(d2e, xp=xp)
    edge = xp.reshape(xp.arange(3, dtype=closest.dtype, device=device(c)), (3, 1, 1, 1))
    onehot = closest[None, ...] == edge  # (3, B, n, T): one True per point and triangle
    zero = xp.asarray(0.0, dtype=c.dtype, device=device(c))
    grads: list[list[Any]] = [[zero, zero], [zero, zero], [zero, zero]]
    for k in range(3):
        al = xp.where(onehot[k, ...], c, zero)
        be = al * tc[k]
        ga = be * tc[k]
        # (B, T, 3): Σ w x, Σ w y, Σ w for each w
        Ma, Mb, Mg = (xp.matmul(xp.matrix_transpose(w), P) for w in (al, be, ga))
        ax, ay = E.a[k]
        ex, ey = E.e[k]
        for j, (av, ev) in enumerate(((ax, ex), (ay, ey))):
            # G_a = -2 [Σ(α-β)p - a Σ(α-β) - e Σ(β-γ)],  G_b = -2 [Σβp - a Σβ - e Σγ]
            ga_ = -2 * ((Ma[..., j] - Mb[..., j]) - av * (Ma[..., 2] - Mb[..., 2])
                        - ev * (Mb[..., 2] - Mg[..., 2]))
            gb_ = -2 * (Mb[..., j] - av * Mb[..., 2] - ev * Mg[..., 2])
            grads[k][j] = grads[k][j] + ga_
            grads[(k + 1) % 3][j] = grads[(k + 1) % 3][j] + gb_
    return xp.stack([xp.stack(g, axis=-1) for g in grads], axis=-2)


def _closest_edge(d2e: list[Any], *, xp: Any) -> Any:
    """The index ``(B, n, T)`` of each point's closest edge: the first minimum of the
    three squared distances (ties to the lowest index), shared by the VJP and the JVP so
    that both count a tied edge exactly once."""
    return xp.argmin(xp.stack(d2e, axis=0), axis=0)


def _d2_tangent(P: Any, E: _Edges, U: Any, d2e: list[Any], tc: list[Any], *, xp: Any) -> Any:
    """The tangent of ``d2`` ``(B, n, T)`` along vertex tangents ``U`` ``(B, T, 3, 2)``: the
    transpose of :func:`_vertex_grad` (the closest edge, ties to the lowest index),
    ``δd2 = -2 r · ((1 - t) δa + t δb)`` with ``r = p - a - t e``.

    The closest edge's term is picked by one gather at the arg-min: a compiler that
    recomputes the three distances in several fused kernels (with different rounding)
    could otherwise see two edges, or none, as the closest one where they tie (at a
    shared vertex, where both terms are equal).
    """
    px, py = P[None, :, 0:1], P[None, :, 1:2]  # (1, n, 1)
    terms = []
    for k in range(3):
        t = tc[k]
        ax, ay = (c[:, None, :] for c in E.a[k])
        ex, ey = (c[:, None, :] for c in E.e[k])
        ua, ub = U[..., k, :], U[..., (k + 1) % 3, :]
        wx = (1 - t) * ua[:, None, :, 0] + t * ub[:, None, :, 0]
        wy = (1 - t) * ua[:, None, :, 1] + t * ub[:, None, :, 1]
        terms.append(-2 * ((px - ax - t * ex) * wx + (py - ay - t * ey) * wy))
    closest = _closest_edge(d2e, xp=xp)
    picked = xp.take_along_axis(xp.stack(terms, axis=0), closest[None, ...], axis=0)
    return picked[0, ...]


def _linear_part(d2e: list[Any], tc: list[Any], h: list[Any], t: list[Any], E: _Edges,
                 *, xp: Any) -> tuple[Any, Any, Any]:
    """The closest edge, where its projection is not clipped (``lin``: the closest point
    is on the edge itself, where ``|D| = |h|/|e|`` is linear in ``p`` and smooth across
    the edge) and ``sign⁺(h)`` there (``+1`` for ``h >= 0``), all ``(B, n, T)``."""
    closest = _closest_edge(d2e, xp=xp)
    lin_k = [(t[k] == tc[k]) & (E.ok[k][:, None, :] > 0) for k in range(3)]
    lin = xp.take_along_axis(xp.stack(lin_k, axis=0), closest[None, ...], axis=0)[0, ...]
    hk = xp.take_along_axis(xp.stack(h, axis=0), closest[None, ...], axis=0)[0, ...]
    return closest, lin, xp.where(hk >= 0, xp.ones_like(hk), -xp.ones_like(hk))


def _linear_grad(cl: Any, closest: Any, P: Any, E: _Edges, *, xp: Any) -> Any:
    """``Σ_p cl ∂(h_e/|e|)/∂V`` over each point's closest edge ``e = (a, b)``, as
    ``(B, T, 3, 2)``: with ``h = o (e × (p - a))``, ``∂h/∂a = o (b_y - p_y, p_x - b_x)``,
    ``∂h/∂b = o (p_y - a_y, a_x - p_x)`` and ``∂|e|/∂b = -∂|e|/∂a = e/|e|``. Linear in
    ``p``: the sums ``Σ cl``, ``Σ cl p`` suffice. No ``1/d`` factor, so the pixels on or
    near an edge, where the density peaks, get an accurate gradient (the envelope form
    ``-(1 - t) r/|r|`` is 0/0 there)."""
    edge = xp.reshape(xp.arange(3, dtype=closest.dtype, device=device(cl)), (3, 1, 1, 1))
    onehot = closest[None, ...] == edge
    zero = xp.asarray(0.0, dtype=cl.dtype, device=device(cl))
    grads: list[list[Any]] = [[zero, zero], [zero, zero], [zero, zero]]
    o = E.o
    for k in range(3):
        M = xp.matmul(xp.matrix_transpose(xp.where(onehot[k, ...], cl, zero)), P)  # (B, T, 3)
        Mx, My, M1 = M[..., 0], M[..., 1], M[..., 2]
        ax, ay = E.a[k]
        bx, by = E.a[(k + 1) % 3]
        ex, ey = E.e[k]
        L = E.L[k]
        rs = 1 / xp.sqrt(L)
        Sh = o * (-ey * Mx + ex * My + (ax * by - ay * bx) * M1)  # Σ cl h
        q = Sh * rs / L
        ga = (o * (by * M1 - My) * rs + q * ex, o * (Mx - bx * M1) * rs + q * ey)
        gb = (o * (My - ay * M1) * rs - q * ex, o * (ax * M1 - Mx) * rs - q * ey)
        for j in range(2):
            grads[k][j] = grads[k][j] + ga[j]
            grads[(k + 1) % 3][j] = grads[(k + 1) % 3][j] + gb[j]
    return xp.stack([xp.stack(g, axis=-1) for g in grads], axis=-2)


def _signed_vjp(cD: Any, P: Any, E: _Edges, geo: tuple[Any, ...], squared: bool, *, xp: Any) -> Any:
    """``Σ_p cD ∂D/∂V`` ``(B, T, 3, 2)`` for the signed (squared) distance ``D``."""
    d2, inside, d2e, tc, h, t = geo
    c = xp.where(inside, cD, -cD)
    if squared:
        return _vertex_grad(c, P, E, d2e, tc, xp=xp)
    closest, lin, sgn = _linear_part(d2e, tc, h, t, E, xp=xp)
    zero = xp.zeros_like(c)
    c2 = xp.where(lin, zero, c * _half_inv_sqrt(d2, xp=xp))
    return _vertex_grad(c2, P, E, d2e, tc, xp=xp) + _linear_grad(
        xp.where(lin, c * sgn, zero), closest, P, E, xp=xp
    )


def _signed_tangent(
    P: Any, E: _Edges, U: Any, geo: tuple[Any, ...], squared: bool, *, xp: Any
) -> Any:
    """The tangent ``(B, n, T)`` of the signed (squared) distance along ``U``: the
    transpose of :func:`_signed_vjp`."""
    d2, inside, d2e, tc, h, t = geo
    dd2 = _d2_tangent(P, E, U, d2e, tc, xp=xp)
    if squared:
        return xp.where(inside, dd2, -dd2)
    closest, lin, sgn = _linear_part(d2e, tc, h, t, E, xp=xp)
    px, py = P[None, :, 0:1], P[None, :, 1:2]  # (1, n, 1)
    o = E.o[:, None, :]
    terms = []
    for k in range(3):
        ax, ay = (c[:, None, :] for c in E.a[k])
        bx, by = (c[:, None, :] for c in E.a[(k + 1) % 3])
        ex, ey = (c[:, None, :] for c in E.e[k])
        L = E.L[k][:, None, :]
        ua, ub = U[..., k, :], U[..., (k + 1) % 3, :]
        uax, uay = ua[:, None, :, 0], ua[:, None, :, 1]
        ubx, uby = ub[:, None, :, 0], ub[:, None, :, 1]
        dh = o * ((by - py) * uax + (px - bx) * uay + (py - ay) * ubx + (ax - px) * uby)
        de = ex * (uax - ubx) + ey * (uay - uby)
        rs = 1 / xp.sqrt(L)
        terms.append(dh * rs + h[k] * de * rs / L)
    picked = xp.take_along_axis(xp.stack(terms, axis=0), closest[None, ...], axis=0)[0, ...]
    env = dd2 * _half_inv_sqrt(d2, xp=xp)
    dD = xp.where(lin, picked * sgn, env)
    return xp.where(inside, dD, -dD)


def _rows(px: Any, py: Any, *, xp: Any) -> Any:
    """The ``(n, 3)`` rows ``(x, y, 1)`` of the points."""
    return xp.stack([px, py, xp.ones_like(px)], axis=-1)


def _flat(V: Any, *, xp: Any) -> tuple[Any, tuple[int, ...]]:
    batch = tuple(V.shape[:-3])
    n = 1
    for s in batch:
        n *= s
    return xp.reshape(V, (n, *V.shape[-3:])), batch


def _centred(tris: Any, points: Any, *, xp: Any) -> tuple[Any, Any]:
    """Both shifted by the centre of the points' bounding box: distances and vertex
    gradients are unchanged, but ``h_0 = a × b`` no longer carries ``|a| |e|`` for points
    and triangles far from the origin (float32 at coordinates ~1000 lost 0.4 otherwise)."""
    if points.shape[0] == 0:
        return tris, points
    o = (xp.min(points, axis=0) + xp.max(points, axis=0)) / 2
    return tris - o, points - o


@dataclass(frozen=True)
class TriangleSignedDistanceOp(Op):
    squared: bool
    name: ClassVar[str] = "triangle_signed_distance"
    second_order: ClassVar[bool] = True
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, tris: Any, points: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        V, batch = _flat(tris, xp=xp)
        V, pts = _centred(V, points, xp=xp)
        P = _rows(pts[:, 0], pts[:, 1], xp=xp)
        d2, inside = _geometry(P, _edges(V, xp=xp), xp=xp, grad=False)
        d = d2 if self.squared else xp.sqrt(d2)
        D = xp.where(inside, d, -d)
        return xp.reshape(D, (*batch, *D.shape[1:])), (tris, points)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        tris, points = residuals
        V, batch = _flat(tris, xp=xp)
        V, pts = _centred(V, points, xp=xp)
        P = _rows(pts[:, 0], pts[:, 1], xp=xp)
        E = _edges(V, xp=xp)
        geo = _geometry(P, E, xp=xp, grad=True)
        g = xp.reshape(g, geo[0].shape)
        return (xp.reshape(_signed_vjp(g, P, E, geo, self.squared, xp=xp), tris.shape), None)

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        (U, _) = tangents
        if U is None:
            return None
        tris, points = residuals
        V, batch = _flat(tris, xp=xp)
        Uf, _ = _flat(U, xp=xp)
        V, pts = _centred(V, points, xp=xp)
        P = _rows(pts[:, 0], pts[:, 1], xp=xp)
        E = _edges(V, xp=xp)
        dD = _signed_tangent(P, E, Uf, _geometry(P, E, xp=xp, grad=True), self.squared, xp=xp)
        return xp.reshape(dD, (*batch, *dD.shape[1:]))


def _half_inv_sqrt(d2: Any, *, xp: Any) -> Any:
    """``d sqrt(d2)/d d2 = 1/(2 sqrt(d2))``, 0 where ``d2 = 0`` (on an edge)."""
    pos = d2 > 0
    return xp.where(pos, 0.5 / xp.sqrt(xp.where(pos, d2, xp.ones_like(d2))), xp.zeros_like(d2))


# ---------------------------------------------------------------------------------
# the silhouette
# ---------------------------------------------------------------------------------
def _pixel_grid(S: int, like: Any, *, xp: Any) -> tuple[Any, Any]:
    c = (xp.arange(S, dtype=like.dtype, device=device(like)) + 0.5) / S
    px = xp.reshape(xp.broadcast_to(c[None, :], (S, S)), (-1,))  # column j -> x
    py = xp.reshape(xp.broadcast_to(c[:, None], (S, S)), (-1,))  # row i -> y
    return px, py


@dataclass(frozen=True)
class SoftSilhouetteOp(Op):
    image_size: int
    dist: Any  # a cdfs.Distribution, or "hard"
    scale: float
    squared: bool
    family: str
    p: float | None
    chunk_size: int | None
    name: ClassVar[str] = "soft_silhouette"
    #: the residual is the input itself, and the VJP and JVP are array code of it (the
    #: closest edge, the inside test and the T-conorm's zero count are locally constant,
    #: their tangents zero a.e.): differentiating either is the Hessian a.e.
    second_order: ClassVar[bool] = True

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        c = n if self.chunk_size is None else self.chunk_size
        return [(s, min(s + c, n)) for s in range(0, n, c)]

    def _chunk(self, P: Any, E: _Edges, *, xp: Any, grad: bool) -> tuple[Any, ...]:
        geo = _geometry(P, E, xp=xp, grad=grad)
        d2, inside = geo[0], geo[1]
        if self.dist == "hard":  # the closed inside test itself
            return (xp.astype(inside, d2.dtype), None, *geo)
        d = d2 if self.squared else xp.sqrt(d2)
        D = xp.where(inside, d, -d)
        v = cdfs.clip_standardised(D, xp=xp, scale=1.0 / self.scale)
        return (self.dist.entry.F(v, self.dist.param_dict, xp), v, *geo)

    def forward(self, tris: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        V, batch = _flat(tris, xp=xp)
        px, py = _pixel_grid(self.image_size, V, xp=xp)
        E = _edges(V, xp=xp)
        outs = []
        for lo, hi in self._chunks(px.shape[0]):
            A = self._chunk(_rows(px[lo:hi], py[lo:hi], xp=xp), E, xp=xp, grad=False)[0]
            outs.append(1 - tnorm_last_axis(self.family, self.p, 1 - A, xp))
        alpha = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
        S = self.image_size
        return xp.reshape(alpha, (*batch, S, S)), (tris,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (tris,) = residuals
        if self.dist == "hard":
            return (xp.zeros_like(tris),)
        V, _ = _flat(tris, xp=xp)
        px, py = _pixel_grid(self.image_size, V, xp=xp)
        E = _edges(V, xp=xp)
        g = xp.reshape(g, (V.shape[0], -1))
        total = xp.zeros_like(V)
        inv_tau = 1.0 / self.scale
        for lo, hi in self._chunks(px.shape[0]):
            P = _rows(px[lo:hi], py[lo:hi], xp=xp)
            A, v, *geo = self._chunk(P, E, xp=xp, grad=True)
            dalpha = tnorm_last_axis(self.family, self.p, 1 - A, xp, grad=True)
            # dα/dD = dα/dA · f(D/τ)/τ; D = ±d2 or ±sqrt(d2)
            c = (g[:, lo:hi, None] * inv_tau) * dalpha * self.dist.entry.f(v, self.dist.param_dict, xp)
            total = total + _signed_vjp(c, P, E, tuple(geo), self.squared, xp=xp)
        return (xp.reshape(total, tris.shape),)

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        (U,) = tangents
        if U is None or self.dist == "hard":
            return None
        (tris,) = residuals
        V, batch = _flat(tris, xp=xp)
        Uf, _ = _flat(U, xp=xp)
        px, py = _pixel_grid(self.image_size, V, xp=xp)
        E = _edges(V, xp=xp)
        inv_tau = 1.0 / self.scale
        outs = []
        for lo, hi in self._chunks(px.shape[0]):
            P = _rows(px[lo:hi], py[lo:hi], xp=xp)
            A, v, *geo = self._chunk(P, E, xp=xp, grad=True)
            dalpha = tnorm_last_axis(self.family, self.p, 1 - A, xp, grad=True)
            c = inv_tau * dalpha * self.dist.entry.f(v, self.dist.param_dict, xp)  # dα/dD
            dD = _signed_tangent(P, E, Uf, tuple(geo), self.squared, xp=xp)
            outs.append(xp.sum(c * dD, axis=-1))
        dalpha_img = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
        S = self.image_size
        return xp.reshape(dalpha_img, (*batch, S, S))


def _check_tris(tris: Any, check_finite: bool) -> tuple[Any, Any, Any]:
    tris, xp, out_dtype = check_scores(tris, name="tris", min_ndim=3, check_finite=check_finite)
    if tuple(tris.shape[-2:]) != (3, 2):
        raise ValueError(f"tris must have shape (..., T, 3, 2), got {tuple(tris.shape)}")
    if tris.shape[-3] == 0:
        raise ValueError("tris must hold at least one triangle")
    return tris, xp, out_dtype


@op_function
def triangle_signed_distance(
    points: Any, tris: Any, /, *, squared: bool = False, check_finite: bool = True
) -> Bound:
    r"""Signed Euclidean distance from points to triangles: ``+d`` inside, ``-d`` outside.

    :math:`D_{pt} = \delta_t(p)\, d(p, t)`, the distance to the closest point of the
    (closed) triangle's boundary, positive when the point is inside (either orientation;
    on the boundary the distance is 0); ``squared=True`` gives :math:`\delta_t(p)\, d(p, t)^2`. GenDR's
    ``euclidean_p2f_distance`` with its sign (Petersen et al., CVPR 2022). Gradients
    flow to the vertices (the envelope theorem at the closest point; where that point
    is on an edge's interior, the derivative of the edge's linear function
    :math:`h_e(p)/|e|`, smooth across the edge, so points on an edge get its normal);
    the points are constants. A triangle of zero area has no inside: ``-d`` everywhere,
    ``d`` the distance to its segments.

    Parameters
    ----------
    points : array, shape ``(P, 2)``
        Query points ``(x, y)``.
    tris : array, shape ``(..., T, 3, 2)``
        Triangles; leading axes are batch axes.
    squared : bool
        Return the signed squared distance.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., P, T)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.raster import triangle_signed_distance
    >>> tri = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    >>> triangle_signed_distance(np.array([[0.25, 0.25], [-0.5, 0.0], [1.0, 1.0]]), tri)
    array([[ 0.25      ],
           [-0.5       ],
           [-0.70710678]])
    """
    tris, xp, out_dtype = _check_tris(tris, check_finite)
    points, _, _ = check_scores(points, name="points", min_ndim=2, check_finite=check_finite)
    if points.ndim != 2 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (P, 2), got {tuple(points.shape)}")
    points = xp.astype(points, tris.dtype)
    op = TriangleSignedDistanceOp(check_flag(squared, name="squared"))
    return Bound(op, (tris, points), out_dtype)


@op_function
def soft_silhouette(
    tris: Any,
    image_size: int,
    /,
    *,
    distribution: Any = "uniform",
    scale: float | None = None,
    squared: bool = False,
    tconorm: str = "probabilistic",
    p: float | None = None,
    chunk_size: int | None = None,
    check_finite: bool = True,
) -> Bound:
    r"""GenDR's soft silhouette of a set of triangles, :math:`\alpha = \bot_t F(\delta d^{(2)}/\tau)`.

    See the module docstring for the formula and the conventions (unit square, pixel
    ``(i, j)`` centred at ``((j + ½)/S, (i + ½)/S)``). ``distribution="hard"`` gives
    the exact coverage :math:`1[\text{inside some triangle}]` (zero gradient), which
    the soft silhouettes tend to as ``scale → 0``. GenDR's finding (Petersen et al.,
    CVPR 2022): the choice of distribution and T-conorm matters as much as the
    architecture; its best average on ShapeNet was ``uniform`` with τ one pixel.

    Parameters
    ----------
    tris : array, shape ``(..., T, 3, 2)``
        Triangles in ``[0, 1]²``; leading axes are batch axes.
    image_size : int
        ``S``: the image is ``S × S``.
    distribution : str, ("name", parameter) or cdfs.Distribution
        A CDF of :mod:`dopt_core.relax.cdfs`, or ``"hard"``.
    scale : float > 0, optional
        τ. Default: one pixel, ``1/S`` (``1/S²`` when ``squared``). It and ``1/τ`` must be
        normal numbers of the dtype (``ValueError`` otherwise).
    squared : bool
        Use squared distances (SoftRas, DIB-R).
    tconorm : str
        The aggregation over triangles, a name of :mod:`dopt_core.relax.fuzzy`.
    p : float, optional
        The T-conorm's parameter (``None``: its default).
    chunk_size : int, optional
        Process this many pixels at a time (bounds memory to ``(batch, chunk_size, T)``).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., S, S)``
        Coverage in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.raster import soft_silhouette
    >>> square = np.array([[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75]],
    ...                    [[0.25, 0.25], [0.75, 0.75], [0.25, 0.75]]])
    >>> soft_silhouette(square, 4, distribution="hard")
    array([[0., 0., 0., 0.],
           [0., 1., 1., 0.],
           [0., 1., 1., 0.],
           [0., 0., 0., 0.]])
    >>> soft_silhouette(square, 4, distribution="uniform", scale=0.25).round(3)[0]
    array([0.271, 0.36 , 0.25 , 0.146])
    """
    tris, xp, out_dtype = _check_tris(tris, check_finite)
    S = check_int(image_size, name="image_size", low=1)
    if isinstance(distribution, str) and distribution == "hard":
        dist: Any = "hard"
    else:
        dist = cdfs.resolve(distribution, name="distribution")
        if dist.entry.raw:
            raise ValueError(f"distribution {dist.name!r} is not a CDF of the distance alone")
    squared = check_flag(squared, name="squared")
    if scale is None:
        scale = 1.0 / (S * S) if squared else 1.0 / S
    scale = check_positive(scale, name="scale")
    scale = check_in_dtype_range(scale, name="scale", dtype=tris.dtype, xp=xp)
    family, p = check_family(check_choice(tconorm, name="tconorm", choices=_FAMILIES), p)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, name="chunk_size", low=1)
    op = SoftSilhouetteOp(S, dist, scale, squared, family, p, chunk_size)
    return Bound(op, (tris,), out_dtype)


def pixel_centers(image_size: int) -> Any:
    """The ``(S², 2)`` NumPy array of pixel centres ``(x, y)`` in row-major order, the
    points :func:`soft_silhouette` evaluates (pixel ``(i, j)`` at ``((j+½)/S, (i+½)/S)``).

    Parameters
    ----------
    image_size : int
        ``S``.

    Returns
    -------
    numpy.ndarray, shape ``(S*S, 2)``

    Examples
    --------
    >>> from dopt_core.relax.raster import pixel_centers
    >>> pixel_centers(2)
    array([[0.25, 0.25],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.75, 0.75]])
    """
    S = check_int(image_size, name="image_size", low=1)
    c = (np.arange(S) + 0.5) / S
    return np.stack([np.tile(c, S), np.repeat(c, S)], axis=-1)

