r"""Decision-quality metrics for predict-then-optimise.

In score form (θ = -cost), with true scores :math:`\theta` and the decision
:math:`\hat y = y^*(\hat\theta)` taken on predicted scores :math:`\hat\theta`:

.. math::

    \operatorname{regret}(\hat\theta, \theta) = \langle \theta, y^*(\theta)\rangle
        - \langle \theta, y^*(\hat\theta)\rangle \;\ge 0 ,
    \qquad
    \operatorname{normalized\_regret} = \frac{\sum_i \operatorname{regret}_i}
        {\sum_i |\langle \theta_i, y^*(\theta_i)\rangle|} .

In cost form the regret is :math:`c^\top w^*(\hat c) - c^\top w^*(c)`, the same
number. ``normalized_regret`` is the dataset-level ratio used by PyEPO (sum of
regrets over sum of optimal objective magnitudes), not a mean of ratios.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._lib._checks import check_same_device, check_scores, instance_solver
from .backend import backend_for

__all__ = ["normalized_regret", "regret"]


def _event_axes(theta: Any, event_ndim: int) -> tuple[int, ...]:
    return tuple(range(theta.ndim - event_ndim, theta.ndim))


def regret(
    solver: Callable[..., Any], theta_hat: Any, theta_true: Any, *, event_ndim: int | None = None
) -> Any:
    """Per-instance regret of deciding with ``theta_hat`` when the truth is ``theta_true``.

    Both are score arrays of the same shape ``(*batch, *event)``; returns ``(*batch)``.
    ``event_ndim`` defaults to the solver's (2 for ``linear_assignment``). The two
    solver calls are batched (one call each; a solver that declares no ``event_ndim``
    is also run on up to three single rows the first time it is seen, to check that
    its rows are instances).

    Parameters
    ----------
    solver : callable
        The oracle ``y*(θ)`` (a dopt solver, or ``functools.partial`` of one).
    theta_hat : array, shape ``(*batch, *event)``
        Predicted scores: the decisions are ``solver(theta_hat)``.
    theta_true : array, same shape
        True scores: the decisions are evaluated (and the optimum taken) under them.
    event_ndim : int, optional
        Trailing axes per instance; the solver's ``event_ndim`` by default.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.regret(dc.solvers.argmax, np.array([[1.0, 0.0]]), np.array([[2.0, 3.0]]))
    array([1.])
    """
    solver, event_ndim = instance_solver(solver, event_ndim)
    theta_hat, xp, _ = check_scores(theta_hat, name="theta_hat", min_ndim=event_ndim)
    theta_true, _, _ = check_scores(theta_true, name="theta_true", min_ndim=event_ndim)
    if tuple(theta_hat.shape) != tuple(theta_true.shape):
        raise ValueError(
            f"theta_hat and theta_true must have the same shape, got {tuple(theta_hat.shape)} "
            f"and {tuple(theta_true.shape)}"
        )
    check_same_device({"theta_hat": theta_hat, "theta_true": theta_true})
    axes = _event_axes(theta_true, event_ndim)
    best = xp.sum(theta_true * solver(theta_true), axis=axes)
    taken = xp.sum(theta_true * solver(theta_hat), axis=axes)
    return best - taken


def normalized_regret(
    solver: Callable[..., Any], theta_hat: Any, theta_true: Any, *, event_ndim: int | None = None
) -> float:
    """Sum of regrets over the sum of ``|optimal objective|`` (a Python float).

    ``ValueError`` for an empty batch (the ratio is 0/0) and when every optimal
    objective is 0 (nothing to divide by; PyEPO adds 1e-8 to the sum instead),
    ``TypeError`` for traced arrays or torch ``meta`` tensors (no values to make a
    float of).

    Parameters
    ----------
    solver : callable
        The oracle ``y*(θ)`` (a dopt solver, or ``functools.partial`` of one).
    theta_hat : array, shape ``(*batch, *event)``
        Predicted scores: the decisions are ``solver(theta_hat)``.
    theta_true : array, same shape
        True scores: the decisions are evaluated (and the optimum taken) under them.
    event_ndim : int, optional
        Trailing axes per instance; the solver's ``event_ndim`` by default.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> truth = np.array([[2.0, 3.0], [1.0, -1.0]])
    >>> dc.normalized_regret(dc.solvers.argmax, -truth, truth)   # worst decisions
    0.75
    """
    solver, event_ndim = instance_solver(solver, event_ndim)
    theta_hat, xp, _ = check_scores(theta_hat, name="theta_hat", min_ndim=event_ndim)
    theta_true, _, _ = check_scores(theta_true, name="theta_true", min_ndim=event_ndim)
    backend = backend_for(theta_true)
    if backend.is_traced(theta_true) or backend.is_traced(theta_hat):
        raise TypeError(
            "normalized_regret returns a Python float, so it needs concrete arrays, not traced ones "
            "(jax.jit) or torch meta tensors; compute regret(...) there and the ratio outside"
        )
    batch = tuple(theta_true.shape[: theta_true.ndim - event_ndim])
    if math.prod(batch) == 0:
        raise ValueError(
            f"normalized_regret of an empty batch is undefined (0/0): theta_true has batch shape {batch}"
        )
    r = regret(solver, theta_hat, theta_true, event_ndim=event_ndim)
    opt = xp.sum(theta_true * solver(theta_true), axis=_event_axes(theta_true, event_ndim))
    scale = float(xp.sum(xp.abs(opt)))
    if scale == 0.0:
        raise ValueError(
            "normalized_regret is undefined when every optimal objective of theta_true is 0 "
            "(it divides by their sum of magnitudes); report regret(...) instead"
        )
    return float(xp.sum(r)) / scale
