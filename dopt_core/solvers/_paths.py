"""Shortest paths of the two standard predict-then-optimise benchmarks.

* :func:`shortest_path_dag` — the H×W grid DAG of Elmachtoub & Grigas (2022) and
  PyEPO: arcs point right and down, one score per arc; solved on the array's device
  by dynamic programming over the anti-diagonals of the grid.
* :func:`shortest_path_grid` — the Warcraft maps of Vlastelica et al. (2020): one cost
  per cell, 8-neighbour moves; Dijkstra on the host or a min-plus relaxation on the
  device, with the same tie rule so that both return the same path.

Both maximise a score, so costs enter as ``θ = -cost``.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_scores
from .._lib._constants import DeviceConstants
from .._lib._compat import device
from .._lib._limits import check_grid_size
from ..backend import backend_for, take_nonnegative
from ..op import Bound, Op, ZeroGradient, op_function
from ._host import Domain, HostSolverOp, check_executor

__all__ = ["grid_dag_arcs", "shortest_path_dag", "shortest_path_grid"]


# ---------------------------------------------------------------------------------
# The grid DAG (PyEPO's shortest-path benchmark)
# ---------------------------------------------------------------------------------
def grid_dag_arcs(grid: tuple[int, int]) -> np.ndarray:
    """The arcs of the H×W grid DAG in PyEPO's order, shape ``(m, 2)`` (tail, head).

    Nodes are numbered row-major, ``v = i·W + j``. Row by row (``i = 0, …, H-1``): first
    the ``W-1`` arcs pointing right in that row, ``(v, v+1)`` for ``j = 0, …, W-2``, then
    (except in the last row) the ``W`` arcs pointing down from that row, ``(v, v+W)``
    for ``j = 0, …, W-1``. There are ``m = H(W-1) + (H-1)W`` arcs (40 for 5×5). This is
    the order of PyEPO's ``shortestPathModel(grid).arcs`` and of the costs its
    ``pyepo.data.shortestpath.genData`` generates. ``H·W`` is at most ``2**22``
    (``ValueError`` beyond: the tables grow with the value of ``grid``).

    Parameters
    ----------
    grid : (int, int)
        ``(H, W)``, both at least 1.

    Example
    -------
    >>> import dopt_core as dc
    >>> dc.solvers.grid_dag_arcs((2, 3)).tolist()
    [[0, 1], [1, 2], [0, 3], [1, 4], [2, 5], [3, 4], [4, 5]]
    """
    h, w = _check_grid(grid)
    return _dag_tables(h, w)[0].copy()


def _check_grid(grid: Any) -> tuple[int, int]:
    try:
        h, w = grid
        h, w = int(h), int(w)
        ok = (h, w) == tuple(grid) and h >= 1 and w >= 1 and h * w >= 2
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"grid must be a pair (H, W) of positive integers with H·W >= 2, got {grid!r}"
        )
    check_grid_size(h, w)
    return h, w


@functools.lru_cache(maxsize=64)
def _dag_tables(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arc list, and for anti-diagonal d and row r the arc entering node (r, d-r)
    from the left (``into_h``) and from above (``into_v``); ``m`` (a padding slot)
    where there is none. Vectorised: ``O(H·W)`` NumPy work, no Python loop per node."""
    # row i holds arcs i(2W-1) .. : its W-1 right arcs, then (i < H-1) its W down arcs
    stride = 2 * w - 1
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    right = rows * stride + cols  # right[i, j], valid for j <= W-2
    down = rows * stride + (w - 1) + cols  # down[i, j], valid for i <= H-2
    m = h * (w - 1) + (h - 1) * w
    v = rows * w + cols
    arcs = np.empty((m, 2), dtype=np.int64)
    r_ok = np.broadcast_to(cols < w - 1, (h, w))
    arcs[right[r_ok]] = np.stack([v[r_ok], v[r_ok] + 1], axis=1)
    d_ok = np.broadcast_to(rows < h - 1, (h, w))
    arcs[down[d_ok]] = np.stack([v[d_ok], v[d_ok] + w], axis=1)
    nd = h + w - 1
    d, r = np.arange(nd)[:, None], np.arange(h)[None, :]
    c = d - r
    into_h = np.where((c >= 1) & (c <= w - 1), r * stride + c - 1, m)
    into_v = np.where((r >= 1) & (c >= 0) & (c <= w - 1), (r - 1) * stride + (w - 1) + c, m)
    return arcs, into_h, into_v


#: the grid DAG's index and path tables, converted once per namespace, device and dtype
_TABLES = DeviceConstants()

#: Largest ``paths × instances`` for which the walk back is one consistency test
#: against every path (:class:`_DagPlan`); beyond, H + W - 2 vectorised steps.
_PATH_TABLE_LIMIT = 1 << 22

#: Most paths of a grid for which the path table is built.
_MAX_TABLE_PATHS = 4096


@dataclass(frozen=True, eq=False)
class _DagPlan:
    """The static schedule of :class:`ShortestPathDagOp` for one grid.

    **Windows.** Diagonal ``d`` is held as the rows ``lo[d], …, H-1`` of a
    ``(H - lo[d], n)`` array (row ``r`` is node ``(r, d - r)``). Rows that are not
    nodes of the grid (``r < 0``, or column ``d - r < 0``) hold -inf: every arc into
    them is the -inf padding slot. ``lo[d] = max(d - W + 1, -k)``: while it grows by
    one per diagonal, the left moves into diagonal ``d`` read rows ``1:`` of diagonal
    ``d - 1`` and the down moves rows ``:-1`` (two slices, no copy); where it stays
    (``k`` rows of -inf padding above row 0 are used up), a -inf row is put on top
    for the down moves. ``k = W - 1`` (no such step at all) unless that pads more rows
    than the grid has (``W - 1 > H``), then ``k = 0``. Every node of the grid gets
    the same two sums and the same maximum as in a plain per-node recursion, so
    values and decisions do not depend on the windows.

    **Tables.** ``index``: the arc feeding each row of every window, first the left
    moves of diagonals ``1, …, D-1`` (block ``d`` at rows ``starts[d-1]:starts[d]``),
    then the down moves in the same layout (``m``: the padding slot).
    ``on_grid``: the rows of the
    stacked decisions that are nodes of the grid.

    **Path table** (at most :data:`_MAX_TABLE_PATHS` paths, else ``None``): ``sign``
    ``(P, len(on_grid))``, +1 where path ``p`` enters a node from above, -1 from the
    left, 0 for the nodes it misses. With ``t`` the 0/1 decisions "entered from above"
    at the nodes, ``sign @ t = H - 1`` (its number of down moves) exactly for the path
    all of whose moves agree with ``t``, which is the walked-back path, and at most
    ``H - 2`` for every other path; ``max(sign @ t - (H - 2), 0)`` is its indicator,
    and ``code @ indicator`` its index (``code``: ``p`` in one row, or ``p // 64`` and
    ``p % 64`` in two rows past 256 paths, small integers, exact in any matmul
    precision). ``arcs`` ``(P, m)``: the arc indicators.

    **Walk back by steps** (more paths or instances): ``slot`` is each arc's row in the
    stacked "left move used" blocks (diagonals ``D-1, …, 1``) followed by the "down
    move used" blocks.
    """

    lo: tuple[int, ...]
    starts: tuple[int, ...]
    index: np.ndarray
    on_grid: np.ndarray
    slot: np.ndarray
    sign: np.ndarray | None
    code: np.ndarray | None
    arcs: np.ndarray | None


@functools.lru_cache(maxsize=64)
def _dag_plan(h: int, w: int) -> _DagPlan:
    _, into_h, into_v = _dag_tables(h, w)
    m = h * (w - 1) + (h - 1) * w
    nd = h + w - 1
    k = w - 1 if w - 1 <= h else 0
    lo = tuple(max(d - w + 1, -k) for d in range(nd))
    sizes = [h - lo[d] for d in range(1, nd)]
    starts = tuple(int(s) for s in np.concatenate([[0], np.cumsum(sizes)]))
    total = starts[-1]
    blocks = []
    for into in (into_h, into_v):
        for d in range(1, nd):
            rows = np.arange(lo[d], h)
            blocks.append(np.where(rows >= 0, into[d, np.maximum(rows, 0)], m))
    index = np.concatenate(blocks).astype(np.int64)
    # position of node (r, d - r) in the stacked decisions, d = 1 .. D-1
    d_all = np.concatenate([np.full(s, d) for d, s in zip(range(1, nd), sizes, strict=True)])
    r_all = np.concatenate([np.arange(lo[d], h) for d in range(1, nd)])
    on_grid = np.flatnonzero((r_all >= 0) & (r_all <= d_all))
    # slots of the walk back by steps: blocks for d = D-1 .. 1, left moves then down moves
    offsets = np.concatenate([[0], np.cumsum(sizes[::-1])])
    rev = dict(zip(range(nd - 1, 0, -1), offsets.tolist(), strict=False))
    slot = np.empty(m, dtype=np.int64)
    for d in range(1, nd):
        rows = np.arange(max(lo[d], 0), h)
        for into, offset in ((into_h, 0), (into_v, total)):
            arc = into[d, rows]
            ok = arc < m
            slot[arc[ok]] = offset + rev[d] + rows[ok] - lo[d]
    sign = code = arcs = None
    count = math.comb(nd - 1, h - 1)
    if count <= _MAX_TABLE_PATHS:
        pos = np.full((nd, h), -1)
        pos[d_all, r_all.clip(0)] = np.where(r_all >= 0, np.arange(total), -1)
        column = np.full(total, -1)
        column[on_grid] = np.arange(on_grid.size)
        sign = np.zeros((count, on_grid.size), dtype=np.float32)
        arcs = np.zeros((count, m))
        d = np.arange(1, nd)
        for p, downs in enumerate(itertools.combinations(range(nd - 1), h - 1)):
            down = np.zeros(nd - 1, dtype=bool)
            down[list(downs)] = True
            rows = np.cumsum(down)  # the row of the node entered at diagonal d
            sign[p, column[pos[d, rows]]] = np.where(down, 1.0, -1.0)
            arcs[p, np.where(down, into_v[d, rows], into_h[d, rows])] = 1.0
        paths = np.arange(count)
        code = (paths if count <= 256 else np.stack([paths // 64, paths % 64])).reshape(-1, count)
        code = code.astype(np.float32)
    # (left writeable: torch.asarray warns on read-only NumPy arrays; never mutated)
    return _DagPlan(lo, starts, index, on_grid, slot, sign, code, arcs)


@dataclass(frozen=True)
class ShortestPathDagOp(ZeroGradient, Op):
    grid: tuple[int, int]
    name: ClassVar[str] = "shortest_path_dag"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        h, w = self.grid
        plan = _dag_plan(h, w)
        lo, starts = plan.lo, plan.starts
        nd = h + w - 1
        dev = device(theta)
        batch = tuple(theta.shape[:-1])
        m = theta.shape[-1]
        n = math.prod(batch)
        dt = theta.dtype
        key = f"{h}x{w}"
        # Layout (row, n): every window below is contiguous. θ with a -inf slot at
        # index m, gathered into the left-move and down-move rows of every window.
        theta_t = xp.permute_dims(xp.reshape(theta, (n, m)), (1, 0))
        minus = xp.full((1, n), -xp.inf, dtype=dt, device=dev)
        pad = xp.concat([theta_t, minus], axis=0)
        tables = take_nonnegative(pad, _TABLES.array("index" + key, plan.index, xp, dev), 0)
        total = starts[-1]
        # value = best score of a path from (0, 0) to each row of the window. Diagonal 0
        # is 0 at the source and -inf elsewhere, so diagonal 1's sums are its arcs'
        # scores themselves (0 + x is x up to the sign of a zero, which no comparison
        # below sees).
        lefts, ups = [tables[: starts[1], ...]], [tables[total : total + starts[1], ...]]
        value = xp.maximum(lefts[0], ups[0])
        for d in range(2, nd):
            a, b = starts[d - 1], starts[d]
            if lo[d] > lo[d - 1]:  # the window shrinks by its top row
                left_in, up_in = value[1:, ...], value[:-1, ...]
            else:
                left_in, up_in = value, xp.concat([minus, value[:-1, ...]], axis=0)
            left = left_in + tables[a:b, ...]
            up = up_in + tables[total + a : total + b, ...]
            lefts.append(left)
            ups.append(up)
            value = xp.maximum(left, up)
        # node entered from above (ties: from the left), in the windows' stacked rows
        took_down = xp.concat(ups, axis=0) > xp.concat(lefts, axis=0)
        if plan.sign is not None and plan.sign.shape[0] * n <= _PATH_TABLE_LIMIT:
            # The walk back from (H-1, W-1) follows took_down, so its path is the one
            # path whose every move agrees with took_down: found for all paths at once
            # by one product with the ±1 table (exact small integers; _DagPlan)
            # instead of H + W - 2 sequential steps.
            on = _TABLES.array("on" + key, plan.on_grid, xp, dev)
            t = xp.astype(take_nonnegative(took_down, on, 0), xp.float32)
            score = _TABLES.array("sign" + key, plan.sign, xp, dev) @ t
            hit = backend_for(score).clamp_min(score - float(h - 2), 0.0)
            code = _TABLES.array("code" + key, plan.code, xp, dev) @ hit
            best = code[0, ...] if code.shape[0] == 1 else code[0, ...] * 64.0 + code[1, ...]
            best = xp.astype(best, xp.int32)
            y = take_nonnegative(_TABLES.array("arcs" + key, plan.arcs, xp, dev, dt), best, 0)
            return xp.reshape(y, (*batch, m)), ()
        # walk back from (H-1, W-1), diagonal by diagonal: `on` marks the path's node
        # in diagonal d's window (its last row, H-1, at d = D-1)
        false = xp.zeros((1, n), dtype=xp.bool, device=dev)
        on = ~false
        used_h, used_v = [], []
        for d in range(nd - 1, 0, -1):
            down_d = on & took_down[starts[d - 1] : starts[d], ...]
            left = on ^ down_d
            used_h.append(left)
            used_v.append(down_d)
            if lo[d] > lo[d - 1]:  # diagonal d-1's window has one more row, on top
                on = xp.concat([false, left], axis=0) | xp.concat([down_d, false], axis=0)
            else:
                on = left | xp.concat([down_d[1:, ...], false], axis=0)
        used = xp.concat(used_h + used_v, axis=0)
        slot = _TABLES.array("slot" + key, plan.slot, xp, dev)
        y = xp.astype(take_nonnegative(used, slot, 0), dt)
        return xp.reshape(xp.permute_dims(y, (1, 0)), (*batch, m)), ()


@op_function
def shortest_path_dag(theta: Any, /, grid: tuple[int, int], *, check_finite: bool = True) -> Bound:
    r"""Best monotone path on an H×W grid DAG (PyEPO's shortest-path benchmark).

    Nodes ``(i, j)`` of an ``H × W`` grid, arcs pointing right and down, paths from
    ``(0, 0)`` to ``(H-1, W-1)``. With one score per arc (``θ = -cost``),

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \mathcal P} \langle \theta, y \rangle,

    ``𝒫`` the arc indicators of the paths (each uses ``H + W - 2`` arcs). Arcs are in
    PyEPO's order (:func:`grid_dag_arcs`: row by row, the right arcs of the row, then
    the down arcs leaving it), so ``shortest_path_dag(-c, grid)`` is the solution of
    PyEPO's ``shortestPathModel(grid)`` for costs ``c`` (Elmachtoub & Grigas, "Smart
    'Predict, then Optimize'", 2022; Tang & Khalil, PyEPO, 2022).

    Algorithm: dynamic programming over the ``H + W - 1`` anti-diagonals of the grid
    (every node of a diagonal is updated at once, for the whole batch), then a walk
    back of ``H + W - 2`` vectorised steps (for grids with at most 4096 paths, one
    product of the DP's decisions with a table of every path instead: the walked-back
    path is the only one all of whose moves agree with them); everything stays on ``theta``'s device and
    traces under ``jax.jit``. Ties: a node reached equally well from the left and
    from above is reached from the left.

    Parameters
    ----------
    theta : array, shape ``(..., m)``, ``m = H(W-1) + (H-1)W``
        Arc scores (negated costs); leading axes are batch axes.
    grid : (int, int)
        ``(H, W)``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores (unchecked, an instance whose
        every path scores -inf or NaN gets an arbitrary path).

    Returns
    -------
    array, shape ``(..., m)``, ``theta``'s dtype and device
        Arc indicator of the best path. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> cost = np.array([1.0, 5.0, 2.0, 1.0, 5.0, 1.0, 1.0])  # grid (2, 3), arcs as above
    >>> dc.solvers.shortest_path_dag(-cost, grid=(2, 3))
    array([1., 0., 0., 1., 0., 0., 1.])
    """
    h, w = _check_grid(grid)
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    m = h * (w - 1) + (h - 1) * w
    if theta.shape[-1] != m:
        raise ValueError(
            f"theta must have {m} arc scores on its last axis for grid {(h, w)} "
            f"(H(W-1) + (H-1)W), got shape {tuple(theta.shape)}"
        )
    return Bound(ShortestPathDagOp((h, w)), (theta,), out_dtype)


# ---------------------------------------------------------------------------------
# Warcraft grid: vertex costs, 8 neighbours
# ---------------------------------------------------------------------------------
#: Neighbour offsets in tie-breaking order (first wins).
_MOVES = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@functools.lru_cache(maxsize=64)
def _grid_neighbours(h: int, w: int) -> np.ndarray:
    """``nb[v, k]`` = the neighbour of cell ``v`` in direction ``_MOVES[k]``, or ``h*w``."""
    nb = np.full((h * w, len(_MOVES)), h * w, dtype=np.int64)
    for i in range(h):
        for j in range(w):
            for k, (di, dj) in enumerate(_MOVES):
                a, b = i + di, j + dj
                if 0 <= a < h and 0 <= b < w:
                    nb[i * w + j, k] = a * w + b
    return nb


@functools.lru_cache(maxsize=64)
def _grid_arcs(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR structure of the 8-neighbour grid: ``indptr``, ``indices`` (heads), tails."""
    nb = _grid_neighbours(h, w)
    n = h * w
    tail = np.repeat(np.arange(n), nb.shape[1])
    head = nb.reshape(-1)
    keep = head < n
    tail, head = tail[keep], head[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(tail, minlength=n))])
    return indptr, head, tail


def _dijkstra_block(theta: np.ndarray, *, shape: tuple[int, int]) -> np.ndarray:
    """Host kernel for a block of maps ``(k, H, W)``: one Dijkstra run on the
    block-diagonal graph of all ``k`` maps (``scipy.sparse.csgraph.dijkstra`` with every
    map's source and ``min_only=True``; maps do not connect, so each cell's nearest
    source is its own map's)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    if _positive_scores(theta).any():  # never reached through the Op (its Domain); a guard
        raise ValueError(_POSITIVE)
    h, w = shape
    n = h * w
    k = theta.shape[0]
    indptr, head, tail = _grid_arcs(h, w)
    e = head.shape[0]
    cost = -np.asarray(theta, dtype=np.float64).reshape(k, n)
    shift = (n * np.arange(k))[:, None]
    heads = (head[None, :] + shift).reshape(-1)
    tails = (tail[None, :] + shift).reshape(-1)
    ptr = np.concatenate([(indptr[:-1][None, :] + e * np.arange(k)[:, None]).reshape(-1), [k * e]])
    sources = n * np.arange(k)
    # arc u -> v costs c(v); explicit zeros are arcs for csgraph's Dijkstra. dist leaves
    # the source's own cost out (it is on every path), as the device method does.
    arc_cost = cost.reshape(-1)[heads]
    graph = csr_matrix((arc_cost, heads, ptr), shape=(k * n, k * n))
    dist = dijkstra(graph, directed=True, indices=sources, min_only=True)
    # fewest cells among the optimal paths: breadth-first search over the tight arcs
    tight = dist[tails] + arc_cost == dist[heads]
    tgraph = csr_matrix(
        (np.ones(int(tight.sum())), (tails[tight], heads[tight])), shape=(k * n, k * n)
    )
    hops = dijkstra(tgraph, directed=True, indices=sources, min_only=True, unweighted=True)
    return _backtrack_host(dist.reshape(k, n), hops.reshape(k, n), _grid_neighbours(h, w)).reshape(
        k, h, w
    )


def _backtrack_host(dist: np.ndarray, hops: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Cell indicators ``(k, n)`` of the paths ending at the last cell, walking back to
    the neighbour with the least ``(dist, hops)``, the first in ``_MOVES`` order on ties
    (the device method's rule)."""
    k, n = dist.shape
    inf_col = np.full((k, 1), np.inf)
    dpad = np.concatenate([dist, inf_col], axis=1)
    hpad = np.concatenate([hops, inf_col], axis=1)
    rows = np.arange(k)
    cur = np.full(k, n - 1)
    y = np.zeros((k, n))
    y[:, n - 1] = 1.0
    for _ in range(n - 1):
        active = cur != 0
        if not active.any():
            break
        cand = nb[cur]
        d = np.take_along_axis(dpad, cand, axis=1)
        hk = np.where(
            d == d.min(axis=1, keepdims=True), np.take_along_axis(hpad, cand, axis=1), np.inf
        )
        cur = np.where(active, cand[rows, np.argmin(hk, axis=1)], cur)
        y[rows, cur] = 1.0
    return y


_POSITIVE = (
    "theta must be <= 0 everywhere: shortest_path_grid takes scores theta = -cost with "
    "non-negative cell costs (Dijkstra does not terminate on negative cycles)"
)


def _positive_scores(block: np.ndarray) -> np.ndarray:
    """Maps of a block ``(k, H, W)`` with a positive score (a negative cost)."""
    return np.any(block > 0, axis=tuple(range(1, block.ndim)))


@dataclass(frozen=True)
class GridDijkstraOp(HostSolverOp, Op):
    executor: Any = field(default=None, compare=True)
    nan_on_error: bool = False
    chunk_size: Any = None
    name: ClassVar[str] = "shortest_path_grid"
    event_ndim: ClassVar[int] = 2
    batched_kernel: ClassVar[bool] = True

    def kernel(self, event: tuple[int, ...]) -> Any:
        return functools.partial(_dijkstra_block, shape=event)

    def domain(self) -> Domain:
        return Domain(_positive_scores, _POSITIVE)


def _shifted_minima(dist: Any, hops: Any, h: int, w: int, *, xp: Any) -> tuple[Any, Any]:
    """Per cell: the least neighbour ``dist`` and the least ``hops`` among the neighbours
    attaining it (the same numbers as the gather in the traced branch)."""
    batch = tuple(dist.shape[:-1])
    dev = device(dist)
    inf = xp.inf

    def pad(a: Any) -> Any:
        a = xp.reshape(a, (*batch, h, w))
        col = xp.full((*batch, h, 1), inf, dtype=a.dtype, device=dev)
        a = xp.concat([col, a, col], axis=-1)
        row = xp.full((*batch, 1, w + 2), inf, dtype=a.dtype, device=dev)
        return xp.concat([row, a, row], axis=-2)

    pd, ph = pad(dist), pad(hops)
    nd = [pd[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w] for di, dj in _MOVES]
    nh = [ph[..., 1 + di : 1 + di + h, 1 + dj : 1 + dj + w] for di, dj in _MOVES]
    best = nd[0]
    for a in nd[1:]:
        best = xp.minimum(best, a)
    fewest = xp.where(nd[0] == best, nh[0], inf)
    for a, b in zip(nd[1:], nh[1:], strict=True):
        fewest = xp.minimum(fewest, xp.where(a == best, b, inf))
    n = h * w
    return xp.reshape(best, (*batch, n)), xp.reshape(fewest, (*batch, n))


@dataclass(frozen=True)
class GridRelaxationOp(ZeroGradient, Op):
    traced: bool = False
    name: ClassVar[str] = "shortest_path_grid"
    reads_values: ClassVar[bool] = True  # eagerly, the sweeps stop once nothing improves

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        h, w = theta.shape[-2], theta.shape[-1]
        n = h * w
        batch = tuple(theta.shape[:-2])
        dev = device(theta)
        dt = theta.dtype
        inf = xp.inf
        cost = xp.reshape(-theta, (*batch, n))
        cells = xp.arange(n, device=dev)
        source = cells == 0
        nb_np = _grid_neighbours(h, w)
        nb = xp.asarray(nb_np, device=dev)
        nb_flat = xp.reshape(nb, (-1,))
        inf_col = xp.full((*batch, 1), inf, dtype=dt, device=dev)
        # dist: cost of reaching each cell, the source's own cost left out (as in the host
        # kernel, so that both sum in the same order); hops: cells on that path
        dist = xp.where(source, xp.zeros((*batch, n), dtype=dt, device=dev), inf)
        hops = xp.where(source, xp.ones((*batch, n), dtype=dt, device=dev), inf)
        moves = (*batch, n, len(_MOVES))
        sweeps = 0
        while True:
            # Jacobi sweep of the lexicographic (cost, number of cells) relaxation
            if (
                self.traced
            ):  # one gather of the 8 neighbours' labels per cell: small graphs to compile
                nd = xp.reshape(
                    xp.take(xp.concat([dist, inf_col], axis=-1), nb_flat, axis=-1), moves
                )
                nh = xp.reshape(
                    xp.take(xp.concat([hops, inf_col], axis=-1), nb_flat, axis=-1), moves
                )
                best = xp.min(nd, axis=-1)
                fewest = xp.min(xp.where(nd == xp.expand_dims(best, axis=-1), nh, inf), axis=-1)
            else:  # 8 shifted views of the padded map: faster in eager libraries
                best, fewest = _shifted_minima(dist, hops, h, w, xp=xp)
            cand = best + cost
            better = ((cand < dist) | ((cand == dist) & (fewest + 1 < hops))) & ~source
            new_dist = xp.where(better, cand, dist)
            new_hops = xp.where(better, fewest + 1, hops)
            sweeps += 1
            if self.traced:
                dist, hops = new_dist, new_hops
                if sweeps >= n - 1:
                    break
                continue
            done = not bool(xp.any(better))
            dist, hops = new_dist, new_hops
            if done or sweeps >= n:
                break
        # walk back from the last cell with the host's tie rule
        dpad = xp.concat([dist, inf_col], axis=-1)
        hpad = xp.concat([hops, inf_col], axis=-1)
        # the library's default integer (int32 in JAX without x64)
        cur = xp.full(batch, n - 1, dtype=xp.asarray(0, device=dev).dtype, device=dev)
        on_path = xp.expand_dims(cur, axis=-1) == cells
        for _ in range(n - 1):
            cand = xp.reshape(xp.take(nb, xp.reshape(cur, (-1,)), axis=0), (*batch, len(_MOVES)))
            d = xp.take_along_axis(dpad, cand, axis=-1)
            hk = xp.where(
                d == xp.min(d, axis=-1, keepdims=True), xp.take_along_axis(hpad, cand, axis=-1), inf
            )
            k = xp.argmin(hk, axis=-1, keepdims=True)
            nxt = xp.take_along_axis(cand, k, axis=-1)[..., 0]
            cur = xp.where(cur == 0, cur, nxt)
            on_path = on_path | (xp.expand_dims(cur, axis=-1) == cells)
            if not self.traced and not bool(xp.any(cur != 0)):
                break
        y = xp.reshape(xp.astype(on_path, dt), theta.shape)
        # maps with a NaN or a positive score (unchecked under jax.jit) have no
        # meaningful path: NaN, as the Dijkstra method returns for them
        ok = xp.all(theta <= 0, axis=(-2, -1))
        return xp.where(ok[..., None, None], y, xp.asarray(xp.nan, dtype=dt, device=dev)), ()


@op_function(event_ndim=2)
def shortest_path_grid(
    theta: Any,
    /,
    *,
    method: str = "dijkstra",
    executor: Any = None,
    check_finite: bool = True,
) -> Bound:
    r"""Cheapest 8-neighbour path across a grid of vertex costs (Warcraft maps).

    Cells ``(i, j)`` of an ``H × W`` map with costs ``c = -θ ≥ 0``; a path goes from
    the top-left cell to the bottom-right cell through cells adjacent horizontally,
    vertically or diagonally, and costs the sum of the costs of **all** the cells it
    visits, both ends included (the convention of Vlastelica et al., "Differentiation
    of Blackbox Combinatorial Solvers", ICLR 2020, and their Warcraft dataset):

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \mathcal P} \langle \theta, y \rangle
        = \operatorname*{argmin}_{y \in \mathcal P} \langle c, y \rangle ,

    ``𝒫`` the vertex indicators of the paths. Among optimal paths the one with the
    fewest cells is returned; among those, walking back from the bottom-right cell,
    the predecessor is the first neighbour in the order up-left, up, up-right, left,
    right, down-left, down, down-right. Both methods apply this rule, so they return
    the same path (exactly so when path costs are computed without rounding, e.g. for
    integer costs; float rounding can only change the choice among near-ties).

    Parameters
    ----------
    theta : array, shape ``(..., H, W)``, all entries ``<= 0``
        Cell scores, the negated non-negative cell costs; leading axes are batch axes.
    method : {"dijkstra", "device"}
        ``"dijkstra"``: ``scipy.sparse.csgraph.dijkstra`` on the host, one transfer each
        way, instances optionally spread over ``executor``. ``"device"``: Bellman-Ford
        style min-plus relaxation on ``theta``'s device (8 shifted minima per sweep,
        until nothing changes, at most ``H·W`` sweeps); under ``jax.jit`` it always
        runs ``H·W - 1`` sweeps (no data-dependent stopping), which is exact but slow to
        compile for large maps.
    executor : concurrent.futures.Executor, optional
        Spread the instances over it (``method="dijkstra"`` only).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(..., H, W)``, ``theta``'s dtype and device
        Indicator of the cells on the path. Zero derivative almost everywhere.

    Raises
    ------
    ValueError
        If a score is positive (a negative cost), checked when ``theta``'s values are
        known. Under ``jax.jit`` (or other tracing) nothing can be raised: a map with
        a positive score, or with a NaN, gives a NaN map (both methods), so that no
        input can make Dijkstra loop on a negative cycle. Under :func:`~dopt_core.perturbed`
        additive noise can make scores positive: use ``multiplicative=True``, which
        keeps their signs.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> cost = np.array([[1.0, 9.0, 9.0], [9.0, 1.0, 9.0], [1.0, 1.0, 1.0]])
    >>> dc.solvers.shortest_path_grid(-cost)
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    theta, xp, out_dtype = check_scores(theta, min_ndim=2, check_finite=check_finite)
    if method not in ("dijkstra", "device"):
        raise ValueError(f'method must be "dijkstra" or "device", got {method!r}')
    if theta.shape[-2] == 0:
        raise ValueError(f"theta must have a non-empty (H, W) map, got shape {tuple(theta.shape)}")
    executor = check_executor(executor)
    traced = backend_for(theta).is_traced(theta)
    if not traced and bool(xp.any(theta > 0)):
        raise ValueError(
            "theta must be <= 0 everywhere: shortest_path_grid takes scores theta = -cost "
            "with non-negative cell costs (under dc.perturbed, additive noise makes scores "
            "positive: use multiplicative=True, which keeps their signs)"
        )
    if method == "device":
        if executor is not None:
            raise ValueError('executor applies to method="dijkstra" only')
        return Bound(GridRelaxationOp(traced=traced), (theta,), out_dtype)
    return Bound(GridDijkstraOp(executor=executor, nan_on_error=traced), (theta,), out_dtype)
