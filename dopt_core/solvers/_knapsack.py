"""0/1 and multi-dimensional knapsacks: dynamic programming over the capacities on the
array's device, or HiGHS on the host."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import (
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_scores,
)
from .._lib._compat import device
from .._lib._limits import MAX_KNAPSACK_CELLS, check_size
from ..op import Bound, Op, ZeroGradient, op_function
from ._host import StaticArray, static_array
from ._lp import milp

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


@dataclass(frozen=True)
class MultiKnapsackOp(ZeroGradient, Op):
    """The dynamic program over a table of capacity vectors ``c`` (mixed radix, flattened)."""

    weights: StaticArray  # (m, n) integers, m >= 2 binding constraints
    capacity: StaticArray  # (m,)
    name: ClassVar[str] = "knapsack"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        w = self.weights.array
        cap = self.capacity.array
        dev = device(theta)
        dt = theta.dtype
        batch = tuple(theta.shape[:-1])
        radix = cap + 1
        size = int(np.prod(radix))
        strides = np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]]).astype(np.int64)
        coords = np.stack(np.unravel_index(np.arange(size), tuple(int(r) for r in radix)), axis=0)
        index = xp.asarray(0, device=dev).dtype
        neg = xp.asarray(-xp.inf, dtype=dt, device=dev)
        best = xp.zeros((*batch, size), dtype=dt, device=dev)
        took = []
        for i in range(w.shape[1]):
            wi = w[:, i]
            if np.any(wi > cap):
                took.append(None)
                continue
            fits = np.all(coords >= wi[:, None], axis=0)
            src = np.where(fits, np.arange(size) - int(wi @ strides), 0)
            shifted = xp.take(best, xp.asarray(src, dtype=index, device=dev), axis=-1)
            shifted = xp.where(xp.asarray(fits, device=dev), shifted + theta[..., i : i + 1], neg)
            take = shifted > best  # ties: leave the item out
            best = xp.where(take, shifted, best)
            took.append(take)
        c = xp.full((*batch, 1), size - 1, dtype=index, device=dev)  # the full capacity vector
        chosen = []
        for i in range(w.shape[1] - 1, -1, -1):
            if took[i] is None:
                chosen.append(xp.zeros(batch, dtype=xp.bool, device=dev))
                continue
            t = xp.take_along_axis(took[i], c, axis=-1)
            chosen.append(t[..., 0])
            c = c - xp.astype(t, index) * int(w[:, i] @ strides)
        y = xp.stack(chosen[::-1], axis=-1)
        return xp.astype(y, dt), ()


@op_function
def knapsack(
    theta: Any,
    /,
    weights: Any,
    capacity: Any,
    *,
    method: str = "dp",
    executor: Any = None,
    check_finite: bool = True,
    time_limit: float | None = None,
) -> Bound:
    r"""Best subset of items under one or several capacities (0/1 knapsack), exactly.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \{0,1\}^n,\ W y \le C}
        \langle \theta, y \rangle

    with weights ``W ≥ 0`` of shape ``(n,)`` (one capacity ``C``) or ``(m, n)`` (the
    multi-dimensional knapsack: ``m`` capacities ``C_k``, as in PyEPO's knapsack
    generator :func:`dopt_core.data.knapsack` with ``dim = m``), shared by the
    batch. The solver maximises the items' values (scores); for costs pass
    ``θ = -cost``. Items with a non-positive score are never needed and are left out.

    ``method="dp"`` (default): the classic dynamic program over capacities
    (Bellman 1957) with integer weights and capacities: for each item in turn,
    ``best[c] ← max(best[c], best[c - w_i] + θ_i)`` for every capacity (vector)
    ``c ≤ C`` at once and for the whole batch, then a walk back from ``c = C``;
    ``O(n·∏_k (C_k + 1))`` time and memory per instance, on ``theta``'s device (traces
    under ``jax.jit``). Ties: an item is taken only if it strictly improves the
    score, deciding from the last item backwards.

    The table is first made as small as the problem allows, without changing the
    result: each constraint's weights and capacity are divided by its weights'
    greatest common divisor ``g`` (``C ← ⌊C/g⌋``), each capacity is clamped to its
    total weight, and constraints that every subset meets are dropped. The remaining
    table, ``n·∏_k (C_k + 1)`` entries per instance, must not exceed ``2**25`` (a
    ``ValueError`` naming ``capacity`` otherwise): memory and time grow with the
    capacities' values, not with an array's shape.

    ``method="milp"``: per instance on the host, the integer program
    ``max θᵀy, W y ≤ C, 0 ≤ y ≤ 1`` by HiGHS (:func:`milp`); weights and capacities
    may be any non-negative reals (PyEPO's two-decimal weights as they are), and the
    instances can be spread over an ``executor``. Ties may be broken differently
    from the dynamic program.

    Parameters
    ----------
    theta : array, shape ``(..., n)``
        Item scores (values); leading axes are batch axes.
    weights : array-like, shape ``(n,)`` or ``(m, n)``
        Non-negative weights (concrete data). ``method="dp"`` needs integers (floats
        with integral values are accepted): scale fractional weights first (e.g.
        PyEPO's two-decimal weights by 100) or use ``method="milp"``.
    capacity : int or array-like, shape ``(m,)``
        Non-negative capacities, one per row of ``weights`` (integers for ``"dp"``).
    method : {"dp", "milp"}
        The algorithm (above).
    executor : concurrent.futures.Executor, optional
        Spread the instances over it (``method="milp"`` only).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.
    time_limit : float, optional
        Seconds HiGHS may spend per instance (``method="milp"`` only).

    Returns
    -------
    array, shape ``(..., n)``, ``theta``'s dtype and device
        Item indicator. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.knapsack(np.array([6.0, 10.0, 12.0]), weights=[1, 2, 3], capacity=5)
    array([0., 1., 1.])
    >>> dc.solvers.knapsack(np.array([6.0, 10.0, 12.0]), [[1, 2, 3], [3, 1, 3]], [5, 4])
    array([0., 1., 1.])
    >>> dc.solvers.knapsack(np.array([6.0, 10.0, 12.0]), [[1, 2, 3], [3, 1, 3]], [5, 3.5],
    ...                     method="milp")  # real capacities: HiGHS
    array([0., 0., 1.])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    n = theta.shape[-1]
    method = check_choice(method, name="method", choices=("dp", "milp"))
    if method == "milp":
        w = static_array(weights, name="weights", dtype=np.float64)
    else:
        w = static_array(weights, name="weights", dtype=np.int64)
    if w.ndim not in (1, 2) or w.shape[-1] != n:
        raise ValueError(
            f"weights must have shape (n,) or (m, n) with n = {n} items (theta's last axis), "
            f"got {w.shape}"
        )
    if not np.all(np.isfinite(w)):
        raise ValueError("weights must be finite")
    if np.any(w < 0):
        raise ValueError(f"weights must be non-negative, got {w.min()}")
    rows = w.reshape(-1, n)
    m = rows.shape[0]
    if w.ndim == 1:
        if method == "milp":
            caps = np.array([check_nonnegative(capacity, name="capacity")])
        else:
            caps = np.array([check_int(capacity, name="capacity", low=0)])
    else:
        caps = static_array(
            capacity, name="capacity", dtype=np.float64 if method == "milp" else np.int64
        )
        if caps.shape != (m,):
            raise ValueError(
                f"capacity must have shape ({m},) (one per row of weights), got {caps.shape}"
            )
        if np.any(caps < 0) or not np.all(np.isfinite(caps)):
            raise ValueError("capacity must be finite and non-negative")
    if method == "milp":
        if time_limit is not None:
            time_limit = check_positive(time_limit, name="time_limit")
        bound = milp.bind(
            theta, A_ub=rows, b_ub=caps, bounds=(0, 1), executor=executor,
            check_finite=check_finite, time_limit=time_limit,
        )
        # theta is already float32 for half-precision input: cast back to its dtype
        return Bound(bound.op, bound.inputs, out_dtype)
    if executor is not None or time_limit is not None:
        raise ValueError("executor and time_limit apply to method='milp' only")
    if m == 0:  # no constraint: the same as one that every subset meets
        rows, caps, m = np.zeros((1, n), dtype=np.int64), np.zeros(1, dtype=np.int64), 1
    reduced = [_reduced(rows[k], int(caps[k])) for k in range(m)]
    binding = [k for k in range(m) if reduced[k][1] < _total(reduced[k][0])] or [0]
    wr = np.stack([reduced[k][0] for k in binding])
    cells = n * math.prod(reduced[k][1] + 1 for k in binding)  # Python ints: no overflow
    check_size(
        cells,
        limit=MAX_KNAPSACK_CELLS,
        name="capacity",
        what=(
            f"the dynamic program over capacities (n·∏(C_k + 1) with n = {n} items and "
            f"C = {[reduced[k][1] for k in binding]}, the capacities {caps.tolist()} after "
            "reduction by the weights' gcd and the total weight)"
        ),
        alternative="solve it as an integer program instead: method='milp'",
    )
    cr = np.array([reduced[k][1] for k in binding], dtype=np.int64)  # small: checked above
    if len(binding) == 1:
        return Bound(KnapsackOp(StaticArray(wr[0]), int(cr[0])), (theta,), out_dtype)
    return Bound(MultiKnapsackOp(StaticArray(wr), StaticArray(cr)), (theta,), out_dtype)


def _reduced(weights: np.ndarray, capacity: int) -> tuple[np.ndarray, int]:
    """The same knapsack with the smallest table: weights and capacity divided by the
    weights' gcd ``g`` (``w y <= C`` iff ``(w/g) y <= ⌊C/g⌋`` for integer ``w/g``), the
    capacity clamped to the total weight (every capacity above it admits every subset,
    so the dynamic program takes the same decisions there)."""
    g = math.gcd(*(int(v) for v in weights)) if weights.size else 0
    if g > 1:
        weights, capacity = weights // g, capacity // g
    return weights, min(capacity, _total(weights))


def _total(weights: np.ndarray) -> int:
    """The exact sum of integer weights (``np.sum`` wraps around past ``2**63``)."""
    return sum(int(v) for v in weights)
