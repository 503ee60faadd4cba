"""0/1 knapsack by dynamic programming over the capacity, on the array's device."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_int, check_scores
from .._lib._compat import device
from .._lib._limits import MAX_KNAPSACK_CELLS, check_size
from ..op import Bound, Op, ZeroGradient, op_function
from ._host import StaticArray, static_array

__all__ = ["knapsack"]


@dataclass(frozen=True)
class KnapsackOp(ZeroGradient, Op):
    weights: StaticArray
    capacity: int
    name: ClassVar[str] = "knapsack"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        weights = [int(v) for v in self.weights.array]
        cap = self.capacity
        dev = device(theta)
        dt = theta.dtype
        batch = tuple(theta.shape[:-1])
        # best[..., c] = best score of a subset of the items seen so far of weight <= c
        best = xp.zeros((*batch, cap + 1), dtype=dt, device=dev)
        took = []
        for i, w in enumerate(weights):
            if w > cap:
                took.append(None)
                continue
            gain = theta[..., i : i + 1]
            shifted = best[..., : cap + 1 - w] + gain
            if w:
                shifted = xp.concat(
                    [xp.full((*batch, w), -xp.inf, dtype=dt, device=dev), shifted], axis=-1
                )
            take = shifted > best  # ties: leave the item out
            best = xp.where(take, shifted, best)
            took.append(take)
        # walk back from the full capacity
        # the library's default integer (int32 in JAX without x64)
        index = xp.asarray(0, device=dev).dtype
        c = xp.full((*batch, 1), cap, dtype=index, device=dev)
        chosen = []
        for i in range(len(weights) - 1, -1, -1):
            if took[i] is None:
                chosen.append(xp.zeros(batch, dtype=xp.bool, device=dev))
                continue
            t = xp.take_along_axis(took[i], c, axis=-1)
            chosen.append(t[..., 0])
            c = c - xp.astype(t, index) * weights[i]
        y = xp.stack(chosen[::-1], axis=-1)
        return xp.astype(y, dt), ()


@op_function
def knapsack(theta: Any, /, weights: Any, capacity: int, *, check_finite: bool = True) -> Bound:
    r"""Best subset of items under a capacity (0/1 knapsack), by dynamic programming.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \{0,1\}^n,\ \langle w, y \rangle \le C}
        \langle \theta, y \rangle

    with integer weights ``w ≥ 0`` and capacity ``C ≥ 0`` shared by the batch. Items
    with a non-positive score are never needed and are left out. The classic
    dynamic program over capacities (Bellman 1957): for each item in turn,
    ``best[c] ← max(best[c], best[c - w_i] + θ_i)`` for every capacity ``c`` at once and
    for the whole batch, then a walk back from ``c = C``; ``O(n·C)`` time and memory per
    instance, on ``theta``'s device (traces under ``jax.jit``). Ties: an item is taken
    only if it strictly improves the score, deciding from the last item backwards.

    The table is first made as small as the problem allows, without changing the
    result: weights and capacity are divided by the weights' greatest common divisor
    ``g`` (``C ← ⌊C/g⌋``), and the capacity is clamped to the total weight (beyond it
    every subset fits). The remaining table, ``n·(C + 1)`` entries per instance, must
    not exceed ``2**25`` (a ``ValueError`` naming ``capacity`` otherwise): memory and
    time grow with the capacity's value, not with an array's shape. For larger
    problems use :func:`milp` with ``A_ub=[weights], b_ub=[capacity], bounds=(0, 1)``.

    Parameters
    ----------
    theta : array, shape ``(..., n)``
        Item scores (values); leading axes are batch axes.
    weights : array-like of int, shape ``(n,)``
        Non-negative integer weights (concrete data; floats with integral values are
        accepted). Scale fractional weights to integers first (e.g. PyEPO's
        two-decimal weights by 100).
    capacity : int
        Non-negative integer capacity.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(..., n)``, ``theta``'s dtype and device
        Item indicator. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.knapsack(np.array([6.0, 10.0, 12.0]), weights=[1, 2, 3], capacity=5)
    array([0., 1., 1.])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    w = static_array(weights, name="weights", dtype=np.int64)
    if w.ndim != 1 or w.shape[0] != theta.shape[-1]:
        raise ValueError(
            f"weights must have shape (n,) with n = {theta.shape[-1]} items (theta's last axis), got {w.shape}"
        )
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative, got {int(w.min())}")
    capacity = check_int(capacity, name="capacity", low=0)
    w, cap = _reduced(w, capacity)
    check_size(
        w.shape[0] * (cap + 1),
        limit=MAX_KNAPSACK_CELLS,
        name="capacity",
        what=(
            f"the dynamic program over capacities (n·(C + 1) with n = {w.shape[0]} items and "
            f"C = {cap}, the capacity {capacity} after reduction by the weights' gcd and the total weight)"
        ),
        alternative=(
            "solve it as an integer program instead: dc.solvers.milp(theta, A_ub=[weights], "
            "b_ub=[capacity], bounds=(0, 1))"
        ),
    )
    return Bound(KnapsackOp(StaticArray(w), cap), (theta,), out_dtype)


def _reduced(weights: np.ndarray, capacity: int) -> tuple[np.ndarray, int]:
    """The same knapsack with the smallest table: weights and capacity divided by the
    weights' gcd ``g`` (``w y <= C`` iff ``(w/g) y <= ⌊C/g⌋`` for integer ``w/g``), the
    capacity clamped to the total weight (every capacity above it admits every subset,
    so the dynamic program takes the same decisions there)."""
    g = math.gcd(*(int(v) for v in weights)) if weights.size else 0
    if g > 1:
        weights, capacity = weights // g, capacity // g
    return weights, min(capacity, int(weights.sum()))
