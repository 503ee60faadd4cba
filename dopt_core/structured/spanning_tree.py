r"""Spanning trees by Kruskal's algorithm on exponential edge weights.

Kruskal's algorithm takes, at step ``t``, the lightest edge between two different
components of the forest built so far: the argmin of the exponentials over the active
set ``A_t`` = {edges joining different components}. With
:math:`E_e \sim \mathrm{Exp}(e^{\theta_e})` the tree's trace has the closed-form law of
:mod:`dopt_core.structured` (Struminsky et al. 2021, section 4.1).

The argument conventions follow :func:`dopt_core.solvers.spanning_tree`:
``edges`` of shape ``(m, 2)`` shared by the batch, ``num_nodes``, one score per edge.
Host code: one vectorised union-find over all samples at once (a Python loop over the
``m`` sorted edge positions, NumPy over the samples), through
:func:`dopt_core.backend.host_call`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_int, check_scores
from .._lib._compat import index_dtype
from ..backend import apply_op, backend_for, host_call
from ..op import Op, ZeroGradient
from ._trace import (
    ForestGraph,
    ForestSets,
    Trace,
    conditional_sample,
    log_prob,
    log_prob_exponentials,
    race_keys,
    replay_unions,
    score,
    with_exponentials,
)

__all__ = [
    "conditional_sample",
    "log_prob",
    "log_prob_exponentials",
    "run",
    "sample",
    "score",
]

#: the sampler runs host code (a NumPy union-find through host_call)
HOST = True


def _check_graph(edges: Any, num_nodes: Any) -> tuple[np.ndarray, int]:
    num_nodes = check_int(num_nodes, name="num_nodes", low=2)
    if hasattr(edges, "shape") and not isinstance(edges, np.ndarray):
        backend = backend_for(edges, name="edges")
        if backend.is_traced(edges):
            raise TypeError("edges must be concrete problem data (a NumPy array or a list), not a traced array")
        edges = backend.to_numpy(edges)
    try:
        e = np.asarray(edges)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"edges must be array-like of int, got {type(edges).__name__}") from exc
    if e.dtype.kind not in "iu":
        if e.dtype.kind == "f" and e.size and np.all(e == np.round(e)):
            e = e.astype(np.int64)
        elif e.size:
            raise TypeError(f"edges must hold integer node indices, got dtype {e.dtype}")
    e = e.astype(np.int64).reshape(e.shape)
    if e.ndim != 2 or e.shape[1] != 2 or e.shape[0] == 0:
        raise ValueError(f"edges must have shape (m, 2) with m >= 1 (one (u, v) pair per edge), got {e.shape}")
    if e.min() < 0 or e.max() >= num_nodes:
        raise ValueError(f"edges must hold node indices in [0, num_nodes) = [0, {num_nodes}), got {e.min()}..{e.max()}")
    if np.any(e[:, 0] == e[:, 1]):
        k = int(np.flatnonzero(e[:, 0] == e[:, 1])[0])
        raise ValueError(f"edges must not contain self-loops, edge {k} is {tuple(e[k])}")
    pairs = np.sort(e, axis=1)
    if len(np.unique(pairs, axis=0)) != len(pairs):
        raise ValueError("edges must not repeat a node pair (undirected)")
    comp = _components(e, num_nodes)
    if comp > 1:
        raise ValueError(
            f"edges: the graph is disconnected ({comp} connected components), so it has no spanning tree"
        )
    return e, num_nodes


def _components(edges: np.ndarray, num_nodes: int) -> int:
    """Number of connected components (a plain union-find with path halving)."""
    parent = list(range(num_nodes))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    count = num_nodes
    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
            count -= 1
    return count


def _label_dtype(num_nodes: int) -> Any:
    return np.int8 if num_nodes <= 127 else np.int16 if num_nodes <= 32767 else np.int32


def _sweep(e: np.ndarray, order: np.ndarray, u: np.ndarray, v: np.ndarray, n: int) -> tuple[Any, Any, Any]:
    """The union-find sweep of Kruskal over the sorted positions ``order`` of every row.

    Returns the choices ``(S, T)``, the number of steps done per row, and which rows
    met a tie among the positions they swept (or between their last swept position
    and the next), where the unstable order may differ from the stable one.
    """
    s_count, m = e.shape
    t_steps = n - 1
    ef = e.reshape(-1)
    block = 32  # the order is transposed in blocks of positions, when the sweep needs them
    comp = np.broadcast_to(np.arange(n, dtype=_label_dtype(n)), (s_count, n)).copy()
    flat = comp.reshape(-1)  # a view: the union-find's labels, gathered flat
    choices = np.zeros((s_count, t_steps), dtype=np.int64)
    cflat = choices.reshape(-1)  # a view, scattered flat
    step = np.zeros(s_count, dtype=np.int64)
    tied = np.zeros(s_count, dtype=bool)
    live = np.arange(s_count)  # rows whose tree is not complete yet
    base, mbase = live * n, live * m
    prev = np.full(s_count, np.nan, dtype=e.dtype)  # each live row's previous value
    # NaN (check_finite=False) counts as a tie: its rows are swept in the stable order
    tied[np.isnan(e).any(axis=1)] = True
    for p in range(m):
        if p % block == 0:
            order_t = np.ascontiguousarray(order[:, p : p + block].T)
        k = order_t[p % block][live]
        ev = ef[mbase + k]
        same = ev == prev
        if same.any():
            tied[live[same]] = True
        prev = ev
        cu = flat[base + u[k]]
        cv = flat[base + v[k]]
        acc = cu != cv
        r = live[acc]
        if r.size == 0:
            continue
        st = step[r]
        cflat[r * t_steps + st] = k[acc]
        sub = comp[r]
        cva = cv[acc, None]
        comp[r] = sub + (sub == cva) * (cu[acc, None] - cva)  # not a (slow) broadcast where
        step[r] = st + 1
        if (st == t_steps - 1).any():
            keep = step[live] < t_steps
            if p + 1 < m:  # a finished row still ties with its next position
                done = live[~keep]
                nxt = ef[done * m + order[done, p + 1]]
                tied[done[nxt == prev[~keep]]] = True
            live, base, mbase, prev = live[keep], base[keep], mbase[keep], prev[keep]
            if live.size == 0:
                break
    return choices, step, tied


def _kruskal(e: np.ndarray, edges: np.ndarray, num_nodes: int, *, partial: bool = False, labels: bool = True) -> Any:
    """Kruskal on every row of ``e`` (shape ``(S, m)``) at once.

    Returns ``(choices (S, T), comps (S, T, n))`` with ``comps[s, t]`` the component
    labels before step ``t`` (``None`` unless ``labels``); with ``partial=True`` the
    number of components when the graph is disconnected (else None). The union-find
    sweeps the sorted edge positions over the rows not done yet (position-major, so
    that each sweep reads one contiguous row of the order); the labels are replayed
    afterwards over all rows at once (:func:`replay_unions`, ``T`` vectorised steps).
    """
    n = num_nodes
    t_steps = n - 1
    u, v = edges[:, 0], edges[:, 1]
    # the fast (unstable) argsort; a row whose swept positions hold a tie (probability
    # ~0 for continuous draws) is swept again in the stable (exponential, index) order
    choices, step, tied = _sweep(e, np.argsort(e, axis=1), u, v, n)
    if tied.any():
        again = np.flatnonzero(tied)
        sub = e[again]
        ch2, st2, _ = _sweep(sub, np.argsort(sub, axis=1, kind="stable"), u, v, n)
        choices[again], step[again] = ch2, st2
    if partial:
        left = int(t_steps - step.min()) if len(step) else 0
        return None if left == 0 else left + 1
    if not labels:
        return choices, None
    return choices, replay_unions(choices, ForestGraph(tuple(map(tuple, edges.tolist())), n), np)


def _kruskal_packed(e: np.ndarray, *, edges: np.ndarray, num_nodes: int) -> np.ndarray:
    """``[choices | tree indicator]`` of every row, in ``e``'s dtype."""
    lead, m = e.shape[:-1], e.shape[-1]
    rows = int(np.prod(lead))
    t_steps = num_nodes - 1
    choices, _ = _kruskal(e.reshape(rows, m), edges, num_nodes, labels=False)
    packed = np.zeros((rows, t_steps + m), dtype=e.dtype)
    packed[:, :t_steps] = choices
    np.put_along_axis(packed[:, t_steps:], choices, 1.0, axis=1)
    return packed.reshape(*lead, packed.shape[-1])


@dataclass(frozen=True)
class _KruskalOp(ZeroGradient, Op):
    """The packed Kruskal record ``[choices | y]`` of each row of ``e``."""

    name: ClassVar[str] = "structured.spanning_tree.kruskal"
    host: ClassVar[bool] = True
    edges: tuple[tuple[int, int], ...]
    num_nodes: int

    def forward(self, e: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        g = np.asarray(self.edges, dtype=np.int64)
        n, m = self.num_nodes, len(self.edges)
        packed = host_call(
            lambda a: _kruskal_packed(a, edges=g, num_nodes=n),
            e,
            shape=(*e.shape[:-1], m + n - 1),
            dtype=e.dtype,
        )
        return packed, ()


def run(e: Any, edges: Any, num_nodes: int, *, check_finite: bool = True) -> tuple[Any, Trace]:
    r"""Kruskal's minimum spanning tree of given edge exponentials, and its trace.

    Step ``t`` adds :math:`c_t = \operatorname{argmin}_{e \in A_t} E_e`, ``A_t`` the edges
    joining two different components of the forest :math:`\{c_0, \dots, c_{t-1}\}`
    (Kruskal 1956; the trace of Struminsky et al. 2021, section 4.1).

    Parameters
    ----------
    e : array, shape ``(..., m)``
        One exponential per edge; leading axes are sample / batch axes.
    edges : array-like of int, shape ``(m, 2)``
        The undirected edges ``(u, v)`` (no self-loops, no repeated pairs, connected).
    num_nodes : int
        Number of nodes (``>= 2``).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite entries.

    Returns
    -------
    y : array, shape ``(..., m)``
        Edge indicator of the tree, ``e``'s dtype.
    trace : Trace
        ``num_nodes - 1`` steps.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> edges = [(0, 1), (1, 2), (0, 2)]
    >>> y, trace = dc.structured.spanning_tree.run(np.array([0.5, 0.2, 0.3]), edges, 3)
    >>> y, trace.choices, trace.active.astype(int)
    (array([0., 1., 1.]), array([1, 2]), array([[1, 1, 1],
           [1, 0, 1]]))
    """
    g, num_nodes = _check_graph(edges, num_nodes)
    e, xp, _ = check_scores(e, name="e", check_finite=check_flag(check_finite, name="check_finite"))
    m = g.shape[0]
    if e.shape[-1] != m:
        raise ValueError(f"e must have one entry per edge on its last axis ({m} edges), got shape {tuple(e.shape)}")
    t_steps = num_nodes - 1
    # a zero-gradient Op: autodiff never enters the host callback (E may carry θ's tangents)
    packed = apply_op(_KruskalOp(tuple(map(tuple, g.tolist())), num_nodes), e)
    itype = index_dtype(xp)
    choices = xp.astype(packed[..., :t_steps], itype)
    y = packed[..., packed.shape[-1] - m :]
    # the active sets stay compact: the choices determine every union, hence every
    # active set; the record is the tree indicator in the narrowest integer type.
    # Trace.active builds the dense (*lead, T, m) mask only when read
    record = xp.astype(y, xp.int8)
    forest = ForestSets(ForestGraph(tuple(map(tuple, g.tolist())), num_nodes), record, choices)
    return y, Trace(choices, None, e, None, "spanning_tree", forest=forest)


def sample(
    theta: Any,
    edges: Any,
    num_nodes: int,
    *,
    rng: Any = None,
    noise: Any = None,
    num_samples: int | None = None,
) -> tuple[Any, Trace]:
    r"""Sample a spanning tree by Kruskal's algorithm on exponential edge weights.

    :math:`E_e = \varepsilon_e e^{-\theta_e}`, :math:`\varepsilon_e \sim \mathrm{Exp}(1)`;
    the tree is Kruskal's minimum spanning tree of ``E``, and its trace ``T`` has

    .. math::

        \log p(T;\theta) = \sum_{t=0}^{n-2}\Bigl[\theta_{c_t} - \log\sum_{e\in A_t} e^{\theta_e}\Bigr]

    (Struminsky et al. 2021, section 4.1). ``edges``/``num_nodes`` as in
    :func:`dopt_core.solvers.spanning_tree`.

    Parameters
    ----------
    theta : array, shape ``(..., m)``
        One score per edge.
    edges : array-like of int, shape ``(m, 2)``
        The undirected edges (connected graph).
    num_nodes : int
        Number of nodes.
    rng : generator or int, optional
        The backend's generator, a NumPy ``Generator`` or an int seed.
    noise : array, optional
        Pre-drawn standard exponentials. Not with ``rng``.
    num_samples : int, optional
        A leading sample axis (all samples run in one vectorised union-find).

    Returns
    -------
    y : array, shape ``(num_samples, ..., m)`` or ``(..., m)``
        Edge indicators, θ's dtype.
    trace : Trace

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> edges = [(0, 1), (1, 2), (0, 2), (2, 3)]
    >>> y, trace = dc.structured.spanning_tree.sample(np.zeros(4), edges, 4, rng=0, num_samples=2)
    >>> y.sum(axis=-1), trace.choices.shape
    (array([3., 3.]), (2, 3))
    """
    _check_graph(edges, num_nodes)
    e, keys = race_keys(theta, rng=rng, noise=noise, num_samples=num_samples)
    y, trace = run(keys, edges, num_nodes)  # Kruskal compares only: log E has the same tree
    return y, with_exponentials(trace, e)
