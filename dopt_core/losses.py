r"""Fenchel-Young losses built on perturbed maxima (Berthet et al., 2020).

For a target :math:`y` in the convex hull of the solver's outputs,

.. math::

    L_\varepsilon(\theta; y) = F_\varepsilon(\theta) - \langle \theta, y\rangle,
    \qquad \nabla_\theta L_\varepsilon = y_\varepsilon(\theta) - y ,

(the regulariser term :math:`\varepsilon\Omega(y)` of the paper is constant in θ and
omitted). :math:`L_\varepsilon` is convex in θ and non-negative in expectation:
:math:`F_\varepsilon(\theta) \ge \mathbb E\langle y, \theta + \varepsilon Z\rangle`.

The Monte-Carlo value is computed with common random numbers,

.. math::

    \hat L = \frac1M \sum_m \langle y^*(\eta_m) - y, \eta_m\rangle
             + \varepsilon\, \mathbb E[Z]\, \textstyle\sum_i y_i ,

an unbiased estimate of :math:`L_\varepsilon` in which every sample's term is
non-negative (:math:`y^*(\eta_m)` maximises :math:`\langle\cdot, \eta_m\rangle` over
the hull), so :math:`\hat L \ge 0` for non-negative targets; its gradient is exactly
:math:`\frac1M\sum_m y^*(\eta_m) - y`. With multiplicative perturbation the value is
:math:`\frac1M\sum_m \langle y^*(\eta_m), \eta_m\rangle - \langle\theta, y\rangle` and the
gradient :math:`\frac1M\sum_m y^*(\eta_m)\odot e^{\varepsilon Z_m - \varepsilon^2/2} - y`
(Dalle et al., 2022). The target ``y_true`` receives no gradient.

Sign conventions: θ is a score (maximisation). For costs, pass ``theta = -cost_hat``
(PyEPO's ``perturbedFenchelYoung`` for a minimisation model computes the same loss of
``-cost_hat``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import (
    check_choice,
    check_linear_output,
    check_nonempty_mean,
    check_same_device,
    check_scores,
    instance_solver,
    solver_failure,
    solver_name,
)
from ._lib._reduce import REDUCTIONS
from ._lib._reduce import reduce_batch as _reduce
from ._lib._reduce import reduced_vjp as _reduced_vjp
from .noise import Noise
from .backend import apply_op
from .newton import newton_loss, newton_precondition
from .op import Bound, Op, OpFunction, op_function, solver_kernel
from .perturbed import Perturbation, SampleMeanOp, make_perturbation

__all__ = ["fenchel_young_loss", "newton_loss", "newton_precondition", "spo_plus_loss"]

_REDUCTIONS = REDUCTIONS


@dataclass(frozen=True)
class FenchelYoungOp(Op):
    """``(θ, y, Z) -> L̂`` (reduced over the batch), gradient ``g · (ŷ_ε - y)``."""

    p: Perturbation
    reduction: str = "mean"
    name: ClassVar[str] = "fenchel_young_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1, 2)

    def forward(self, theta: Any, y: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p = self.p
        eta, w = p.perturb(theta, z, xp=xp)
        ys = _solve_samples(p, eta, xp=xp)
        if ys.dtype != theta.dtype:
            ys = xp.astype(ys, theta.dtype)
        check_linear_output(ys, eta)
        ev = p.event_axes(eta.ndim)
        if w is None:
            per = xp.mean(xp.sum((ys - y) * eta, axis=ev), axis=0)
            if p.noise.mean != 0.0:
                per = per + p.sigma * p.noise.mean * xp.sum(y, axis=p.event_axes(y.ndim))
            grad = xp.mean(ys, axis=0) - y
        else:
            per = xp.mean(xp.sum(ys * eta, axis=ev), axis=0) - xp.sum(theta * y, axis=p.event_axes(y.ndim))
            grad = xp.mean(ys * w, axis=0) - y
        value, (grad,) = _reduce(per, grad, self.reduction, xp=xp)
        # the samples ride along (no copy) for reattach: Hessians by the score identity
        return value, (grad,) + (() if w is not None else (ys,))

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return _reduced_vjp(residuals[0], g, self.reduction, self.p.event_ndim, xp=xp), None, None

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # <∇L, u> with the stored (already reduced) gradient y_ε - y
        u = tangents[0]
        if u is None:
            return None
        per = xp.sum(residuals[0] * u, axis=self.p.event_axes(u.ndim))
        return per if self.reduction == "none" else xp.sum(per)

    @property
    def second_order(self) -> bool:  # type: ignore[override]
        # additive noise: ∇²L = J y_ε by the score identity (reattach), as for perturbed_max
        return not self.p.multiplicative

    def reattach(self, inputs: tuple[Any, ...], residuals: tuple[Any, ...], *, xp: Any) -> tuple[Any, ...]:
        # ∇_θ L = y_ε(θ) - y, with y_ε the mean of the samples differentiated in θ by the
        # perturbed optimizer's score identity over the same noise (no new solves)
        if self.p.multiplicative:
            return residuals
        theta, y, z = inputs
        ys = residuals[1]
        grad = apply_op(SampleMeanOp(self.p), theta, z, ys) - y
        if self.reduction == "mean":
            count = 1
            for s in theta.shape[: theta.ndim - self.p.event_ndim]:
                count *= int(s)
            grad = grad / count
        return (grad, ys)


def _solve_samples(p: Perturbation, eta: Any, *, xp: Any) -> Any:
    """``p.solve(eta)``; a dopt solver's Op runs directly (:func:`dopt_core.op.solver_kernel`:
    bound, so validated, on ``eta`` itself, without a nested autodiff call: no gradient
    flows through the solver here), with the errors ``p.solve`` raises."""
    m = eta.shape[0]
    if p.chunk_size is not None and p.chunk_size < m:
        return p.solve(eta, xp=xp)
    try:
        kernel = solver_kernel(p.solver, eta, xp=xp)
        if kernel is not None:
            return kernel(eta)
    except Exception as exc:  # named as p.solve names them: theta's shape, not the stacked problems'
        err = solver_failure(p.solver, exc, eta, start=0, total=m)
        if err is exc:
            raise
        raise err from exc
    return p.solve(eta, xp=xp)


def fenchel_young_loss(
    solver: Callable[..., Any],
    *,
    sigma: float = 1.0,
    num_samples: int = 10,
    noise: str | Noise = "normal",
    multiplicative: bool = False,
    antithetic: bool = False,
    reduction: str = "mean",
    chunk_size: int | None = None,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""The perturbed Fenchel-Young loss of ``solver`` (module docstring for the math).

    Returns ``loss(theta, y_true, *, rng=None, noise=None)``: ``theta`` scores
    ``(*batch, *event)``, ``y_true`` targets of the same shape (solutions, or points of
    their convex hull). ``reduction``: ``"mean"`` (default) or ``"sum"`` over the
    batch, or ``"none"`` for one loss per instance; the mean of an empty batch raises
    ``ValueError``. ``rng``/``noise`` and the other
    parameters as in :func:`dopt_core.perturbed`.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    sigma : float
        Noise scale ε > 0.
    num_samples : int
        Monte-Carlo samples M.
    noise : {"normal", "gumbel"} or Noise
        Law of Z.
    multiplicative : bool
        Multiplicative perturbation ``θ ⊙ exp(εZ - ε²/2)`` (Normal noise, θ ≠ 0).
    antithetic : bool
        Use pairs (Z, -Z) (symmetric noise, even ``num_samples``).
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    chunk_size : int, optional
        At most this many samples per solver call.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> loss = dc.fenchel_young_loss(dc.solvers.argmax, sigma=0.5, num_samples=100)
    >>> theta, y = np.array([[2.0, 0.0, -1.0]]), np.array([[0.0, 1.0, 0.0]])
    >>> value, vjp = dc.value_and_vjp(loss, theta, y, rng=0)
    >>> bool(value > 0), vjp(np.array(1.0)).round(2)   # gradient y_eps(theta) - y
    (True, array([[ 1., -1.,  0.]]))
    """
    p = make_perturbation(
        solver, sigma=sigma, num_samples=num_samples, noise=noise, multiplicative=multiplicative,
        antithetic=antithetic, chunk_size=chunk_size, event_ndim=event_ndim,
    )
    reduction = check_choice(reduction, name="reduction", choices=_REDUCTIONS)
    op = FenchelYoungOp(p, reduction)

    def bind(theta: Any, y_true: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
        check_nonempty_mean(tuple(theta.shape[: theta.ndim - p.event_ndim]), reduction, name="theta")
        y, xp, _ = check_scores(y_true, name="y_true", min_ndim=p.event_ndim)
        if tuple(y.shape) != tuple(theta.shape):
            raise ValueError(f"y_true must have theta's shape {tuple(theta.shape)}, got {tuple(y.shape)}")
        check_same_device({"theta": theta, "y_true": y})
        if y.dtype != theta.dtype:
            y = xp.astype(y, theta.dtype)
        return Bound(op, (theta, y, z), out_dtype)

    f = op_function(
        bind, name=f"fenchel_young_loss({solver_name(solver)})", doc=fenchel_young_loss.__doc__
    )
    f.perturbation = p  # type: ignore[attr-defined]
    return f


# ---------------------------------------------------------------------------------
# SPO+
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SPOPlusOp(Op):
    """``(θ̂, θ, y) -> SPO+`` (reduced), gradient ``2 (y*(2θ̂ - θ) - y)``."""

    solver: Callable[..., Any]
    reduction: str = "mean"
    event_ndim: int = 1
    name: ClassVar[str] = "spo_plus_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1, 2)

    def forward(self, theta_hat: Any, theta: Any, y: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        a = 2.0 * theta_hat - theta
        ya = xp.astype(self.solver(a), a.dtype)
        check_linear_output(xp.expand_dims(ya, axis=0), xp.expand_dims(a, axis=0))
        ev = tuple(range(a.ndim - self.event_ndim, a.ndim))
        # <a, y*(a)> - 2<θ̂, y> + <θ, y> = <a, y*(a) - y>: one sum, no cancellation, ≥ 0
        per = xp.sum(a * (ya - y), axis=ev)
        return _reduce(per, 2.0 * (ya - y), self.reduction, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return _reduced_vjp(residuals[0], g, self.reduction, self.event_ndim, xp=xp), None, None


def spo_plus_loss(solver: Callable[..., Any], *, reduction: str = "mean", event_ndim: int | None = None) -> OpFunction:
    r"""The SPO+ loss of Elmachtoub & Grigas, in score form.

    Returns ``loss(theta_hat, theta_true, y_true=None)`` with predicted scores
    :math:`\hat\theta`, true scores :math:`\theta` and an optimal decision
    :math:`y^* = y^*(\theta)` (computed when ``y_true`` is not given):

    .. math::

        \ell_{\mathrm{SPO+}}(\hat\theta, \theta) = \max_{y}\, \langle 2\hat\theta - \theta, y\rangle
            - 2\langle \hat\theta, y^*\rangle + \langle \theta, y^*\rangle,
        \qquad \nabla_{\hat\theta} = 2\bigl(y^*(2\hat\theta - \theta) - y^*\bigr).

    With costs :math:`c = -\theta`, :math:`\hat c = -\hat\theta` this is the paper's
    :math:`\max_w (c - 2\hat c)^\top w + 2\hat c^\top w^*(c) - z^*(c)` and its
    subgradient :math:`2(w^*(c) - w^*(2\hat c - c))` with respect to :math:`\hat c`
    (PyEPO's ``SPOPlus`` for a minimisation model). SPO+ is convex in
    :math:`\hat\theta`, non-negative, zero at :math:`\hat\theta = \theta`, and bounds
    the regret :math:`\langle\theta, y^*\rangle - \langle\theta, y^*(\hat\theta)\rangle`
    from above. ``reduction``: ``"mean"``, ``"sum"`` or ``"none"`` over the batch (the
    mean of an empty batch raises ``ValueError``).

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> loss = dc.spo_plus_loss(dc.solvers.argmax)
    >>> theta = np.array([[1.0, 2.0, 0.0]])
    >>> float(loss(theta, theta)), float(loss(np.array([[2.0, 1.0, 0.0]]), theta))
    (0.0, 3.0)
    """
    reduction = check_choice(reduction, name="reduction", choices=_REDUCTIONS)
    if not callable(solver):
        raise TypeError(f"solver must be callable, got {type(solver).__name__}")
    name = solver_name(solver)
    solver, nd = instance_solver(solver, event_ndim)
    op = SPOPlusOp(solver, reduction, nd)

    def bind(theta_hat: Any, theta_true: Any, y_true: Any = None) -> Bound:
        theta_hat, xp, out_dtype = check_scores(theta_hat, name="theta_hat", min_ndim=nd)
        check_nonempty_mean(tuple(theta_hat.shape[: theta_hat.ndim - nd]), reduction, name="theta_hat")
        theta, _, _ = check_scores(theta_true, name="theta_true", min_ndim=nd)
        if tuple(theta.shape) != tuple(theta_hat.shape):
            raise ValueError(
                f"theta_true must have theta_hat's shape {tuple(theta_hat.shape)}, got {tuple(theta.shape)}"
            )
        check_same_device({"theta_hat": theta_hat, "theta_true": theta})
        if y_true is None:
            y = solver(theta)
        else:
            y, _, _ = check_scores(y_true, name="y_true", min_ndim=nd)
            if tuple(y.shape) != tuple(theta.shape):
                raise ValueError(f"y_true must have theta_true's shape {tuple(theta.shape)}, got {tuple(y.shape)}")
            check_same_device({"theta_hat": theta_hat, "y_true": y})
        dtype = theta_hat.dtype
        return Bound(op, (theta_hat, xp.astype(theta, dtype), xp.astype(y, dtype)), out_dtype)

    return op_function(bind, name=f"spo_plus_loss({name})", doc=spo_plus_loss.__doc__)
