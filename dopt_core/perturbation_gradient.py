r"""Perturbation-gradient (PG) losses (Gupta & Huang, 2024).

The decision loss of a prediction, the true cost of the decision taken on it, is
piecewise constant in the prediction. PG losses replace it by a finite difference of
the optimal value in the direction of the truth. In score form (θ maximised,
:math:`\theta = -c`) with :math:`F(t) = \max_{y\in Y}\langle t, y\rangle`, whose
directional derivative at :math:`\hat\theta` along :math:`-\theta` is the true cost
:math:`-\langle\theta, y^*(\hat\theta)\rangle` of the decision,

.. math::

    \ell^{\mathrm{back}}_\sigma(\hat\theta, \theta)
        = \frac{F(\hat\theta - \sigma\theta) - F(\hat\theta)}{\sigma},
    \qquad
    \ell^{\mathrm{central}}_\sigma(\hat\theta, \theta)
        = \frac{F(\hat\theta - \sigma\theta) - F(\hat\theta + \sigma\theta)}{2\sigma},

and by Danskin's theorem

.. math::

    \nabla_{\hat\theta}\ell^{\mathrm{back}}_\sigma
        = \frac{y^*(\hat\theta - \sigma\theta) - y^*(\hat\theta)}{\sigma},
    \qquad
    \nabla_{\hat\theta}\ell^{\mathrm{central}}_\sigma
        = \frac{y^*(\hat\theta - \sigma\theta) - y^*(\hat\theta + \sigma\theta)}{2\sigma}.

In cost form (:math:`\hat c = -\hat\theta`, :math:`V(c) = \min_w c^\top w`) these are
PyEPO's ``perturbationGradient`` losses :math:`(V(\hat c) - V(\hat c - \sigma c))/\sigma`
and :math:`(V(\hat c + \sigma c) - V(\hat c - \sigma c))/(2\sigma)`. As σ → 0 both tend
to the decision's true cost; the back difference is a difference of convex functions
(the paper's "PGB"), the central one its symmetric version ("PGC"). They are not
non-negative: they estimate a cost, not a regret (subtract the optimal cost, a
constant in :math:`\hat\theta`, for a regret).

Reference
---------
V. Gupta, M. Huang. *Decision-focused learning with directional gradients.* NeurIPS
2024. https://arxiv.org/abs/2402.03256
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import (
    check_callable_solver,
    check_choice,
    check_flag,
    check_linear_output,
    check_nonempty_mean,
    check_positive,
    check_same_device,
    check_scores,
    instance_solver,
    solver_name,
)
from ._lib._reduce import REDUCTIONS, reduce_batch, reduced_vjp
from .op import Bound, Op, OpFunction, op_function

__all__ = ["perturbation_gradient_loss"]


@dataclass(frozen=True)
class PerturbationGradientOp(Op):
    """``(θ̂, θ) -> ℓ_σ`` (reduced), gradient the solution difference over σ or 2σ."""

    solver: Callable[..., Any]
    sigma: float = 0.1
    two_sided: bool = False
    reduction: str = "mean"
    event_ndim: int = 1
    name: ClassVar[str] = "perturbation_gradient_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta_hat: Any, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        s = self.sigma
        lo = theta_hat - s * theta
        hi = theta_hat + s * theta if self.two_sided else theta_hat
        both = xp.stack([lo, hi], axis=0)  # the two problems of every instance in one call
        ys = xp.astype(self.solver(both), theta_hat.dtype)
        check_linear_output(ys, both)
        ev = tuple(range(theta_hat.ndim - self.event_ndim, theta_hat.ndim))
        y_lo, y_hi = ys[0, ...], ys[1, ...]
        scale = 2.0 * s if self.two_sided else s
        # F(lo) - F(hi) = <θ̂, y_lo - y_hi> - σ<θ, y_lo (+ y_hi)>: the large values F(·)
        # do not cancel before the division by σ (float32 lost ~1e-6 · |F| / σ)
        if self.two_sided:
            cost = xp.sum(theta * (y_lo + y_hi), axis=ev) / 2.0
        else:
            cost = xp.sum(theta * y_lo, axis=ev)
        per = xp.sum(theta_hat * (y_lo - y_hi), axis=ev) / scale - cost
        return reduce_batch(per, (y_lo - y_hi) / scale, self.reduction, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return reduced_vjp(residuals[0], g, self.reduction, self.event_ndim, xp=xp), None


def perturbation_gradient_loss(
    solver: Callable[..., Any],
    *,
    sigma: float = 0.1,
    two_sided: bool = False,
    reduction: str = "mean",
    event_ndim: int | None = None,
) -> OpFunction:
    r"""The PG loss of Gupta & Huang (module docstring for the math), in score form.

    Returns ``loss(theta_hat, theta_true)`` with predicted scores :math:`\hat\theta` and
    true scores :math:`\theta` of the same shape (``θ = -cost`` for a minimisation
    problem). ``two_sided=False`` is the back difference :math:`(F(\hat\theta -
    \sigma\theta) - F(\hat\theta))/\sigma`, ``two_sided=True`` the central one. Both
    problems of each instance go to the solver in one batched call. ``reduction``:
    ``"mean"``, ``"sum"`` or ``"none"`` over the batch.

    Gupta & Huang, *Decision-focused learning with directional gradients*, NeurIPS 2024.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    sigma : float
        Finite-difference step σ > 0 (PyEPO's default 0.1).
    two_sided : bool
        Central difference instead of the back difference.
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Returns
    -------
    OpFunction
        ``loss(theta_hat, theta_true)``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> loss = dc.perturbation_gradient_loss(dc.solvers.argmax, sigma=0.5)
    >>> theta_hat, theta = np.array([[1.0, 0.8]]), np.array([[0.0, 1.0]])
    >>> value, vjp = dc.value_and_vjp(loss, theta_hat, theta)
    >>> float(value), vjp(np.array(1.0))     # F(θ̂ - σθ) = 1.0, F(θ̂) = 1.0; item 0 still wins
    (0.0, array([[0., 0.]]))
    >>> value, vjp = dc.value_and_vjp(loss, np.array([[1.0, 0.9]]), theta)
    >>> float(value), vjp(np.array(1.0))     # θ̂ - σθ = [1, 0.4]: same decision, cost 0
    (0.0, array([[0., 0.]]))
    >>> loss2 = dc.perturbation_gradient_loss(dc.solvers.argmax, sigma=0.5, two_sided=True)
    >>> value, vjp = dc.value_and_vjp(loss2, np.array([[1.0, 0.9]]), theta)
    >>> round(float(value), 6), vjp(np.array(1.0))   # θ̂ + σθ = [1, 1.4] flips to item 1
    (-0.4, array([[ 1., -1.]]))
    """
    check_callable_solver(solver)
    name = solver_name(solver)
    solver, nd = instance_solver(solver, event_ndim)
    op = PerturbationGradientOp(
        solver,
        check_positive(sigma, name="sigma"),
        check_flag(two_sided, name="two_sided"),
        check_choice(reduction, name="reduction", choices=REDUCTIONS),
        nd,
    )

    def bind(theta_hat: Any, theta_true: Any) -> Bound:
        theta_hat, xp, out_dtype = check_scores(theta_hat, name="theta_hat", min_ndim=nd)
        check_nonempty_mean(tuple(theta_hat.shape[: theta_hat.ndim - nd]), op.reduction, name="theta_hat")
        theta, _, _ = check_scores(theta_true, name="theta_true", min_ndim=nd)
        if tuple(theta.shape) != tuple(theta_hat.shape):
            raise ValueError(
                f"theta_true must have theta_hat's shape {tuple(theta_hat.shape)}, got {tuple(theta.shape)}"
            )
        check_same_device({"theta_hat": theta_hat, "theta_true": theta})
        return Bound(op, (theta_hat, xp.astype(theta, theta_hat.dtype)), out_dtype)

    return op_function(
        bind, name=f"perturbation_gradient_loss({name})", doc=perturbation_gradient_loss.__doc__
    )
