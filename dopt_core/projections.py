r"""Score projections for identity-style backward passes (Sahoo et al., 2023).

A projection :math:`P` removes what the solver ignores, so that a gradient that
treats the solver as the identity cannot push θ along those directions forever
(cost collapse, exploding scales). Over the event axes of θ (one instance):

============  ==========================================================  =======================================
projection    :math:`P(\theta)`                                           VJP :math:`J_P^\top g`
============  ==========================================================  =======================================
``mean``      :math:`\theta - \bar\theta\,\mathbf 1`                      :math:`g - \bar g\,\mathbf 1`
``norm``      :math:`u = \theta / \lVert\theta\rVert_2`                   :math:`(g - u\langle u, g\rangle)/\lVert\theta\rVert_2`
``standardize`` ``norm`` after ``mean``                                   the two VJPs composed
============  ==========================================================  =======================================

``mean`` suits solvers invariant to adding a constant to every score (argmax,
top-k, ranking, sorting's order, paths with a fixed number of arcs such as the grid
DAG); ``norm`` suits solvers invariant to positive rescaling (all linear oracles).
A zero-norm instance is left at zero (its VJP is zero).

Reference: S. S. Sahoo, A. Paulus, M. Vlastelica, V. Musil, V. Kuleshov, G. Martius.
*Backpropagation through combinatorial algorithms: identity with projection works.*
ICLR 2023. https://arxiv.org/abs/2205.15213
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import check_choice, check_flag, check_int, check_scores
from ._lib._reduce import scaled_norm
from .op import Bound, Op, op_function

__all__ = ["PROJECTIONS", "project", "project_forward", "project_vjp"]

PROJECTIONS = ("mean", "norm", "standardize")


def check_projection(projection: str | None) -> str | None:
    return check_choice(projection, name="projection", choices=PROJECTIONS, allow_none=True)


def _axes(x: Any, event_ndim: int) -> tuple[int, ...]:
    return tuple(range(x.ndim - event_ndim, x.ndim))


def _center(x: Any, axes: tuple[int, ...], xp: Any) -> Any:
    return x - xp.mean(x, axis=axes, keepdims=True)


def project_forward(
    theta: Any, projection: str | None, *, event_ndim: int = 1, xp: Any
) -> tuple[Any, tuple[Any, ...]]:
    """``(P(θ), residuals)`` for :func:`project_vjp`.

    Parameters
    ----------
    theta : array
        Scores, ``(..., *event)``.
    projection : {"mean", "norm", "standardize"} or None
        The projection (``None``: the identity, no residuals).
    event_ndim : int
        Trailing axes of θ per instance.
    xp : namespace
        θ's array namespace.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.projections import project_forward, project_vjp
    >>> y, residuals = project_forward(np.array([3.0, 1.0, 2.0]), "mean", xp=np)
    >>> y, project_vjp(residuals, np.array([1.0, 0.0, 2.0]), "mean", xp=np)
    (array([ 1., -1.,  0.]), array([ 0., -1.,  1.]))
    """
    if projection is None:
        return theta, ()
    axes = _axes(theta, event_ndim)
    x = _center(theta, axes, xp) if projection in ("mean", "standardize") else theta
    if projection == "mean":
        return x, ()
    # ‖x‖ = s‖x/s‖ with s = max|x|: the sum of squares neither overflows nor underflows
    scale, norm_s, xs = scaled_norm(x, axes=axes, xp=xp)
    nonzero = scale > 0
    u = xs / xp.where(nonzero, norm_s, xp.ones_like(norm_s))
    safe = xp.where(nonzero, scale * norm_s, xp.ones_like(norm_s))
    return u, (u, safe, xp.astype(nonzero, x.dtype))


def project_vjp(
    residuals: tuple[Any, ...], g: Any, projection: str | None, *, event_ndim: int = 1, xp: Any
) -> Any:
    """``J_P(θ)^T g`` from the residuals of :func:`project_forward`.

    Parameters
    ----------
    residuals : tuple of arrays
        What :func:`project_forward` returned with ``P(θ)``.
    g : array
        Cotangent, shaped like θ.
    projection : {"mean", "norm", "standardize"} or None
        The projection the residuals come from.
    event_ndim : int
        Trailing axes of θ per instance.
    xp : namespace
        The array namespace of ``g``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.projections import project_forward, project_vjp
    >>> u, residuals = project_forward(np.array([3.0, 4.0]), "norm", xp=np)
    >>> u, project_vjp(residuals, np.array([1.0, 0.0]), "norm", xp=np)   # (g - u<u, g>)/|θ|
    (array([0.6, 0.8]), array([ 0.128, -0.096]))
    """
    if projection is None:
        return g
    axes = _axes(g, event_ndim)
    if projection == "mean":
        return _center(g, axes, xp)
    u, norm, nonzero = residuals
    out = (g - u * xp.sum(u * g, axis=axes, keepdims=True)) / norm * nonzero
    return _center(out, axes, xp) if projection == "standardize" else out


@dataclass(frozen=True)
class ProjectionOp(Op):
    projection: str
    event_ndim: int = 1
    name: ClassVar[str] = "project"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return project_forward(theta, self.projection, event_ndim=self.event_ndim, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return (project_vjp(residuals, g, self.projection, event_ndim=self.event_ndim, xp=xp),)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # every projection's Jacobian is symmetric (a centring, and (I - u uᵀ)/‖·‖ on it)
        (u,) = tangents
        if u is None:
            return None
        return project_vjp(residuals, u, self.projection, event_ndim=self.event_ndim, xp=xp)


@op_function
def project(theta: Any, /, projection: str, *, event_ndim: int = 1, check_finite: bool = True) -> Bound:
    """Apply a projection (table in the module docstring) as a differentiable layer.

    Parameters
    ----------
    theta : array, shape ``(..., *event)``
        Scores; leading axes are batch axes.
    projection : {"mean", "norm", "standardize"}
        The projection :math:`P`.
    event_ndim : int
        Trailing axes of θ that form one instance (the axes the statistics run over).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.projections.project(np.array([3.0, 1.0, 2.0]), "standardize").round(4)
    array([ 0.7071, -0.7071,  0.    ])
    """
    if check_projection(projection) is None:
        raise ValueError("projection must be one of " + str(PROJECTIONS))
    event_ndim = check_int(event_ndim, name="event_ndim", low=1)
    check_finite = check_flag(check_finite, name="check_finite")
    theta, _, out_dtype = check_scores(theta, min_ndim=event_ndim, check_finite=check_finite)
    return Bound(ProjectionOp(projection, event_ndim), (theta,), out_dtype)
