r"""The L2-regularised optimizer over the hull of a linear oracle, by Frank-Wolfe, and its Fenchel-Young loss.

For a solver :math:`y^*(\theta) = \operatorname{argmax}_{y\in Y}\langle\theta, y\rangle`
and :math:`C = \operatorname{conv}(Y)`, with :math:`\Omega(\mu) = \frac\lambda2\lVert\mu\rVert^2`,

.. math::

    \hat\mu(\theta) = \operatorname*{argmax}_{\mu\in C}\ \langle\theta, \mu\rangle - \Omega(\mu)
        = \operatorname{proj}_C(\theta/\lambda),

computed with Frank-Wolfe iterations that only call the oracle (pairwise steps:
the vertex :math:`s = y^*(\theta - \lambda\mu)` enters, the active vertex :math:`v`
worst for the objective loses weight, exact line search on the quadratic; the
Frank-Wolfe gap :math:`\langle \mu - \theta/\lambda, \mu - s\rangle` stops an
instance once below ``tol``). **All instances' iterations are batched**: each step is
one oracle call on the whole batch. Over the simplex (``argmax``) :math:`\hat\mu` is
sparsemax(θ/λ).

Backward: on the relative interior of a face :math:`F` of :math:`C`, :math:`\hat\mu`
is the projection onto :math:`\operatorname{aff}(F)`, so :math:`J^\top g =
\frac1\lambda P g` with :math:`P` the orthogonal projector onto the span of the
active vertices minus :math:`\hat\mu`; with :math:`V` those differences (rows),
:math:`P g = V^\top(VV^\top + \rho I)^{-1}Vg` (a small ridge ρ absorbs repeated
vertices).

The Fenchel-Young loss of :math:`\Omega` over :math:`C` (Blondel et al., 2020),

.. math::

    L(\theta; y) = \langle\theta, \hat\mu - y\rangle + \Omega(y) - \Omega(\hat\mu),
    \qquad \nabla_\theta L = \hat\mu(\theta) - y ,

is PyEPO's ``regularizedFrankWolfeFenchelYoung`` / ``regularizedFrankWolfeOpt``
(``RFY``) in score form (θ = -cost).

References
----------
M. Blondel, A. F. T. Martins, V. Niculae. *Learning with Fenchel-Young losses.* JMLR
2020. https://arxiv.org/abs/1901.02324

S. Lacoste-Julien, M. Jaggi. *On the global linear convergence of Frank-Wolfe
optimization variants.* NeurIPS 2015.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import (
    check_callable_solver,
    check_choice,
    check_int,
    check_linear_output,
    check_nonempty_mean,
    check_positive,
    check_same_device,
    check_scores,
    instance_solver,
    solver_name,
)
from ._lib._compat import device
from ._lib._reduce import REDUCTIONS, reduce_batch, reduced_vjp
from .backend import backend_for
from .op import Bound, Op, OpFunction, op_function, solver_kernel

__all__ = ["regularized_fenchel_young_loss", "regularized_optimizer"]


@dataclass(frozen=True)
class FrankWolfe:
    """The batched pairwise Frank-Wolfe solver of the module docstring."""

    solver: Callable[..., Any]
    lam: float = 1.0
    max_iter: int = 100
    tol: float = 1e-6
    event_ndim: int = 1

    def run(self, theta: Any, *, xp: Any) -> tuple[Any, Any, Any]:
        """``(μ̂ shaped like θ, atoms (N, T, D), weights (N, T))`` for flat instances N."""
        nd = self.event_ndim
        shape = tuple(theta.shape)
        d = math.prod(shape[len(shape) - nd :])
        flat = xp.reshape(theta, (-1, d))
        a = flat / self.lam

        kernel = solver_kernel(self.solver, theta, xp=xp)
        checked = False

        def oracle(x: Any) -> Any:
            # the solver's Op directly when it is a dopt function (validated once, on θ);
            # its output shape checked once (static shapes)
            nonlocal checked
            xs = xp.reshape(x, shape)
            y = self.solver(xs) if kernel is None else kernel(xs)
            if not checked:
                check_linear_output(xp.expand_dims(y, axis=0), xp.expand_dims(theta, axis=0))
                checked = True
            if y.dtype != theta.dtype:
                y = xp.astype(y, theta.dtype)
            return xp.reshape(y, (-1, d))

        s0 = oracle(theta)
        n, width = flat.shape[0], self.max_iter + 1
        dt, dev = theta.dtype, device(theta)
        zero = xp.zeros((n,), dtype=dt, device=dev)
        slots = xp.arange(width, device=dev)
        at_slot = slots[:, None] == slots[None, :]  # row t: the mask of slot t
        at_slot_f = xp.astype(at_slot, dt)
        # a fixed buffer of atoms (N, T, D), slot t + 1 written at step t: static shapes
        empty = xp.zeros((n, width, d), dtype=dt, device=dev)
        stacked = xp.where(at_slot[0, :][None, :, None], s0[:, None, :], empty)
        weights = xp.astype(xp.broadcast_to(at_slot[0, :][None, :], (n, width)), dt)
        mu = s0
        sq_atoms = weights * xp.sum(s0 * s0, axis=-1)[:, None]  # |atom|² per slot
        traced = backend_for(theta).is_traced(theta)
        for it in range(self.max_iter):
            grad = mu - a  # gradient of ½|μ - θ/λ|²
            s = oracle(-grad)
            gap = xp.sum(grad * (mu - s), axis=-1)
            # away vertex: the active atom with the largest <grad, v>
            active = weights > 0
            av = xp.where(active, (stacked @ grad[:, :, None])[..., 0], -xp.inf)
            onehot = xp.astype(slots[None, :] == xp.argmax(av, axis=-1)[:, None], dt)
            v = (onehot[:, None, :] @ stacked)[:, 0, :]
            w_v = xp.sum(onehot * weights, axis=-1)
            direction = s - v
            dd = xp.sum(direction * direction, axis=-1)
            moving, open_gap = dd > 0, gap > self.tol
            step = -xp.sum(grad * direction, axis=-1) / xp.where(moving, dd, 1.0)
            step = xp.where(step > w_v, w_v, xp.where(step > 0, step, zero))
            step = xp.where(open_gap & moving, step, zero)
            mu = mu + step[:, None] * direction
            # s joins the active atom equal to it, if any (vertices repeat); else slot it + 1
            sq_s = xp.sum(s * s, axis=-1)[:, None]
            dist = sq_atoms - 2.0 * (stacked @ s[:, :, None])[..., 0] + sq_s
            same = (dist <= 1e-9) & active
            first = same & (xp.cumulative_sum(xp.astype(same, dt), axis=1) == 1)
            new_slot = at_slot[it + 1, :][None, :]
            fresh = at_slot_f[it + 1, :][None, :] * xp.where(xp.any(same, axis=1), zero, step)[:, None]
            moved = xp.astype(first, dt) * step[:, None]
            weights = weights - onehot * step[:, None] + moved + fresh
            weights = xp.where(weights > 1e-12, weights, 0.0)
            stacked = xp.where(new_slot[..., None], s[:, None, :], stacked)
            sq_atoms = xp.where(new_slot, sq_s, sq_atoms)
            if not traced and not bool(xp.any(open_gap)):
                break
        if not traced:
            stacked, weights = _compact(stacked, weights, xp=xp)
        return xp.reshape(mu, shape), stacked, weights

    def pullback(self, mu: Any, atoms: Any, weights: Any, g: Any, *, xp: Any) -> Any:
        """``(1/λ) P g`` with ``P`` the projector onto the active face's directions."""
        shape = tuple(g.shape)
        d = atoms.shape[-1]
        gf = xp.reshape(g, (-1, d))
        V = (atoms - xp.reshape(mu, (-1, 1, d))) * xp.astype(weights > 0, g.dtype)[..., None]
        G = V @ xp.permute_dims(V, (0, 2, 1))
        t = G.shape[-1]
        eye = xp.eye(t, dtype=g.dtype, device=device(g))
        scale = xp.max(xp.sum(V * V, axis=-1), axis=-1)
        rel = 1e-6 if g.dtype == xp.float64 else 1e-4
        ridge = rel * xp.where(scale > 1.0, scale, 1.0)
        rhs = xp.sum(V * gf[:, None, :], axis=-1)[..., None]  # V g: (N, T, 1)
        coef = xp.linalg.solve(G + ridge[:, None, None] * eye, rhs)
        pg = xp.sum(V * coef, axis=1)
        return xp.reshape(pg / self.lam, shape)


def _compact(atoms: Any, weights: Any, *, xp: Any) -> tuple[Any, Any]:
    """Keep the atom slots some instance still weighs (concrete arrays only)."""
    # one host read of the (T,) mask (T is small; no data-dependent shapes on the device)
    used = backend_for(weights).to_numpy(xp.any(weights > 0, axis=0))
    if used.all() or not used.any():  # none used: an empty batch (keep the slots)
        return atoms, weights
    idx = xp.asarray([int(i) for i in used.nonzero()[0]], dtype=xp.int64, device=device(atoms))
    return xp.take(atoms, idx, axis=1), xp.take(weights, idx, axis=1)


@dataclass(frozen=True)
class RegularizedOp(Op):
    """``θ -> μ̂(θ)`` (module docstring)."""

    fw: FrankWolfe
    name: ClassVar[str] = "regularized_optimizer"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        mu, atoms, weights = self.fw.run(theta, xp=xp)
        return mu, (mu, atoms, weights)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        mu, atoms, weights = residuals
        return (self.fw.pullback(mu, atoms, weights, g, xp=xp),)


@dataclass(frozen=True)
class RegularizedFYOp(Op):
    """``(θ, y) -> L`` (reduced), gradient ``μ̂ - y``."""

    fw: FrankWolfe
    reduction: str = "mean"
    name: ClassVar[str] = "regularized_fenchel_young_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, y: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        mu, _, _ = self.fw.run(theta, xp=xp)
        ev = tuple(range(theta.ndim - self.fw.event_ndim, theta.ndim))
        half = 0.5 * self.fw.lam
        per = xp.sum(theta * (mu - y), axis=ev) + half * (xp.sum(y * y, axis=ev) - xp.sum(mu * mu, axis=ev))
        return reduce_batch(per, mu - y, self.reduction, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return reduced_vjp(residuals[0], g, self.reduction, self.fw.event_ndim, xp=xp), None


def _frank_wolfe(solver: Any, lam: float, max_iter: int, tol: float, event_ndim: int | None) -> FrankWolfe:
    check_callable_solver(solver)
    solver, nd = instance_solver(solver, event_ndim)
    return FrankWolfe(
        solver,
        check_positive(lam, name="lam"),
        check_int(max_iter, name="max_iter", low=1),
        check_positive(tol, name="tol"),
        nd,
    )


def regularized_optimizer(
    solver: Callable[..., Any],
    *,
    lam: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-6,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""The L2-regularised optimizer :math:`\hat\mu(\theta) = \operatorname{proj}_{\mathrm{conv}(Y)}(\theta/\lambda)` by Frank-Wolfe.

    Returns ``f(theta)`` (module docstring for the iterations and the backward pass).
    At most ``max_iter`` Frank-Wolfe steps, each **one** oracle call on the whole
    batch; converged instances (gap ≤ ``tol``) stop moving, and the loop ends when
    all have (a traced JAX function always runs ``max_iter`` steps). PyEPO's
    ``regularizedFrankWolfeOpt``. Blondel, Martins & Niculae, *Learning with
    Fenchel-Young losses*, JMLR 2020; Lacoste-Julien & Jaggi, NeurIPS 2015.

    Parameters
    ----------
    solver : callable
        A batched linear oracle ``(..., *event) -> (..., *event)``.
    lam : float
        Regularisation strength λ > 0.
    max_iter : int
        Largest number of Frank-Wolfe steps.
    tol : float
        Frank-Wolfe gap below which an instance has converged.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Returns
    -------
    OpFunction
        ``f(theta)``, shaped like θ.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> f = dc.regularized_optimizer(dc.solvers.argmax, lam=1.0)
    >>> theta = np.array([0.5, 0.2, -1.0])
    >>> f(theta).round(6)                       # sparsemax(theta)
    array([0.65, 0.35, 0.  ])
    >>> mu, vjp = dc.value_and_vjp(f, theta)
    >>> vjp(np.array([1.0, 0.0, 0.0])).round(6)  # the sparsemax Jacobian
    array([ 0.5, -0.5,  0. ])
    """
    fw = _frank_wolfe(solver, lam, max_iter, tol, event_ndim)
    op = RegularizedOp(fw)

    def bind(theta: Any) -> Bound:
        theta, _, out_dtype = check_scores(theta, min_ndim=fw.event_ndim)
        return Bound(op, (theta,), out_dtype)

    return op_function(bind, name=f"regularized_optimizer({solver_name(solver)})", doc=regularized_optimizer.__doc__)


def regularized_fenchel_young_loss(
    solver: Callable[..., Any],
    *,
    lam: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-6,
    reduction: str = "mean",
    event_ndim: int | None = None,
) -> OpFunction:
    r"""The Fenchel-Young loss of :math:`\frac\lambda2\lVert\cdot\rVert^2` over the solver's hull.

    Returns ``loss(theta, y_true)``: :math:`\langle\theta, \hat\mu - y\rangle +
    \frac\lambda2(\lVert y\rVert^2 - \lVert\hat\mu\rVert^2)` per instance, gradient
    :math:`\hat\mu(\theta) - y`, with :math:`\hat\mu` from :func:`regularized_optimizer`
    (same parameters). Non-negative, zero iff :math:`\hat\mu(\theta) = y`. PyEPO's
    ``regularizedFrankWolfeFenchelYoung`` (``RFY``) in score form. Blondel, Martins & Niculae, *Learning
    with Fenchel-Young losses*, JMLR 2020.

    Parameters
    ----------
    solver : callable
        A batched linear oracle ``(..., *event) -> (..., *event)``.
    lam : float
        Regularisation strength λ > 0.
    max_iter : int
        Largest number of Frank-Wolfe steps.
    tol : float
        Frank-Wolfe gap below which an instance has converged.
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Returns
    -------
    OpFunction
        ``loss(theta, y_true)``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> loss = dc.regularized_fenchel_young_loss(dc.solvers.argmax)
    >>> theta, y = np.array([[0.5, 0.2, -1.0]]), np.array([[0.0, 1.0, 0.0]])
    >>> value, vjp = dc.value_and_vjp(loss, theta, y)
    >>> round(float(value), 6), vjp(np.array(1.0)).round(6)   # gradient sparsemax - y
    (0.4225, array([[ 0.65, -0.65,  0.  ]]))
    """
    fw = _frank_wolfe(solver, lam, max_iter, tol, event_ndim)
    reduction = check_choice(reduction, name="reduction", choices=REDUCTIONS)
    op = RegularizedFYOp(fw, reduction)

    def bind(theta: Any, y_true: Any) -> Bound:
        theta, xp, out_dtype = check_scores(theta, min_ndim=fw.event_ndim)
        check_nonempty_mean(tuple(theta.shape[: theta.ndim - fw.event_ndim]), reduction, name="theta")
        y, _, _ = check_scores(y_true, name="y_true", min_ndim=fw.event_ndim)
        if tuple(y.shape) != tuple(theta.shape):
            raise ValueError(f"y_true must have theta's shape {tuple(theta.shape)}, got {tuple(y.shape)}")
        check_same_device({"theta": theta, "y_true": y})
        return Bound(op, (theta, xp.astype(y, theta.dtype)), out_dtype)

    return op_function(
        bind, name=f"regularized_fenchel_young_loss({solver_name(solver)})",
        doc=regularized_fenchel_young_loss.__doc__,
    )
