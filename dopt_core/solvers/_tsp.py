"""Travelling salesman tours: Held-Karp on the device, HiGHS with subtour cuts on the host."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_choice, check_positive, check_scores
from .._lib._compat import device
from .._lib._limits import MAX_HELD_KARP_CELLS, check_size
from ..backend import backend_for
from ..op import Bound, Op, ZeroGradient, op_function
from ._host import HostSolverOp, check_executor
from ._lp import mip_options

__all__ = ["tsp"]

#: ``method="auto"`` runs the dynamic program up to this many nodes, HiGHS beyond.
AUTO_DP_NODES = 12


# ----------------------------------------------------------------------------- Held-Karp


@functools.lru_cache(maxsize=32)
def _held_karp_tables(n: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Static index tables of the Held-Karp recursion for ``n`` nodes (node 0 fixed).

    The ``m = n - 1`` other nodes are numbered ``0..m-1`` (node ``v + 1``). Level ``k``
    holds the subsets of size ``k`` in increasing bit-mask order; for level ``k >= 2``
    ``prev[s, j]`` is the position, in level ``k - 1``, of subset ``s`` without ``j``
    (0 when ``j`` is not in ``s``) and ``member[s, j]`` says whether ``j`` is in ``s``.
    """
    m = n - 1
    masks = np.arange(1 << m)
    sizes = np.array([bin(int(s)).count("1") for s in masks])
    levels = [masks[sizes == k] for k in range(m + 1)]
    pos = np.zeros(1 << m, dtype=np.int64)
    for lv in levels:
        pos[lv] = np.arange(lv.size)
    bits = 1 << np.arange(m)
    out = []
    for k in range(1, m + 1):
        lv = levels[k]
        member = (lv[:, None] & bits[None, :]) != 0
        prev = np.where(member, pos[lv[:, None] ^ bits[None, :]], 0)
        out.append((prev, member))
    return tuple(out)


def _held_karp(w: Any, xp: Any) -> Any:
    """Best tours of a batch ``w`` of symmetric edge scores ``(B, n, n)``: ``(B, n, n)`` adjacency."""
    bsz, n = w.shape[0], w.shape[-1]
    m = n - 1
    dev = device(w)
    dt = w.dtype
    index = xp.asarray(0, device=dev).dtype  # the library's default integer (int32 in JAX)
    np_index = np.int32 if xp.iinfo(index).bits == 32 else np.int64
    # the tables, on the device once, already in the index dtype (no conversion op)
    tables = [
        (xp.asarray(np.reshape(p, (-1,)).astype(np_index), device=dev), xp.asarray(mb, device=dev))
        for p, mb in _held_karp_tables(n)
    ]
    inner = w[:, 1:, 1:]  # inner[b, i, j]: score of the edge between nodes i + 1 and j + 1
    into = xp.permute_dims(inner, (0, 2, 1))[:, None, :, :]  # [b, ·, j, i] = score(i → j)
    neg = xp.asarray(-xp.inf, dtype=dt, device=dev)
    # level 1: dp[b, s, j] = score(0 → j) for the singleton s = {j}
    eye = xp.asarray(np.eye(m, dtype=bool), device=dev)
    dp = xp.where(eye[None, :, :], w[:, 0:1, 1:], neg)
    pointers = [None]
    for k in range(2, m + 1):
        prev, member = tables[k - 1]
        c = member.shape[0]
        # cand[b, s, j, i] = dp[b, s \ {j}, i] + score(i → j); i outside s \ {j} is -inf there
        gathered = xp.reshape(xp.take(dp, prev, axis=1), (bsz, c, m, m))
        cand = gathered + into
        best = xp.max(cand, axis=-1)
        arg = xp.argmax(cand, axis=-1)
        dp = xp.where(member[None, :, :], best, neg)
        pointers.append(arg)  # argmax gives the default integer
    # close the tour: back to node 0 from the last node j
    total = dp[:, 0, :] + w[:, 1:, 0]
    j = xp.argmax(total, axis=-1)  # (B,)
    s = xp.zeros((bsz,), dtype=index, device=dev)
    order = [j]
    for k in range(m, 1, -1):
        prev, _ = tables[k - 1]
        flat = s * m + j
        ptr = xp.reshape(pointers[k - 1], (bsz, -1))
        i = xp.take_along_axis(ptr, flat[:, None], axis=-1)[:, 0]
        s = xp.take(prev, flat, axis=0)
        j = i
        order.append(j)
    # order = [last, ..., first] in nodes 0..m-1; tour 0 → first → ... → last → 0
    seq = xp.stack(order[::-1], axis=-1) + 1  # (B, m): the nodes after 0, in tour order
    zero = xp.zeros((bsz, 1), dtype=index, device=dev)
    ar = xp.arange(n, dtype=index, device=dev)
    here = xp.astype(xp.concat([zero, seq], axis=-1)[..., None] == ar, dt)  # (B, step, node)
    there = xp.astype(xp.concat([seq, zero], axis=-1)[..., None] == ar, dt)
    y = xp.matmul(xp.permute_dims(here, (0, 2, 1)), there)  # y[v, w] = 1 for a step v → w
    y = y + xp.permute_dims(y, (0, 2, 1))
    return y


@dataclass(frozen=True)
class TspDPOp(ZeroGradient, Op):
    name: ClassVar[str] = "tsp"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        n = theta.shape[-1]
        batch = tuple(theta.shape[:-2])
        w = xp.reshape(theta, (-1, n, n))
        w = w + xp.permute_dims(w, (0, 2, 1))  # <θ, y> only sees θ_ij + θ_ji per edge
        if w.shape[0] == 0:
            y = xp.zeros(w.shape, dtype=theta.dtype, device=device(theta))
        else:
            y = _held_karp(w, xp)
        return xp.reshape(y, (*batch, n, n)), ()


# ------------------------------------------------------------------------ HiGHS + cuts


def _components(n: int, edges: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in edges:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for v in range(n):
        groups.setdefault(root(v), []).append(v)
    return list(groups.values())


def _tsp_milp_one(theta: np.ndarray, *, time_limit: float | None = None) -> np.ndarray:
    """One tour by HiGHS: degree-2 constraints, subtour cuts added until one cycle remains
    (Dantzig, Fulkerson & Johnson 1954), each round a new ``scipy.optimize.milp`` call."""
    from scipy.optimize import Bounds, LinearConstraint
    from scipy.optimize import milp as scipy_milp

    n = theta.shape[-1]
    iu, ju = np.triu_indices(n, k=1)
    e = iu.size
    score = np.asarray(theta[iu, ju] + theta[ju, iu], dtype=np.float64)
    degree = np.zeros((n, e))
    degree[iu, np.arange(e)] = 1.0
    degree[ju, np.arange(e)] = 1.0
    cuts: list[np.ndarray] = []
    options = mip_options(time_limit)  # optimal, not within HiGHS' default 1e-4 gap
    for _ in range(10 * 2 ** min(n, 20)):  # each round adds a new cut: finitely many rounds
        cons = [LinearConstraint(degree, 2.0, 2.0)]
        if cuts:
            rows = np.stack([c for c, _ in cuts])
            cons.append(LinearConstraint(rows, -np.inf, np.array([b for _, b in cuts])))
        res = scipy_milp(
            -score,
            integrality=np.ones(e),
            bounds=Bounds(0.0, 1.0),
            constraints=cons,
            options=options,
        )
        if res.status != 0 or res.x is None:
            raise ValueError(f"HiGHS status {res.status}: {res.message}")
        x = np.round(res.x)
        chosen = [(int(iu[k]), int(ju[k])) for k in np.flatnonzero(x > 0.5)]
        comps = _components(n, chosen)
        if len(comps) == 1:
            y = np.zeros((n, n))
            y[iu, ju] = x
            return y + y.T
        for comp in comps:  # sum of the edges inside S <= |S| - 1
            inside = np.isin(iu, comp) & np.isin(ju, comp)
            cuts.append((inside.astype(np.float64), float(len(comp) - 1)))
    raise ValueError("subtour elimination did not converge")  # pragma: no cover


@dataclass(frozen=True)
class TspMilpOp(HostSolverOp, Op):
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    time_limit: float | None = None
    name: ClassVar[str] = "tsp"
    event_ndim: ClassVar[int] = 2

    def kernel(self, event: tuple[int, ...]) -> Any:
        return functools.partial(_tsp_milp_one, time_limit=self.time_limit)


@op_function(event_ndim=2)
def tsp(
    theta: Any,
    /,
    *,
    method: str = "auto",
    executor: Any = None,
    check_finite: bool = True,
    time_limit: float | None = None,
) -> Bound:
    r"""Best travelling-salesman tour of a complete graph, exactly.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \mathcal T_n} \langle \theta, y \rangle
        = \operatorname*{argmax}_{y \in \mathcal T_n} \sum_{i < j} (\theta_{ij} + \theta_{ji})\, y_{ij}

    over the tours :math:`\mathcal T_n` of ``n`` nodes, each given by its symmetric
    0/1 adjacency matrix (two ones in every row, one cycle through every node). The
    solver maximises: for edge costs (distances, PyEPO's TSP costs) pass
    ``θ = -cost``. Only the symmetric part of ``θ`` matters and its diagonal is
    ignored.

    Two exact methods:

    * ``"dp"``: the Held-Karp dynamic program (Held & Karp 1962; Bellman 1962) over
      (subset of visited nodes, last node), ``O(2^n n^2)`` time and ``O(2^n n)``
      memory per instance, every subset of a size at once and the whole batch in
      each array operation, on ``theta``'s device (traces under ``jax.jit``). Ties go
      to the first maximiser in node order. Allowed while ``2^(n-1) (n-1)^2 <= 2^22``
      (``n <= 15``; a ``ValueError`` naming ``theta`` beyond).
    * ``"milp"``: per instance on the host, the degree-2 integer program solved by
      HiGHS (``scipy.optimize.milp``) with subtour-elimination cuts
      :math:`\sum_{i<j \in S} y_{ij} \le |S| - 1` added lazily, for every subtour of
      the current solution, until it is one cycle (Dantzig, Fulkerson & Johnson
      1954). Spread over an ``executor`` like :func:`milp`.

    ``"auto"`` (default) takes ``"dp"`` for ``n <= 12`` and ``"milp"`` beyond.

    Parameters
    ----------
    theta : array, shape ``(..., n, n)``, ``n >= 3``
        Edge scores; leading axes are batch axes.
    method : {"auto", "dp", "milp"}
        The algorithm (above).
    executor : concurrent.futures.Executor, optional
        Spread the instances over it (``method="milp"`` only).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.
    time_limit : float, optional
        Seconds HiGHS may spend per round of cuts (``method="milp"`` only: a
        ``ValueError`` when the dynamic program runs); an instance that reaches it
        fails with :class:`SolverError`.

    Returns
    -------
    array, shape ``(..., n, n)``, ``theta``'s dtype and device
        The symmetric adjacency matrix of the best tour. Zero derivative almost
        everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> pts = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    >>> dist = np.linalg.norm(pts[:, None] - pts[None, :], axis=-1)
    >>> dc.solvers.tsp(-dist)  # the square's perimeter, not its diagonals
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.],
           [1., 1., 0., 0.],
           [1., 1., 0., 0.]])
    """
    theta, _, out_dtype = check_scores(theta, min_ndim=2, check_finite=check_finite)
    n = theta.shape[-1]
    if theta.shape[-2] != n:
        raise ValueError(
            f"theta must have shape (..., n, n) (square edge scores), got {tuple(theta.shape)}"
        )
    if n < 3:
        raise ValueError(f"theta must have n >= 3 nodes (a tour needs three), got n = {n}")
    method = check_choice(method, name="method", choices=("auto", "dp", "milp"))
    if method == "auto":
        if executor is not None and n <= AUTO_DP_NODES:
            raise ValueError(
                f"executor applies to method='milp' only (method='auto' runs the device "
                f"dynamic program for n <= {AUTO_DP_NODES})"
            )
        if time_limit is not None and n <= AUTO_DP_NODES:
            raise ValueError(
                f"time_limit applies to method='milp' only (method='auto' runs the device "
                f"dynamic program for n <= {AUTO_DP_NODES})"
            )
        method = "dp" if n <= AUTO_DP_NODES else "milp"
    if time_limit is not None:
        time_limit = check_positive(time_limit, name="time_limit")
    if method == "dp":
        if executor is not None:
            raise ValueError("executor applies to method='milp' only")
        if time_limit is not None:
            raise ValueError("time_limit applies to method='milp' only")
        check_size(
            2 ** (n - 1) * (n - 1) ** 2,
            limit=MAX_HELD_KARP_CELLS,
            name="theta",
            what=f"the Held-Karp dynamic program for n = {n} nodes (2^(n-1)·(n-1)^2 per instance)",
            alternative="use method='milp'",
        )
        return Bound(TspDPOp(), (theta,), out_dtype)
    traced = backend_for(theta).is_traced(theta)
    op = TspMilpOp(check_executor(executor), traced, None, time_limit)
    return Bound(op, (theta,), out_dtype)
