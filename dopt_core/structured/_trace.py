r"""Traces of recursive argmin algorithms on exponential races, and their exact laws.

Convention (pinned for the whole :mod:`dopt_core.structured` package): scores θ, rates
:math:`\lambda = e^\theta`, exponentials :math:`E_i \sim \mathrm{Exp}(\lambda_i)`
(so :math:`E_i = \varepsilon_i e^{-\theta_i}`, :math:`\varepsilon_i \sim \mathrm{Exp}(1)`),
and :math:`\operatorname{argmin}_i E_i` is categorical with probabilities
:math:`\operatorname{softmax}(\theta)`.

A recursive algorithm (Kruskal, Plackett-Luce top-k, greedy matching, recursive
partition) makes a sequence of steps ``t``; at each step it takes the argmin
``c_t`` of the exponentials over an *active set* ``A_t``. Its :class:`Trace` holds,
batched as arrays,

* ``choices`` — ``c_t``, integer, shape ``(*lead, T)``;
* ``active`` — the indicator of ``A_t``, boolean, shape ``(*lead, T, m)``;
* ``parent`` — ``None``, or for recursive partitions (binary trees) the step whose
  argmin bounds step ``t`` from below (``-1`` for the root), integer ``(*lead, T)``:
  a description of the structure, not needed by the law below;
* ``exponentials`` — the ``E`` the algorithm ran on, ``(*lead, m)``.

By the stochastic invariant (Struminsky et al. 2021, after the exponential-race
property of Maddison et al. 2014), the probability of a trace is the product of the
step-wise categorical probabilities,

.. math::

    \log p(T;\theta) = \sum_t \Bigl[\theta_{c_t} - \log \sum_{j \in A_t} e^{\theta_j}\Bigr],

and, given the trace, each step's minimum (shifted by the previous minima the entries
of ``A_t`` went through) is :math:`\mathrm{Exp}(\sum_{j\in A_t}\lambda_j)`, independent
of the others, and an entry never chosen exceeds the sum of the minima of the steps it
took part in by an independent :math:`\mathrm{Exp}(\lambda_j)`
(:func:`conditional_sample`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_int, check_scores
from .._lib._compat import array_namespace, device, index_dtype
from .._lib._random import bind_noise
from ..backend import backend_for
from ..noise import Noise
from ..op import Bound, Op, op_function

__all__ = [
    "EXPONENTIAL",
    "Exponential",
    "Trace",
    "conditional_sample",
    "exponentials",
    "log_prob",
    "log_prob_exponentials",
    "score",
    "score_exponentials",
]


@dataclass(frozen=True)
class Exponential(Noise):
    r"""Standard exponential noise :math:`\varepsilon \sim \mathrm{Exp}(1)`,
    :math:`\nu(z) = z` on :math:`z > 0`."""

    _: KW_ONLY
    name: str = "exponential"
    kind: str = "exponential"
    mean: float = 1.0
    symmetric: bool = False

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        return xp.ones_like(z)

    def log_prob(self, z: Any, *, xp: Any) -> Any:
        return -z


EXPONENTIAL = Exponential()


@dataclass(frozen=True)
class ForestGraph:
    """The static graph of a forest-merging trace (Kruskal): ``edges`` ``(m, 2)``, ``num_nodes``."""

    edges: tuple[tuple[int, int], ...]
    num_nodes: int


@functools.lru_cache(maxsize=64)
def _graph_tables(graph: ForestGraph) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Endpoints ``u, v``; the ``(n·n)`` edge id of each node pair (``m`` off the graph);
    the flat ``u·n + v`` position of each edge."""
    g = np.asarray(graph.edges, dtype=np.int64).reshape(-1, 2)
    n, m = graph.num_nodes, len(g)
    table = np.full((n, n), m, dtype=np.int64)
    table[g[:, 0], g[:, 1]] = np.arange(m)
    table[g[:, 1], g[:, 0]] = np.arange(m)
    return g[:, 0], g[:, 1], table.reshape(-1), g[:, 0] * n + g[:, 1]


def _label_dtype(xp: Any, num_nodes: int) -> Any:
    return xp.int8 if num_nodes <= 127 else xp.int16 if num_nodes <= 32767 else xp.int32


def replay_unions(choices: Any, graph: ForestGraph, xp: Any, *, masks: bool = False) -> Any:
    """Replay the unions of Kruskal traces: the component labels before every step,
    ``(*lead, T, n)`` (step ``t`` relabels the second endpoint's component with the
    first's); with ``masks``, instead the boolean node masks of the two components
    merged at each step, ``(*lead, T, n)`` each. ``T`` vectorised steps (a static loop)."""
    n = graph.num_nodes
    u, v, _, _ = _graph_tables(graph)
    lead, t_steps = tuple(choices.shape[:-1]), choices.shape[-1]
    itype = index_dtype(xp)
    dev = device(choices)
    flat = xp.reshape(xp.astype(choices, itype), (-1,))
    rows = math.prod(lead)
    # flat positions of each step's endpoints in the (rows·n) labels, step-major
    start = xp.reshape(xp.arange(0, rows * n, n, dtype=itype, device=dev), (rows, 1))
    uc = xp.reshape(xp.take(xp.asarray(u, dtype=itype, device=dev), flat, axis=0), (rows, t_steps)) + start
    vc = xp.reshape(xp.take(xp.asarray(v, dtype=itype, device=dev), flat, axis=0), (rows, t_steps)) + start
    uc, vc = xp.matrix_transpose(uc), xp.matrix_transpose(vc)
    comp = xp.broadcast_to(xp.arange(n, dtype=_label_dtype(xp, n), device=dev), (*lead, n))
    labels, side_a, side_b = [], [], []
    for t in range(t_steps):
        cf = xp.reshape(comp, (-1,))
        cu = xp.reshape(xp.take(cf, uc[t, ...], axis=0), (*lead, 1))
        cv = xp.reshape(xp.take(cf, vc[t, ...], axis=0), (*lead, 1))
        in_b = comp == cv
        if not masks:
            labels.append(comp)
        else:
            side_a.append(comp == cu)
            side_b.append(in_b)
        # relabel B with A's label (arithmetic: a broadcast where is ~5x slower on NumPy)
        comp = comp + xp.astype(in_b, comp.dtype) * (cu - cv)
    # stacked step-major (a contiguous copy), then viewed as (*lead, T, n)
    n_axes = len(lead) + 2
    axes = (*range(1, n_axes - 1), 0, n_axes - 1)
    if not masks:
        return xp.permute_dims(xp.stack(labels, axis=0), axes)
    return xp.permute_dims(xp.stack(side_a, axis=0), axes), xp.permute_dims(xp.stack(side_b, axis=0), axes)


class ForestSets:
    """The active sets of a Kruskal trace, held compactly.

    The union of each step is a function of the choices alone, so the trace's choices
    determine every active set: ``A_t`` = the edges whose endpoints lie in different
    components before step ``t`` (replayed by :func:`replay_unions`). ``record``
    (``(*lead, m)`` small integers) is the 0/1 indicator of the chosen edges. The dense
    ``(*lead, T, m)`` mask is derived only when asked for.
    """

    __slots__ = ("choices", "graph", "record")

    def __init__(self, graph: ForestGraph, record: Any, choices: Any) -> None:
        self.graph = graph
        self.record = record
        self.choices = choices

    @property
    def num_edges(self) -> int:
        return len(self.graph.edges)

    def labels(self, xp: Any) -> Any:
        """Component label of every node before each step, ``(*lead, T, n)``."""
        return replay_unions(self.choices, self.graph, xp)

    def chosen(self, xp: Any) -> Any:
        return self.record > 0

    def dense(self, xp: Any) -> Any:
        u, v, _, _ = _graph_tables(self.graph)
        labels = self.labels(xp)
        itype = index_dtype(xp)
        dev = device(labels)
        cu = xp.take(labels, xp.asarray(u, dtype=itype, device=dev), axis=-1)
        cv = xp.take(labels, xp.asarray(v, dtype=itype, device=dev), axis=-1)
        return cu != cv

    def __getitem__(self, index: Any) -> ForestSets:
        return ForestSets(self.graph, self.record[index], self.choices[index])


class Trace:
    """The execution record of a recursive argmin algorithm (see the module docstring).

    ``Trace(choices, active, exponentials, parent=None, structure="")``; immutable.

    Attributes
    ----------
    choices : array of int, shape ``(*lead, T)``
        The argmin taken at each step (an index into the last axis of θ, flattened).
    active : array of bool, shape ``(*lead, T, m)``
        The active set of each step. Spanning-tree traces hold their active sets
        compactly (``forest``, component labels per step) and build this dense mask
        only when the attribute is read.
    exponentials : array, shape ``(*lead, m)``
        The exponentials the algorithm ran on.
    parent : array of int, shape ``(*lead, T)``, or None
        ``None``: the steps form a chain. Otherwise the step bounding each step from
        below (``-1`` for the root), as in recursive partitions.
    structure : str
        Which algorithm produced it (``"top_k"``, ``"spanning_tree"``, ...).
    forest : ForestSets or None
        The compact active sets of a Kruskal trace (``None`` for a dense trace).
    """

    __slots__ = ("_active", "choices", "exponentials", "forest", "parent", "structure")

    def __init__(
        self,
        choices: Any,
        active: Any = None,
        exponentials: Any = None,
        parent: Any = None,
        structure: str = "",
        *,
        forest: ForestSets | None = None,
    ) -> None:
        if active is None and forest is None:
            raise TypeError("Trace needs its active sets: active (dense) or forest (compact)")
        for name, value in (
            ("choices", choices),
            ("_active", active),
            ("exponentials", exponentials),
            ("parent", parent),
            ("structure", structure),
            ("forest", forest),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Trace is immutable (cannot set {name!r})")

    def __repr__(self) -> str:
        return f"Trace(structure={self.structure!r}, shape={self.shape}, num_steps={self.num_steps})"

    @property
    def active(self) -> Any:
        """The ``(*lead, T, m)`` boolean active sets (built on first access for compact traces)."""
        if self._active is None:
            xp = array_namespace(self.forest.record)
            object.__setattr__(self, "_active", self.forest.dense(xp))
        return self._active

    @property
    def shape(self) -> tuple[int, ...]:
        """The leading (sample and batch) shape ``lead``."""
        return tuple(self.choices.shape[:-1])

    @property
    def num_steps(self) -> int:
        """``T``, the number of steps."""
        return int(self.choices.shape[-1])

    @property
    def size(self) -> int:
        """``m``, the number of exponentials of one instance."""
        if self._active is None:
            return self.forest.num_edges
        return int(self._active.shape[-1])

    def __getitem__(self, index: Any) -> Trace:
        """Index the leading axes (``trace[k]`` is the k-th sample)."""
        if not isinstance(index, tuple):
            index = (index,)
        return Trace(
            self.choices[index],
            None if self._active is None else self._active[index],
            self.exponentials[index],
            None if self.parent is None else self.parent[index],
            self.structure,
            forest=None if self.forest is None else self.forest[index],
        )


def _check_trace(trace: Any) -> Trace:
    if not isinstance(trace, Trace):
        raise TypeError(
            f"trace must be a dopt_core.structured.Trace (returned by a structure's sample), "
            f"got {type(trace).__name__}"
        )
    return trace


def _check_theta_for(trace: Trace, theta: Any, *, check_finite: bool = True) -> tuple[Any, Any, Any]:
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    m = trace.size
    lead = trace.shape
    if theta.shape[-1] != m:
        raise ValueError(
            f"theta must have the trace's {m} entries on its last axis (one score per "
            f"exponential), got shape {tuple(theta.shape)}"
        )
    batch = tuple(theta.shape[:-1])
    if len(batch) > len(lead) or any(b not in (1, s) for b, s in zip(batch[::-1], lead[::-1], strict=False)):
        raise ValueError(
            f"theta's batch shape {batch} must broadcast to the trace's leading shape {lead} "
            "(sample axes first, then theta's batch axes)"
        )
    return theta, xp, out_dtype


def _sum_to(x: Any, shape: tuple[int, ...], xp: Any) -> Any:
    """Sum the broadcast axes of ``x`` back down to ``shape``."""
    extra = x.ndim - len(shape)
    if extra:
        x = xp.sum(x, axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    if axes:
        x = xp.sum(x, axis=axes, keepdims=True)
    return x


def _onehot(choices: Any, m: int, xp: Any) -> Any:
    """``(*lead, T, m)`` boolean: step t chose entry j."""
    idx = xp.arange(m, dtype=choices.dtype, device=device(choices))
    return choices[..., None] == idx


def _step_lse(theta: Any, choices: Any, active: Any, xp: Any, by_top: bool) -> tuple[Any, Any, Any]:
    """Step log-probabilities ``θ_{c_t} − log Σ_{A_t} e^θ``, the shifted exponentials
    and their sums.

    ``by_top``: each step is shifted by its largest active score (a log-sum-exp), so
    its sum lies in ``[1, |A_t|]``, whatever the spread of the scores and however
    unlikely the choice (a trace evaluated under other scores). Otherwise (scores known
    to span less than the exponent range, :func:`_needs_top_shift`) by the chosen
    score, one pass fewer: the sum is at least 1 and cannot overflow, and a certain
    step is exactly 0.
    """
    lead = tuple(choices.shape[:-1])
    m = theta.shape[-1]
    th = xp.broadcast_to(theta, (*lead, m))
    # padding steps (choice -1, empty active set; arborescences have a variable number
    # of steps) contribute log 1 = 0
    chosen = xp.take_along_axis(th, xp.where(choices >= 0, choices, 0), axis=-1)
    if not by_top:
        ex = xp.exp(xp.where(active, th[..., None, :] - chosen[..., None], -math.inf))
        z = xp.sum(ex, axis=-1)
        z = xp.where(z > 0, z, 1.0)
        return 0.0 - xp.log(z), ex, z
    masked = xp.where(active, th[..., None, :], -math.inf)
    top = xp.max(masked, axis=-1)
    top = xp.where(choices >= 0, top, chosen)
    ex = xp.exp(masked - top[..., None])
    z = xp.sum(ex, axis=-1)
    z = xp.where(z > 0, z, 1.0)
    step = xp.where(choices >= 0, chosen - top, 0.0) - xp.log(z)
    return step, ex, z


def _needs_top_shift(theta: Any, xp: Any) -> bool:
    """Whether a step shifted by its chosen score could overflow: traced scores (values
    unknown), or a row whose spread exceeds ``log(max float) − log m − 1`` (≈ 704 in
    float64, ≈ 84 in float32 for m = 50)."""
    if backend_for(theta).is_traced(theta):
        return True
    m = theta.shape[-1]
    big = np.float64 if theta.dtype == xp.float64 else np.float32
    limit = math.log(float(np.finfo(big).max)) - math.log(m) - 1.0
    spread = xp.max(theta, axis=-1) - xp.min(theta, axis=-1)
    return bool(xp.any(spread > limit))


def _value_rows(theta: Any, choices: Any, active: Any, xp: Any, by_top: bool) -> tuple[Any]:
    step, _, _ = _step_lse(theta, choices, active, xp, by_top)
    return (0.0 + xp.sum(step, axis=-1),)  # 0 + : no -0.0 for a certain trace


def _value_and_score_rows(
    theta: Any, choices: Any, active: Any, xp: Any, by_top: bool
) -> tuple[Any, Any]:
    step, ex, z = _step_lse(theta, choices, active, xp, by_top)
    value = 0.0 + xp.sum(step, axis=-1)
    hot = _onehot(choices, theta.shape[-1], xp)
    grad = xp.sum(xp.astype(hot, theta.dtype) - ex / z[..., None], axis=-2)
    return value, grad


#: entries of the ``(rows, T, m)`` temporaries per chunk: large traces (10⁴ samples of a
#: 190-edge tree) are processed in chunks of rows, which keeps the temporaries small
#: (about 4x faster on NumPy than one pass over the whole batch). Shapes only: the
#: loop is static, so it traces under jit.
_CHUNK_ENTRIES = 1 << 20


def _by_rows(fn: Any, theta: Any, choices: Any, active: Any, xp: Any) -> tuple[Any, ...]:
    lead = tuple(choices.shape[:-1])
    t_steps, m = choices.shape[-1], theta.shape[-1]
    total = math.prod(lead)
    per = max(1, _CHUNK_ENTRIES // max(1, t_steps * m))
    if total <= per:
        return fn(xp.broadcast_to(theta, (*lead, m)), choices, active, xp)
    th = xp.reshape(xp.broadcast_to(theta, (*lead, m)), (total, m))
    ch = xp.reshape(choices, (total, t_steps))
    ac = xp.reshape(active, (total, t_steps, m))
    parts = [fn(th[i : i + per], ch[i : i + per], ac[i : i + per], xp) for i in range(0, total, per)]
    out = []
    for pieces in zip(*parts, strict=True):
        joined = xp.concat(list(pieces), axis=0)
        out.append(xp.reshape(joined, (*lead, *joined.shape[1:])))
    return tuple(out)


def _log_prob_value(theta: Any, choices: Any, active: Any, xp: Any) -> Any:
    fn = functools.partial(_value_rows, by_top=_needs_top_shift(theta, xp))
    return _by_rows(fn, theta, choices, active, xp)[0]


def _log_prob_and_score(theta: Any, choices: Any, active: Any, xp: Any) -> tuple[Any, Any]:
    """``log p(T)`` of shape ``lead`` and its gradient ``∂/∂θ`` of shape ``(*lead, m)``."""
    fn = functools.partial(_value_and_score_rows, by_top=_needs_top_shift(theta, xp))
    value, grad = _by_rows(fn, theta, choices, active, xp)
    return value, grad


def _wide(xp: Any, dtype: Any) -> Any:
    """float64 when the namespace has it (JAX without x64 has not), else ``dtype``."""
    return xp.float64 if index_dtype(xp) == xp.int64 else dtype


def _pick_last(x: Any, idx: Any, xp: Any) -> Any:
    """``x[..., idx[...]]`` (one entry of the last axis per row) by a flat ``take``,
    ``idx.shape == x.shape[:-1]``; cheaper than ``take_along_axis`` on NumPy."""
    n = x.shape[-1]
    rows = math.prod(idx.shape)
    itype = index_dtype(xp)
    start = xp.arange(0, rows * n, n, dtype=itype, device=device(x))
    flat = xp.take(xp.reshape(x, (-1,)), start + xp.reshape(xp.astype(idx, itype), (-1,)), axis=0)
    return xp.reshape(flat, idx.shape)


def _forest_parts(record: Any, choices: Any, graph: ForestGraph, dtype: Any, xp: Any) -> tuple[Any, Any, Any]:
    """Node masks of the two components merged at each step, ``(*lead, T, n)`` each
    (the first boolean, the second in ``dtype``), and the chosen-edge indicator
    ``(*lead, m)``."""
    m_a, m_b = replay_unions(choices, graph, xp, masks=True)
    return m_a, xp.astype(m_b, dtype), xp.astype(record > 0, dtype)


def _forest_total(lam: Any, m_a: Any, m_b: Any, graph: ForestGraph, xp: Any) -> Any:
    """``Σ_{e ∈ A_t} λ_e`` for every step, ``(*lead, T)``, without the dense masks.

    The edges leaving the active set at step ``t`` are those between the two merged
    components, ``B_t = m_a^T Λ m_b`` (``Λ`` the node-pair matrix of λ); every active
    edge leaves at a later or the same step, so ``Σ_{A_t} λ = Σ_{s ≥ t} B_s``, a sum
    of non-negative terms (no cancellation)."""
    n = graph.num_nodes
    _, _, table, _ = _graph_tables(graph)
    dev = device(lam)
    ext = xp.concat([lam, xp.zeros((*lam.shape[:-1], 1), dtype=lam.dtype, device=dev)], axis=-1)
    pair = xp.take(ext, xp.asarray(table, dtype=index_dtype(xp), device=dev), axis=-1)
    pair = xp.reshape(pair, (*lam.shape[:-1], n, n))
    if pair.ndim == 2:  # one θ for every sample: one matrix product
        flow = xp.reshape(xp.matmul(xp.reshape(m_b, (-1, n)), pair), m_b.shape)
    else:
        flow = xp.matmul(m_b, pair)
    leave = xp.vecdot(xp.astype(m_a, flow.dtype), flow, axis=-1)  # not where + sum: a short axis
    return xp.flip(xp.cumulative_sum(xp.flip(leave, axis=-1), axis=-1), axis=-1)


def _forest_spread(r: Any, m_a: Any, m_b: Any, graph: ForestGraph, xp: Any) -> Any:
    """``Σ_{t: e ∈ A_t} r_t`` for every edge, ``(*lead, m)``: an edge between the
    components merged at step ``s`` is active at steps ``0..s``, so it gathers the
    cumulative sum of ``r`` up to ``s``."""
    n = graph.num_nodes
    _, _, _, pos = _graph_tables(graph)
    rc = xp.cumulative_sum(r, axis=-1)
    k = xp.matmul(xp.matrix_transpose(xp.where(m_a, rc[..., None], 0.0)), m_b)
    k = k + xp.matrix_transpose(k)
    k = xp.reshape(k, (*k.shape[:-2], n * n))
    return xp.take(k, xp.asarray(pos, dtype=index_dtype(xp), device=device(k)), axis=-1)


def _forest_rows(
    theta: Any, choices: Any, record: Any, m_a: Any, m_b: Any, graph: ForestGraph, xp: Any, grad: bool
) -> tuple[Any, Any]:
    dtype = theta.dtype
    wide = _wide(xp, dtype)
    th = xp.astype(theta, wide)
    top = xp.max(th, axis=-1, keepdims=True)
    lam = xp.exp(th - top)
    m_b = xp.astype(m_b, wide)
    z = _forest_total(lam, m_a, m_b, graph, xp)
    lead = tuple(choices.shape[:-1])
    thb = xp.broadcast_to(th, (*lead, th.shape[-1]))
    picked = xp.take_along_axis(thb, xp.astype(choices, index_dtype(xp)), axis=-1)
    value = xp.astype(xp.sum(picked - top, axis=-1) - xp.sum(xp.log(z), axis=-1), dtype)
    if not grad:
        return value, value
    g = xp.astype(record > 0, wide) - lam * _forest_spread(1.0 / z, m_a, m_b, graph, xp)
    return value, xp.astype(g, dtype)


def _forest_needs_dense(theta: Any, xp: Any) -> bool:
    """Whether a row of (concrete) scores spans more than the wide dtype's exponent
    range, where the compact law's single shift by the largest score could underflow
    a step's sum to zero; such traces take the dense masks (each step shifted by its
    own largest score). Traced scores (``jax.jit``, ``jax.grad``) keep the compact path."""
    if backend_for(theta).is_traced(theta):
        return False
    wide = np.float64 if _wide(xp, theta.dtype) == xp.float64 else np.float32
    limit = -math.log(float(np.finfo(wide).tiny))
    spread = xp.max(theta, axis=-1) - xp.min(theta, axis=-1)
    return bool(xp.any(spread > limit))


#: rows of a compact Kruskal trace per chunk: the ``(rows, T, n)`` temporaries stay
#: small (large fresh temporaries cost page faults on NumPy); a static loop
_FOREST_ROWS = 1024


def _forest_law(theta: Any, choices: Any, record: Any, graph: ForestGraph, xp: Any, *, grad: bool) -> tuple[Any, Any]:
    """``log p(T)`` (``lead``) and, with ``grad``, its gradient ``(*lead, m)``, of a Kruskal trace.

    Shifted by the largest score (``λ̂ = e^{θ - max θ}``) and computed in float64 when
    the namespace has it: a step's sum could underflow only when its active scores
    all lie ~708 below the largest score, so concrete scores spanning more than that
    take the dense masks (each step shifted by its own largest score); traced scores
    (``jax.jit``, ``jax.grad``) keep this path and its limit."""
    lead = tuple(choices.shape[:-1])
    if _forest_needs_dense(theta, xp):
        active = ForestSets(graph, record, choices).dense(xp)
        if grad:
            return _log_prob_and_score(theta, choices, active, xp)
        return _log_prob_value(theta, choices, active, xp), None
    total = math.prod(lead)
    m_a, m_b = replay_unions(choices, graph, xp, masks=True)  # boolean: small
    if total <= _FOREST_ROWS or len(lead) == 0:
        value, g = _forest_rows(theta, choices, record, m_a, m_b, graph, xp, grad)
        return value, (g if grad else None)
    m = theta.shape[-1]
    # one shared θ stays shared (one matrix product per chunk); a batched θ is
    # broadcast to the trace's rows
    th = theta if theta.ndim == 1 else xp.reshape(xp.broadcast_to(theta, (*lead, m)), (total, m))
    ch = xp.reshape(choices, (total, choices.shape[-1]))
    rec = xp.reshape(record, (total, record.shape[-1]))
    steps = (total, *m_a.shape[-2:])
    m_a, m_b = xp.reshape(m_a, steps), xp.reshape(m_b, steps)
    parts = []
    for i in range(0, total, _FOREST_ROWS):
        rows = slice(i, i + _FOREST_ROWS)
        th_rows = th if th.ndim == 1 else th[rows, ...]
        parts.append(
            _forest_rows(th_rows, ch[rows, ...], rec[rows, ...], m_a[rows, ...], m_b[rows, ...], graph, xp, grad)
        )
    value = xp.reshape(xp.concat([p[0] for p in parts], axis=0), lead)
    if not grad:
        return value, None
    return value, xp.reshape(xp.concat([p[1] for p in parts], axis=0), (*lead, m))


@dataclass(frozen=True)
class LogProbOp(Op):
    """``log p(T; θ)`` of a trace; inputs ``(theta, choices, active)``, or
    ``(theta, choices, forest record)`` when ``graph`` is set (a compact Kruskal trace)."""

    name: ClassVar[str] = "structured.log_prob"
    nondiff: ClassVar[tuple[int, ...]] = (1, 2)
    graph: ForestGraph | None = None

    def forward(self, theta: Any, choices: Any, active: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        # the score is recomputed in the backward pass: the forward alone stays cheap
        if self.graph is not None:
            return _forest_law(theta, choices, active, self.graph, xp, grad=False)[0], (theta, choices, active)
        return _log_prob_value(theta, choices, active, xp), (theta, choices, active)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        theta, choices, active = residuals
        if self.graph is not None:
            grad = _forest_law(theta, choices, active, self.graph, xp, grad=True)[1]
        else:
            grad = _log_prob_and_score(theta, choices, active, xp)[1]
        return (_sum_to(g[..., None] * grad, tuple(theta.shape), xp), None, None)


@op_function
def log_prob(trace: Any, theta: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Exact log-probability of an algorithm's trace (the stochastic invariant).

    .. math::

        \log p(T;\theta) = \sum_{t} \Bigl[\theta_{c_t} - \log\sum_{j\in A_t} e^{\theta_j}\Bigr],
        \qquad
        \frac{\partial \log p}{\partial \theta_j} = \sum_t
            \bigl[\mathbb 1[j = c_t] - \operatorname{softmax}_{A_t}(\theta)_j\bigr],

    with choices :math:`c_t` and active sets :math:`A_t` read from ``trace``
    (Struminsky, Gadetsky, Rakitin, Karpushkin, Vetrov, "Leveraging recursive
    Gumbel-max trick for approximate inference in combinatorial spaces", NeurIPS
    2021, eq. 6). The VJP is this closed form; it is the score used by
    :func:`dopt_core.structured.estimators.reinforce`. Each step is a shifted
    log-sum-exp, exact for any spread of the scores; one limit: a spanning-tree trace
    under JAX tracing (``jax.jit``, ``jax.grad``) keeps its compact form, exact while
    each row of θ spans less than ~708 (float64; ~87 without x64).

    Parameters
    ----------
    trace : Trace
        From a structure's ``sample`` (or ``run``); leading shape ``lead``.
    theta : array, shape ``(..., m)``
        The scores; its batch shape broadcasts to ``lead`` (sample axes first).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``lead``
        ``log p(T; θ)``, differentiable in θ (gradients summed over broadcast axes).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> S = dc.structured
    >>> theta = np.log(np.array([1.0, 2.0, 1.0]))
    >>> y, trace = S.top_k.sample(theta, 1, noise=np.array([1.0, 0.1, 1.0]))
    >>> y, float(np.exp(S.log_prob(trace, theta)))   # p(item 1 first) = 2/4
    (array([0., 1., 0.]), 0.5)
    """
    trace = _check_trace(trace)
    check_finite = check_flag(check_finite, name="check_finite")
    theta, xp, out_dtype = _check_theta_for(trace, theta, check_finite=check_finite)
    # a compact Kruskal trace: no dense masks, unless the concrete scores span more than
    # the exponent range (decided here: JAX traces the Op's forward even without jit)
    if trace._active is None and not _forest_needs_dense(theta, xp):
        return Bound(LogProbOp(trace.forest.graph), (theta, trace.choices, trace.forest.record), out_dtype)
    return Bound(LogProbOp(), (theta, trace.choices, trace.active), out_dtype)


def score(trace: Any, theta: Any, *, check_finite: bool = True) -> Any:
    r"""Per-sample score :math:`\nabla_\theta \log p(T;\theta)` of a trace, in closed form.

    .. math::

        \nabla_{\theta_j} \log p(T;\theta) = \sum_t
            \bigl[\mathbb 1[j = c_t] - \operatorname{softmax}_{A_t}(\theta)_j\bigr]

    (Struminsky et al. 2021). Unlike the VJP of :func:`log_prob`, nothing is summed
    over the sample axes: this is what REINFORCE multiplies by each sample's loss.

    Parameters
    ----------
    trace : Trace
        Leading shape ``lead``.
    theta : array, shape ``(..., m)``
        Batch shape broadcasting to ``lead``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(*lead, m)``
        Not differentiable (a plain array).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> theta = np.zeros(3)
    >>> _, trace = dc.structured.top_k.sample(theta, 1, noise=np.array([0.5, 1.0, 2.0]))
    >>> dc.structured.score(trace, theta).round(3)
    array([ 0.667, -0.333, -0.333])
    """
    trace = _check_trace(trace)
    check_finite = check_flag(check_finite, name="check_finite")
    theta, xp, _ = _check_theta_for(trace, theta, check_finite=check_finite)
    if trace._active is None:
        return _forest_law(theta, trace.choices, trace.forest.record, trace.forest.graph, xp, grad=True)[1]
    return _log_prob_and_score(theta, trace.choices, trace.active, xp)[1]


@dataclass(frozen=True)
class LogProbExponentialsOp(Op):
    """``Σ_j [θ_j − e^{θ_j} E_j]``; inputs ``(theta, E)``."""

    name: ClassVar[str] = "structured.log_prob_exponentials"

    def forward(self, theta: Any, e: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        lam = xp.exp(theta)
        value = xp.sum(theta - lam * e, axis=-1)
        return value, (theta, e)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        theta, e = residuals
        lam = xp.exp(theta)
        gt = g[..., None] * (1.0 - lam * e)
        ge = g[..., None] * (-lam)
        return (_sum_to(gt, tuple(theta.shape), xp), _sum_to(ge, tuple(e.shape), xp))


@op_function
def log_prob_exponentials(e: Any, theta: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Log-density of the exponentials themselves, :math:`\log p(E;\theta)`.

    .. math::

        \log p(E;\theta) = \sum_j \bigl[\theta_j - e^{\theta_j} E_j\bigr], \qquad
        \frac{\partial}{\partial\theta_j} = 1 - \lambda_j E_j ,

    the independent :math:`\mathrm{Exp}(\lambda_j = e^{\theta_j})` densities whose
    recursive argmins define every structure (Struminsky et al. 2021, the
    "E-REINFORCE" score; Grathwohl et al. 2018 for the relaxed variable).

    Parameters
    ----------
    e : array, shape ``(*lead, m)``
        Positive exponentials (``trace.exponentials``).
    theta : array, shape ``(..., m)``
        Scores; batch shape broadcasting to ``lead``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``lead``
        Differentiable in θ and in ``e``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> dc.structured.log_prob_exponentials(np.array([1.0, 0.5]), np.zeros(2))
    np.float64(-1.5)
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    ev, _, _ = check_scores(e, name="e", check_finite=check_finite)
    _check_exponentials(ev)
    if ev.shape[-1] != theta.shape[-1]:
        raise ValueError(
            f"e must have theta's {theta.shape[-1]} entries on its last axis, got shape {tuple(ev.shape)}"
        )
    ev = xp.astype(ev, theta.dtype)
    return Bound(LogProbExponentialsOp(), (theta, ev), out_dtype)


def score_exponentials(e: Any, theta: Any) -> Any:
    r"""Per-sample score :math:`\nabla_\theta \log p(E;\theta) = 1 - e^{\theta} E`.

    The score of the exponentials (E-REINFORCE of Struminsky et al. 2021); a plain
    array of shape ``(*lead, m)``, nothing summed.

    Parameters
    ----------
    e : array, shape ``(*lead, m)``
        The exponentials.
    theta : array, shape ``(..., m)``
        Scores, broadcasting to ``e``.

    Returns
    -------
    array, shape ``(*lead, m)``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> dc.structured.score_exponentials(np.array([1.0, 0.5]), np.zeros(2))
    array([0. , 0.5])
    """
    theta, xp, _ = check_scores(theta)
    ev, _, _ = check_scores(e, name="e")
    _check_exponentials(ev)
    return 1.0 - xp.exp(theta) * xp.astype(ev, theta.dtype)


def _check_exponentials(e: Any) -> None:
    """Concrete exponentials must be non-negative (``Exp(λ)`` has no mass below 0)."""
    backend = backend_for(e)
    if not backend.is_traced(e) and bool(array_namespace(e).any(e < 0)):
        raise ValueError("e must hold exponentials (non-negative values)")


def exponentials(theta: Any, *, rng: Any = None, noise: Any = None, num_samples: int | None = None) -> Any:
    r"""Exponentials :math:`E = \varepsilon\, e^{-\theta}`, :math:`\varepsilon \sim \mathrm{Exp}(1)`.

    The reparametrisation of :math:`E_j \sim \mathrm{Exp}(\lambda_j = e^{\theta_j})`
    (Struminsky et al. 2021, section 2): plain array arithmetic, so torch and JAX
    autodiff differentiate ``E`` with respect to θ (RELAX's critic needs it).

    Parameters
    ----------
    theta : array, shape ``(..., m)``
        Validated scores.
    rng : generator or int, optional
        Draws ε (the backend's generator, a NumPy ``Generator`` or an int seed).
    noise : array, optional
        Pre-drawn standard exponentials ε, shape ``(num_samples, *theta.shape)`` (or
        ``theta.shape`` when ``num_samples`` is None). Not with ``rng``.
    num_samples : int, optional
        Add a leading sample axis of this length.

    Returns
    -------
    array
        ``E``, shape ``(num_samples, *theta.shape)`` or ``theta.shape``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> dc.structured.exponentials(np.log(np.array([1.0, 2.0])), noise=np.array([1.0, 1.0]))
    array([1. , 0.5])
    """
    theta, eps, xp = _standard_exponentials(theta, rng, noise, num_samples)
    return eps * xp.exp(-theta)


def _standard_exponentials(
    theta: Any, rng: Any, noise: Any, num_samples: Any
) -> tuple[Any, Any, Any]:
    """Validated θ, the standard exponentials ε and the namespace."""
    theta, xp, _ = check_scores(theta)
    if num_samples is not None:
        num_samples = check_int(num_samples, name="num_samples", low=1)
    sample_shape = () if num_samples is None else (num_samples,)
    eps = bind_noise(
        theta, rng, noise, law=EXPONENTIAL, sample_shape=sample_shape, sample_names=("num_samples",)
    )
    _check_non_negative(eps, noise, theta)
    return theta, eps, xp


def _check_non_negative(z: Any, noise: Any, theta: Any) -> None:
    """Given (concrete) ``noise`` must hold standard exponential draws."""
    backend = backend_for(theta)
    if noise is not None and not backend.is_traced(z) and backend.all_finite(z) is not False:
        if bool(array_namespace(z).any(z < 0)):
            raise ValueError("noise must hold standard exponential draws (non-negative)")


def race_keys(
    theta: Any, *, rng: Any = None, noise: Any = None, num_samples: int | None = None
) -> tuple[Any, Any]:
    """The exponentials ``E = ε e^{-θ}`` and the keys ``log ε − θ = log E`` the
    comparison-based samplers run on.

    ``log`` is increasing, so every argmin over ``E`` is the argmin over the keys; the
    keys stay finite and keep their order when ``e^{-θ}`` under- or overflows
    (``|θ| ≳ 700`` in float64, ``≳ 87`` in float32), where ``E`` itself would tie at 0
    or be infinite. ε = 0 is clamped to the smallest normal number."""
    theta, eps, xp = _standard_exponentials(theta, rng, noise, num_samples)
    tiny = float(np.finfo(np.float32 if theta.dtype == xp.float32 else np.float64).tiny)
    return eps * xp.exp(-theta), xp.log(backend_for(eps).clamp_min(eps, tiny)) - theta


def with_exponentials(trace: Trace, e: Any) -> Trace:
    """``trace`` with its exponentials replaced by ``e`` (same leading shape)."""
    return Trace(
        trace.choices, trace._active, e, trace.parent, trace.structure, forest=trace.forest
    )


def conditional_sample(trace: Any, theta: Any, *, rng: Any = None, noise: Any = None) -> Any:
    r"""Draw exponentials :math:`E \mid T` that reproduce the trace ``T`` (stochastic invariant).

    Given the trace, with :math:`\Lambda_t = \sum_{j\in A_t} e^{\theta_j}` and
    independent :math:`v_t, u_j \sim \mathrm{Exp}(1)`,

    .. math::

        E_j = \sum_{t:\, j \in A_t} \frac{v_t}{\Lambda_t}
            + \mathbb 1[j \text{ never chosen}]\, u_j e^{-\theta_j}

    (each step's minimum exceeds the previous ones by :math:`\mathrm{Exp}(\Lambda_t)`,
    and an entry stays above the minimum of every step it takes part in; for a chain,
    :math:`E_{c_t} = \sum_{s \le t} v_s/\Lambda_s`): the conditional law of
    the exponentials given the algorithm's execution (Struminsky et al. 2021,
    section 3.2), used for the conditional relaxed sample of RELAX (Grathwohl et al.
    2018). Re-running the algorithm on the result gives the same trace, with
    probability one. Plain array arithmetic: differentiable in θ by torch / JAX
    autodiff (the reparametrisation).

    Parameters
    ----------
    trace : Trace
        Leading shape ``lead``, ``T`` steps, ``m`` entries.
    theta : array, shape ``(..., m)``
        Scores; batch shape broadcasting to ``lead``.
    rng : generator or int, optional
        Draws ``(v, u)``.
    noise : array, optional
        Pre-drawn standard exponentials, shape ``(*lead, T + m)``: ``v`` first, then
        ``u``. Not with ``rng``.

    Returns
    -------
    array, shape ``(*lead, m)``
        The conditioned exponentials.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> S = dc.structured
    >>> theta = np.zeros(4)
    >>> y, trace = S.top_k.sample(theta, 2, rng=0)
    >>> e = S.conditional_sample(trace, theta, rng=1)
    >>> bool((S.top_k.run(e, 2)[0] == y).all())
    True
    """
    trace = _check_trace(trace)
    theta, xp, _ = _check_theta_for(trace, theta)
    lead, t_steps, m = trace.shape, trace.num_steps, trace.size
    z = bind_noise(theta, rng, noise, law=EXPONENTIAL, event_shape=(*lead, t_steps + m))
    _check_non_negative(z, noise, theta)
    v, u = z[..., :t_steps], z[..., t_steps:]
    if trace._active is None and not _forest_needs_dense(theta, xp):
        # compact Kruskal trace: the same sums without dense masks
        graph, record = trace.forest.graph, trace.forest.record
        wide = _wide(xp, theta.dtype)
        th = xp.astype(theta, wide)
        top = xp.max(th, axis=-1, keepdims=True)
        m_a, m_b, chosen = _forest_parts(record, trace.choices, graph, wide, xp)
        rate = _forest_total(xp.exp(th - top), m_a, m_b, graph, xp)  # Λ_t e^{-max θ}
        w = xp.astype(v, wide) * xp.exp(-top) / rate
        base = _forest_spread(w, m_a, m_b, graph, xp)
        base = xp.astype(base, theta.dtype)
        return xp.where(chosen > 0, base, base + u * xp.exp(-theta))
    th = xp.broadcast_to(theta, (*lead, m))
    active = trace.active
    if _needs_top_shift(theta, xp):
        # Λ_t = e^{M_t} Σ_{A_t} e^{θ_j − M_t}, M_t the step's largest active score: the
        # sums neither overflow nor underflow (|θ| ~ 1e3 in float64, ~ 1e2 in float32)
        masked = xp.where(active, th[..., None, :], -math.inf)
        top = xp.max(masked, axis=-1)
        top = xp.where(xp.any(active, axis=-1), top, 0.0)  # padding steps (empty sets)
        rate = xp.sum(xp.exp(masked - top[..., None]), axis=-1)
    else:
        # scores spanning less than the exponent range: one shift per row suffices
        top = xp.max(th, axis=-1, keepdims=True)
        rate = xp.sum(xp.where(active, xp.exp(th - top)[..., None, :], 0.0), axis=-1)
    rate = xp.where(rate > 0, rate, 1.0)
    w = v * xp.exp(-top) / rate
    # every entry gathers the step minima of the steps where it was active: a chosen
    # entry up to its own step, a never-chosen one all of them, plus its own Exp(λ_j)
    base = xp.sum(xp.where(active, w[..., None], 0.0), axis=-2)
    is_chosen = xp.any(_onehot(trace.choices, m, xp), axis=-2)
    return xp.where(is_chosen, base, base + u * xp.exp(-th))
