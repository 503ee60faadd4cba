"""Host solvers on graphs: assignment, spanning trees, arborescences.

Each runs per-instance NumPy/SciPy code on the host through one
:func:`~dopt_core.backend.host_call` (one transfer each way) and accepts
``executor=`` to spread the instances over a :class:`concurrent.futures.Executor`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_int, check_scores
from ..backend import backend_for
from ..op import Bound, Op, op_function
from ._host import HostSolverOp, StaticArray, check_executor, static_array

__all__ = ["arborescence", "linear_assignment", "spanning_tree"]


# ---------------------------------------------------------------------------------
# Linear assignment
# ---------------------------------------------------------------------------------
def _assignment_one(theta: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(theta, maximize=True)
    y = np.zeros(theta.shape)
    y[rows, cols] = 1.0
    return y


@dataclass(frozen=True)
class LinearAssignmentOp(HostSolverOp, Op):
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    name: ClassVar[str] = "linear_assignment"
    event_ndim: ClassVar[int] = 2

    def kernel(self, event: tuple[int, ...]) -> Any:
        return _assignment_one


@op_function(event_ndim=LinearAssignmentOp.event_ndim)
def linear_assignment(theta: Any, /, *, executor: Any = None, check_finite: bool = True) -> Bound:
    r"""Best permutation matrix for a square score matrix (Hungarian algorithm).

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{P \in \mathcal P_n}
        \langle \theta, P \rangle = \sum_{ij} \theta_{ij} P_{ij} ,

    ``𝒫ₙ`` the ``n × n`` permutation matrices (``P[i, j] = 1``: row ``i`` is assigned
    to column ``j``). For an assignment cost ``C`` use ``θ = -C``. Solved on the host
    by ``scipy.optimize.linear_sum_assignment(θ, maximize=True)`` (Crouse's shortest
    augmenting path variant of the Hungarian algorithm), one instance at a time.

    Parameters
    ----------
    theta : array, shape ``(..., n, n)``
        Scores; leading axes are batch axes.
    executor : concurrent.futures.Executor, optional
        Spread the instances over it, in chunks.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(..., n, n)``, ``theta``'s dtype and device
        Permutation matrices. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.linear_assignment(np.array([[1.0, 5.0], [4.0, 3.0]]))
    array([[0., 1.],
           [1., 0.]])
    """
    theta, _, out_dtype = check_scores(theta, min_ndim=2, check_finite=check_finite)
    if theta.shape[-1] != theta.shape[-2]:
        raise ValueError(
            f"theta must be square on its last two axes (..., n, n), got shape {tuple(theta.shape)}"
        )
    traced = backend_for(theta).is_traced(theta)
    return Bound(LinearAssignmentOp(check_executor(executor), traced), (theta,), out_dtype)


# ---------------------------------------------------------------------------------
# Spanning trees
# ---------------------------------------------------------------------------------
def _components(num_nodes: int, edges: np.ndarray) -> int:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    g = csr_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(num_nodes, num_nodes))
    return int(connected_components(g, directed=False)[0])


def _spanning_tree_one(theta: np.ndarray, *, edges: StaticArray, num_nodes: int) -> np.ndarray:
    """Maximum spanning forest through ``scipy.sparse.csgraph.minimum_spanning_tree``.

    csgraph reads a zero weight as a missing edge, and every spanning forest of a graph
    has the same number of edges, so the minimum is taken over weights ``w = 1 + rank``
    where ``rank`` is the dense rank of ``-θ`` (best score → 1): the same order and the
    same ties as θ at any magnitude (a shift like ``max θ - θ + 1`` would round scores
    below 1e-16 apart into ties).
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    e = edges.array
    t = np.asarray(theta, dtype=np.float64)
    w = 1.0 + np.unique(-t, return_inverse=True)[1].astype(np.float64)  # dense rank of -θ
    u, v = np.minimum(e[:, 0], e[:, 1]), np.maximum(e[:, 0], e[:, 1])
    g = csr_matrix((w, (u, v)), shape=(num_nodes, num_nodes))
    tree = minimum_spanning_tree(g).tocoo()
    lookup = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(u, v, strict=True))}
    y = np.zeros(len(e))
    for a, b in zip(tree.row, tree.col, strict=True):
        a, b = int(a), int(b)
        y[lookup[(min(a, b), max(a, b))]] = 1.0
    return y


@dataclass(frozen=True)
class SpanningTreeOp(HostSolverOp, Op):
    edges: StaticArray
    num_nodes: int
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    name: ClassVar[str] = "spanning_tree"
    event_ndim: ClassVar[int] = 1

    def kernel(self, event: tuple[int, ...]) -> Any:
        return functools.partial(_spanning_tree_one, edges=self.edges, num_nodes=self.num_nodes)


def _check_edges(edges: Any, num_nodes: int) -> np.ndarray:
    e = static_array(edges, name="edges", dtype=np.int64)
    if e.size == 0:  # [] or any empty array: no edges
        e = e.reshape(0, 2)
    if e.ndim != 2 or e.shape[1] != 2:
        raise ValueError(f"edges must have shape (m, 2) (one (u, v) pair per edge), got {e.shape}")
    if e.size and (e.min() < 0 or e.max() >= num_nodes):
        raise ValueError(
            f"edges must hold node indices in [0, num_nodes) = [0, {num_nodes}), got {e.min()}..{e.max()}"
        )
    if np.any(e[:, 0] == e[:, 1]):
        k = int(np.flatnonzero(e[:, 0] == e[:, 1])[0])
        raise ValueError(f"edges must not contain self-loops, edge {k} is {tuple(e[k])}")
    pairs = np.sort(e, axis=1)
    uniq, counts = (
        np.unique(pairs, axis=0, return_counts=True) if len(e) else (pairs, np.array([], int))
    )
    if np.any(counts > 1):
        dup = tuple(int(x) for x in uniq[np.flatnonzero(counts > 1)[0]])
        raise ValueError(
            f"edges must not repeat a node pair (undirected), {dup} appears more than once"
        )
    return e


@op_function
def spanning_tree(
    theta: Any,
    /,
    edges: Any,
    num_nodes: int,
    *,
    forest: bool = False,
    executor: Any = None,
    check_finite: bool = True,
) -> Bound:
    r"""Maximum-score spanning tree (or forest) of an undirected graph, as an edge indicator.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \mathcal T} \langle \theta, y \rangle ,

    ``𝒯`` the indicators of the spanning trees of the graph ``(V, E)`` with
    ``V = {0, …, num_nodes-1}`` and ``E`` = ``edges`` (with ``forest=True``: the
    spanning forests, one spanning tree per connected component). Every spanning tree
    has ``num_nodes - 1`` edges, so negative scores are still picked when needed. For a
    minimum spanning tree of weights ``w`` use ``θ = -w``.

    Solved on the host by Kruskal's greedy algorithm as implemented in
    ``scipy.sparse.csgraph.minimum_spanning_tree``, on the weights ``1 + rank``, where
    ``rank`` is the dense rank of ``-θ`` (0 for the best score, equal scores sharing a
    rank): csgraph reads a zero weight as an absent edge, and the greedy algorithm
    depends only on the order of the weights, so these weights give the same trees and
    the same ties as θ at any magnitude (no rounding of close scores into ties).

    Parameters
    ----------
    theta : array, shape ``(..., m)``
        One score per edge; leading axes are batch axes.
    edges : array-like of int, shape ``(m, 2)``
        The edges ``(u, v)``, shared by the whole batch (concrete data, not traced).
        No self-loops, no repeated node pairs.
    num_nodes : int
        Number of nodes (``>= 1``).
    forest : bool
        Allow a disconnected graph and return a maximum spanning forest; otherwise a
        disconnected graph raises ``ValueError``.
    executor : concurrent.futures.Executor, optional
        Spread the instances over it, in chunks.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(..., m)``, ``theta``'s dtype and device
        Edge indicator of the tree. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> edges = [(0, 1), (1, 2), (0, 2), (2, 3)]
    >>> dc.solvers.spanning_tree(np.array([1.0, 2.0, 3.0, -5.0]), edges, num_nodes=4)
    array([0., 1., 1., 1.])
    """
    # min_ndim=0: a graph without edges (one node, or a forest) has zero scores
    theta, _, out_dtype = check_scores(theta, min_ndim=0, check_finite=check_finite)
    if theta.ndim < 1:
        raise ValueError("theta must have at least 1 dimension (one score per edge), got shape ()")
    num_nodes = check_int(num_nodes, name="num_nodes", low=1)
    forest = check_flag(forest, name="forest")
    e = _check_edges(edges, num_nodes)
    if theta.shape[-1] != e.shape[0]:
        raise ValueError(
            f"theta must have one score per edge on its last axis ({e.shape[0]} edges), got shape {tuple(theta.shape)}"
        )
    if not forest:
        k = _components(num_nodes, e)
        if k > 1:
            raise ValueError(
                f"edges: the graph is disconnected ({k} connected components), so it has no spanning "
                "tree; pass forest=True for a maximum spanning forest"
            )
    traced = backend_for(theta).is_traced(theta)
    op = SpanningTreeOp(StaticArray(e), num_nodes, check_executor(executor), traced)
    return Bound(op, (theta,), out_dtype)


# ---------------------------------------------------------------------------------
# Arborescences (Chu-Liu/Edmonds)
# ---------------------------------------------------------------------------------
def _find_cycle(parent: np.ndarray, root: int) -> list[int] | None:
    n = len(parent)
    state = np.zeros(n, dtype=np.int8)  # 0 new, 1 on the current walk, 2 done
    for start in range(n):
        if state[start]:
            continue
        walk = []
        v = start
        while v != root and state[v] == 0:
            state[v] = 1
            walk.append(v)
            v = int(parent[v])
        if v != root and state[v] == 1:  # closed a cycle on this walk
            return walk[walk.index(v) :]
        for u in walk:
            state[u] = 2
    return None


def _edmonds(score: np.ndarray, root: int) -> np.ndarray:
    """Parent array of a maximum-score arborescence of the dense arc scores ``score``
    (``-inf`` = no arc), rooted at ``root`` (Chu & Liu 1965, Edmonds 1967)."""
    n = score.shape[0]
    s = score.copy()
    np.fill_diagonal(s, -np.inf)
    s[:, root] = -np.inf
    parent = np.argmax(s, axis=0)  # best incoming arc of every node (lowest tail on ties)
    parent[root] = root
    cycle = _find_cycle(parent, root)
    if cycle is None:
        return parent
    in_cycle = np.zeros(n, dtype=bool)
    in_cycle[cycle] = True
    rest = np.flatnonzero(~in_cycle)  # keeps the root
    c = len(rest)  # the contracted cycle is node c of the smaller graph
    cyc = np.array(cycle)
    # arcs entering the cycle at v replace the cycle arc into v: score - s[parent[v], v]
    enter = s[np.ix_(rest, cyc)] - s[parent[cyc], cyc][None, :]
    enter_at = np.argmax(enter, axis=1)
    leave = s[np.ix_(cyc, rest)]
    leave_from = np.argmax(leave, axis=0)
    small = np.full((c + 1, c + 1), -np.inf)
    small[:c, :c] = s[np.ix_(rest, rest)]
    small[:c, c] = enter[np.arange(c), enter_at]
    small[c, :c] = leave[leave_from, np.arange(c)]
    sub = _edmonds(small, int(np.flatnonzero(rest == root)[0]))
    out = parent.copy()
    for k, v in enumerate(rest):
        if v == root:
            continue
        p = sub[k]
        out[v] = cyc[leave_from[k]] if p == c else rest[p]
    u = int(sub[c])  # the arc entering the cycle replaces the cycle arc into its head
    out[cyc[enter_at[u]]] = rest[u]
    out[root] = root
    return out


def _arborescence_one(theta: np.ndarray, *, root: int) -> np.ndarray:
    n = theta.shape[0]
    y = np.zeros((n, n))
    if n == 1:
        return y
    parent = _edmonds(np.asarray(theta, dtype=np.float64), root)
    nodes = np.array([v for v in range(n) if v != root])
    y[parent[nodes], nodes] = 1.0
    return y


@dataclass(frozen=True)
class ArborescenceOp(HostSolverOp, Op):
    root: int = 0
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    name: ClassVar[str] = "arborescence"
    event_ndim: ClassVar[int] = 2

    def kernel(self, event: tuple[int, ...]) -> Any:
        return functools.partial(_arborescence_one, root=self.root)


@op_function(event_ndim=ArborescenceOp.event_ndim)
def arborescence(
    theta: Any, /, *, root: int = 0, executor: Any = None, check_finite: bool = True
) -> Bound:
    r"""Maximum-score spanning arborescence of a complete directed graph (Chu-Liu/Edmonds).

    ``theta[..., i, j]`` scores the arc ``i → j``. An arborescence rooted at ``root``
    gives every other node exactly one parent and has no cycle:

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \mathcal A_{\text{root}}}
        \langle \theta, y \rangle ,

    ``𝒜`` the ``n × n`` arc indicators (``y[i, j] = 1``: ``i`` is the parent of ``j``).
    The diagonal and the column of ``root`` are never used (their scores are ignored).
    Solved on the host by the Chu-Liu/Edmonds algorithm (Chu & Liu 1965; Edmonds,
    "Optimum branchings", 1967): pick the best incoming arc of every node, contract a
    cycle if one forms, solve the smaller problem recursively, expand (``O(n³)``).

    Parameters
    ----------
    theta : array, shape ``(..., n, n)``
        Arc scores; leading axes are batch axes.
    root : int
        The root node, ``0 <= root < n``.
    executor : concurrent.futures.Executor, optional
        Spread the instances over it, in chunks.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(..., n, n)``, ``theta``'s dtype and device
        Arc indicator: ``n - 1`` ones, one per column except ``root``'s.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> theta = np.array([[0.0, 1.0, 1.0], [0.0, 0.0, 5.0], [0.0, 4.0, 0.0]])
    >>> dc.solvers.arborescence(theta)
    array([[0., 1., 0.],
           [0., 0., 1.],
           [0., 0., 0.]])
    """
    theta, _, out_dtype = check_scores(theta, min_ndim=2, check_finite=check_finite)
    n = theta.shape[-1]
    if theta.shape[-2] != n:
        raise ValueError(
            f"theta must be square on its last two axes (..., n, n), got shape {tuple(theta.shape)}"
        )
    root = check_int(root, name="root", low=0, high=n - 1)
    traced = backend_for(theta).is_traced(theta)
    op = ArborescenceOp(root, check_executor(executor), traced)
    return Bound(op, (theta,), out_dtype)
