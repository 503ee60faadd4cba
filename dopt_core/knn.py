r"""Robust kNN targets for decision-focused learning (Schutte et al., 2023; PyEPO's ``optDatasetKNN``).

Each training instance's cost is blended with those of its ``k`` nearest neighbours in
feature space (Euclidean, the instance itself excluded), with self-weight ``w``:

.. math::

    \tilde c_{i,l} = w\,c_i + (1 - w)\,c_{j_l(i)}, \quad l = 1, \dots, k, \qquad
    \bar y_i = \frac1k\sum_l w^*(\tilde c_{i,l}), \qquad \bar c_i = \frac1k\sum_l \tilde c_{i,l},

and any loss is then trained on :math:`(\bar c_i, \bar y_i)` instead of the noisy
:math:`(c_i, w^*(c_i))` — the kNN-robust loss. All :math:`N k` problems are solved in
one batched solver call.

Reference
---------
N. Schutte, K. Postek, N. Yorke-Smith. *Robust losses for decision-focused learning.*
IJCAI 2024. https://arxiv.org/abs/2310.04328
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._lib._compat import device
from ._lib._checks import check_callable_solver, check_int, check_real, check_same_device, check_scores

__all__ = ["knn_targets"]


def knn_targets(
    x: Any, costs: Any, solver: Callable[..., Any], *, k: int = 10, weight: float = 0.5
) -> tuple[Any, Any]:
    r"""kNN-smoothed costs and mean solutions ``(c̄, ȳ)`` (module docstring for the math).

    ``solver`` maximises scores, so it receives :math:`-\tilde c` (a cost-minimising
    problem). Device arithmetic plus one solver call on ``(N, k, d)`` scores.
    Schutte, Postek & Yorke-Smith, *Robust losses for decision-focused learning*, IJCAI 2024.

    Parameters
    ----------
    x : array, shape ``(N, p)``
        Features.
    costs : array, shape ``(N, d)``
        True costs.
    solver : callable
        The batched oracle (``θ = -cost``).
    k : int
        Neighbours, ``1 ≤ k < N``.
    weight : float
        Self-weight ``w`` in ``[0, 1]`` (1: no smoothing).

    Returns
    -------
    (array, array)
        ``c̄`` and ``ȳ``, both ``(N, d)``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> x = np.array([[0.0], [0.1], [5.0]])
    >>> c = np.array([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]])
    >>> c_bar, y_bar = dc.knn_targets(x, c, lambda t: dc.solvers.argmax(t), k=1, weight=0.5)
    >>> c_bar[0], y_bar[0]          # blended with instance 1: [2, 1], the second item is cheaper
    (array([2., 1.]), array([0., 1.]))
    """
    x, xp, _ = check_scores(x, name="x", min_ndim=2)
    c, _, _ = check_scores(costs, name="costs", min_ndim=2)
    check_callable_solver(solver)
    if x.ndim != 2 or c.ndim != 2 or x.shape[0] != c.shape[0]:
        raise ValueError(f"x and costs must be (N, p) and (N, d) with the same N, got {tuple(x.shape)}, {tuple(c.shape)}")
    check_same_device({"x": x, "costs": c})
    n = int(x.shape[0])
    k = check_int(k, name="k", low=1, high=max(n - 1, 1))
    if n < 2:
        raise ValueError("knn_targets needs at least two instances")
    w = check_real(weight, name="weight")
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    sq = xp.sum(x * x, axis=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * (x @ xp.permute_dims(x, (1, 0)))
    idx = xp.arange(n, device=device(x))
    dist = xp.where(idx[:, None] == idx[None, :], xp.inf, dist)
    nearest = xp.argsort(dist, axis=1, stable=True)[:, :k]  # (N, k)
    neighbours = xp.reshape(xp.take(c, xp.reshape(nearest, (-1,)), axis=0), (n, k, c.shape[1]))
    blended = w * c[:, None, :] + (1.0 - w) * neighbours
    ys = xp.astype(solver(-blended), c.dtype)
    return xp.mean(blended, axis=1), xp.mean(ys, axis=1)
