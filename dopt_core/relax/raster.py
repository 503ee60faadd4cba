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
degenerate triangles cover nothing. The explicit VJP recomputes the distances from
the vertices and uses the T-conorm's closed-form leave-one-out factor, so nothing of
shape ``(batch, pixels, triangles)`` is stored between the passes; ``chunk_size``
bounds the transient arrays to ``(batch, chunk_size, triangles)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_choice, check_flag, check_int, check_positive, check_scores
from .._lib._compat import device
from ..op import Bound, Op, op_function
from . import cdfs
from .fuzzy import NAMES as _FAMILIES
from .fuzzy import check_family, tnorm_last_axis

__all__ = ["pixel_centers", "soft_silhouette", "triangle_signed_distance"]


# ---------------------------------------------------------------------------------
# geometry: signed distance of points to triangles, and its gradient
# ---------------------------------------------------------------------------------
def _geometry(px: Any, py: Any, V: Any, *, xp: Any, grad: bool) -> tuple[Any, ...]:
    """Squared distance ``d2`` and sign (``+1`` inside) of points ``(1, P, 1)`` to
    triangles ``V (B, T, 3, 2)``, both ``(B, P, T)``; with ``grad``, also the closest
    edge ``k``, its parameter ``t`` and the residual ``r = q - c`` (point minus
    closest point)."""
    X = [V[:, None, :, e, 0] for e in range(3)]  # (B, 1, T)
    Y = [V[:, None, :, e, 1] for e in range(3)]
    area2 = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0])
    inside = None
    d2 = t_best = rx_best = ry_best = k_best = None
    for e in range(3):
        ax, ay = X[e], Y[e]
        ex, ey = X[(e + 1) % 3] - ax, Y[(e + 1) % 3] - ay
        qx, qy = px - ax, py - ay
        ok = (ex * qy - ey * qx) * area2 >= 0  # closed: shared edges are covered
        inside = ok if inside is None else inside & ok
        len2 = ex * ex + ey * ey
        inv = xp.where(len2 > 0, 1 / xp.where(len2 > 0, len2, xp.ones_like(len2)), 0 * len2)
        t = xp.clip((qx * ex + qy * ey) * inv, 0.0, 1.0)
        rx, ry = qx - t * ex, qy - t * ey
        d2e = rx * rx + ry * ry
        if d2 is None:
            d2, t_best, rx_best, ry_best = d2e, t, rx, ry
            k_best = xp.zeros_like(d2e)
            continue
        better = d2e < d2
        d2 = xp.where(better, d2e, d2)
        if grad:
            t_best = xp.where(better, t, t_best)
            rx_best = xp.where(better, rx, rx_best)
            ry_best = xp.where(better, ry, ry_best)
            k_best = xp.where(better, xp.full_like(d2e, float(e)), k_best)
    inside = inside & (area2 != 0)
    sign = xp.where(inside, xp.ones_like(d2), -xp.ones_like(d2))
    if not grad:
        return d2, sign
    return d2, sign, k_best, t_best, rx_best, ry_best


def _vertex_grad(c: Any, k: Any, t: Any, rx: Any, ry: Any, *, xp: Any) -> Any:
    """``Σ_p c ∂d2/∂V`` (``c`` the cotangent of ``d2``, ``(B, P, T)``) as ``(B, T, 3, 2)``.

    Envelope theorem: ``d2 = min_t |q - a - t(b - a)|²`` has ``∂d2/∂a = -2(1 - t) r``
    and ``∂d2/∂b = -2 t r`` at the optimal ``t`` of the closest edge ``k = (a, b)``.
    """
    cx, cy = -2 * c * rx, -2 * c * ry
    out = []
    for v in range(3):
        w = xp.where(k == float(v), 1 - t, xp.zeros_like(t))
        w = w + xp.where(k == float((v - 1) % 3), t, xp.zeros_like(t))
        out.append(xp.stack([xp.sum(w * cx, axis=1), xp.sum(w * cy, axis=1)], axis=-1))
    return xp.stack(out, axis=-2)


def _flat(V: Any, *, xp: Any) -> tuple[Any, tuple[int, ...]]:
    batch = tuple(V.shape[:-3])
    n = 1
    for s in batch:
        n *= s
    return xp.reshape(V, (n, *V.shape[-3:])), batch


def _points_xy(points: Any, *, xp: Any) -> tuple[Any, Any]:
    return xp.reshape(points[:, 0], (1, -1, 1)), xp.reshape(points[:, 1], (1, -1, 1))


@dataclass(frozen=True)
class TriangleSignedDistanceOp(Op):
    squared: bool
    name: ClassVar[str] = "triangle_signed_distance"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, tris: Any, points: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        V, batch = _flat(tris, xp=xp)
        px, py = _points_xy(points, xp=xp)
        d2, sign = _geometry(px, py, V, xp=xp, grad=False)
        D = sign * (d2 if self.squared else xp.sqrt(d2))
        return xp.reshape(D, (*batch, *D.shape[1:])), (tris, points)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        tris, points = residuals
        V, batch = _flat(tris, xp=xp)
        px, py = _points_xy(points, xp=xp)
        d2, sign, k, t, rx, ry = _geometry(px, py, V, xp=xp, grad=True)
        g = xp.reshape(g, d2.shape)
        c = g * sign if self.squared else g * sign * _half_inv_sqrt(d2, xp=xp)
        return (xp.reshape(_vertex_grad(c, k, t, rx, ry, xp=xp), tris.shape), None)


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

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        c = n if self.chunk_size is None else self.chunk_size
        return [(s, min(s + c, n)) for s in range(0, n, c)]

    def _coverage(self, D: Any, sign: Any, xp: Any) -> Any:
        if self.dist == "hard":  # the closed inside test itself
            return xp.astype(sign > 0, D.dtype)
        v = cdfs.clip_standardised(D, xp=xp, scale=1.0 / self.scale)
        return self.dist.entry.F(v, self.dist.param_dict, xp)

    def _chunk(self, V: Any, px: Any, py: Any, *, xp: Any, grad: bool) -> tuple[Any, ...]:
        geo = _geometry(px, py, V, xp=xp, grad=grad)
        d2, sign = geo[0], geo[1]
        D = sign * (d2 if self.squared else xp.sqrt(d2))
        A = self._coverage(D, sign, xp)
        return (A, D, *geo)

    def forward(self, tris: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        V, batch = _flat(tris, xp=xp)
        px, py = _pixel_grid(self.image_size, V, xp=xp)
        outs = []
        for lo, hi in self._chunks(px.shape[0]):
            cx, cy = xp.reshape(px[lo:hi], (1, -1, 1)), xp.reshape(py[lo:hi], (1, -1, 1))
            A = self._chunk(V, cx, cy, xp=xp, grad=False)[0]
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
        g = xp.reshape(g, (V.shape[0], -1))
        total = xp.zeros_like(V)
        inv_tau = 1.0 / self.scale
        for lo, hi in self._chunks(px.shape[0]):
            cx, cy = xp.reshape(px[lo:hi], (1, -1, 1)), xp.reshape(py[lo:hi], (1, -1, 1))
            A, D, d2, sign, k, t, rx, ry = self._chunk(V, cx, cy, xp=xp, grad=True)
            dalpha = tnorm_last_axis(self.family, self.p, 1 - A, xp, grad=True)
            v = cdfs.clip_standardised(D, xp=xp, scale=inv_tau)
            dA = self.dist.entry.f(v, self.dist.param_dict, xp) * inv_tau
            c = g[:, lo:hi, None] * dalpha * dA * sign
            if not self.squared:
                c = c * _half_inv_sqrt(d2, xp=xp)
            total = total + _vertex_grad(c, k, t, rx, ry, xp=xp)
        return (xp.reshape(total, tris.shape),)


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
    flow to the vertices (the envelope theorem at the closest point); the points are
    constants.

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
        τ. Default: one pixel, ``1/S`` (``1/S²`` when ``squared``).
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

