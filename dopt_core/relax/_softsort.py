r"""Soft sort and soft rank by projection onto the permutahedron (Blondel et al., ICML 2020).

With :math:`\rho = (n, n-1, \dots, 1)` and the permutahedron
:math:`\mathcal P(w) = \operatorname{conv}\{w_\pi\}`, the regularised projections are

.. math::

    P_Q(z, w) = \operatorname*{argmin}_{\mu \in \mathcal P(w)} \tfrac12 \|\mu - z\|^2
              = z - v_Q(z_\sigma, w_{\downarrow})_{\sigma^{-1}}, \qquad
    P_E(z, w) = \operatorname*{argmin}_{\mu \in \mathcal P(w)} \operatorname{KL}(\mu, e^{z})
              = e^{\,z - v_E(z_\sigma, \log w_{\downarrow})_{\sigma^{-1}}},

where :math:`\sigma` sorts :math:`z` in descending order, :math:`w_\downarrow` is
:math:`w` sorted descending, and :math:`v` solves an isotonic regression with
non-increasing constraints,

.. math::

    v_Q(y, w) = \operatorname*{argmin}_{v_1 \ge \dots \ge v_n} \tfrac12\|v - (y - w)\|^2, \qquad
    v_E(y, w) = \operatorname*{argmin}_{v_1 \ge \dots \ge v_n}
                \langle e^{y - v}, 1\rangle + \langle e^{w}, v\rangle ,

solved exactly by pool-adjacent-violators (PAV) in O(n): on each pooled block
:math:`B`, :math:`v_B` is the mean of :math:`y - w` (L2) or
:math:`\operatorname{LSE}(y_B) - \operatorname{LSE}(w_B)` (KL). The Jacobian of
:math:`v` is block-diagonal — :math:`\frac1{|B|}\mathbf 1\mathbf 1^\top` (L2),
:math:`\mathbf 1\,\operatorname{softmax}(\cdot_B)^\top` (KL) — so the VJPs are block sums,
computed on the device with cumulative sums. The forward PAV runs on the host
(:func:`dopt_core.backend.host_call`; SciPy's ``isotonic_regression`` for L2, on
chunks of rows chained with separating offsets so that a whole batch costs a few
calls; a pure-Python PAV for KL, O(n) per row but slow for long rows), everything else
on the arrays' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_scores
from .._lib._compat import device, index_dtype
from ..backend import host_call
from ..op import Bound, Op, op_function
from ._common import check_choice, check_positive

__all__ = ["isotonic_kl", "isotonic_l2", "soft_rank", "soft_sort"]

REGULARIZATIONS = ("l2", "kl")


# ---------------------------------------------------------------------------------
# host PAV
# ---------------------------------------------------------------------------------
def _blocks_l2(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import isotonic_regression

    res = isotonic_regression(y, increasing=False)
    return np.asarray(res.x), np.asarray(res.blocks)


def _blocks_kl(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PAV for v_E: the solution and the blocks (start indices, then n).

    Each new entry is pooled with the blocks before it while it violates
    ``v_prev >= v_new``; a block keeps ``LSE(y_B)``, ``LSE(w_B)`` and its value
    ``LSE(y_B) - LSE(w_B)``. Plain Python floats (this loop is the cost).
    """
    yl, wl = y.tolist(), w.tolist()
    starts: list[int] = []
    ly: list[float] = []
    lw: list[float] = []
    val: list[float] = []
    log1p, exp = math.log1p, math.exp
    for i in range(len(yl)):
        a, b, st = yl[i], wl[i], i
        v = a - b
        while val and val[-1] < v:
            pa, pb = ly.pop(), lw.pop()
            val.pop()
            st = starts.pop()
            a = max(a, pa) + log1p(exp(-abs(a - pa)))
            b = max(b, pb) + log1p(exp(-abs(b - pb)))
            v = a - b
        starts.append(st)
        ly.append(a)
        lw.append(b)
        val.append(v)
    blocks = np.asarray([*starts, len(yl)])
    return np.repeat(np.asarray(val), np.diff(blocks)), blocks


def isotonic_l2(y: np.ndarray) -> np.ndarray:
    """``argmin_{v_1 >= ... >= v_n} ½‖v - y‖²`` along the last axis (NumPy, host)."""
    y = np.asarray(y, dtype=np.float64)
    out = np.empty_like(y)
    for idx in np.ndindex(*y.shape[:-1]):
        out[idx] = _blocks_l2(y[idx])[0]
    return out


def isotonic_kl(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``argmin_{v_1 >= ... >= v_n} <e^{y - v}, 1> + <e^w, v>`` along the last axis.

    NumPy, on the host.
    """
    y, w = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(w, dtype=np.float64))
    out = np.empty_like(y)
    for idx in np.ndindex(*y.shape[:-1]):
        out[idx] = _blocks_kl(y[idx], w[idx])[0]
    return out


def _softmax_in_blocks(a: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Softmax of ``a`` within each block ``[blocks[j], blocks[j+1])`` (vectorised)."""
    starts, sizes = blocks[:-1], np.diff(blocks)
    z = a - np.repeat(np.maximum.reduceat(a, starts), sizes)
    ez = np.exp(z)
    return ez / np.repeat(np.add.reduceat(ez, starts), sizes)


def _block_bounds(blocks: np.ndarray, rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last position of every entry's block, local to its row: two ``(rows, n)``.

    ``blocks`` are the block starts of ``rows`` chained rows of length ``n`` (then
    ``rows · n``), as SciPy returns them; no block straddles two rows.
    """
    sizes = np.diff(blocks)
    first = np.repeat(blocks[:-1], sizes).reshape(rows, n)
    last = first + np.repeat(sizes - 1, sizes).reshape(rows, n)
    offset = (np.arange(rows) * n)[:, None]
    return first - offset, last - offset


_ROWS_PER_CALL = 64


def _pav_l2_rows(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """L2 PAV of every row of the 2-D ``y``: solution, block first and last positions.

    Rows are chained into one sequence with a decreasing offset per row, larger than
    the spread of the values, so that no block can straddle two rows (the constraint
    between rows is slack) — one ``isotonic_regression`` call per chunk of rows. The
    offsets cost precision: absolute error about ``64 · spread of the chunk · eps``
    (float64 on the host), ~1e-12 relative to the batch's spread.
    """
    from scipy.optimize import isotonic_regression

    rows, n = y.shape
    v = np.empty((rows, n))
    first = np.empty((rows, n), dtype=np.intp)
    last = np.empty((rows, n), dtype=np.intp)
    for lo in range(0, rows, _ROWS_PER_CALL):
        chunk = y[lo : lo + _ROWS_PER_CALL]
        k = chunk.shape[0]
        big = 2.0 * float(chunk.max() - chunk.min()) + 1.0
        shift = (np.arange(k) * big)[:, None]
        res = isotonic_regression((chunk - shift).ravel(), increasing=False)
        v[lo : lo + k] = np.asarray(res.x).reshape(k, n) + shift
        first[lo : lo + k], last[lo : lo + k] = _block_bounds(np.asarray(res.blocks), k, n)
    return v, first, last


def _pav_kl_rows(
    y: np.ndarray, w: np.ndarray, a: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """KL PAV of every row of the 2-D ``y``, ``w``: solution, block first and last
    positions, and the in-block softmax of ``a`` (the VJP weights)."""
    rows, n = y.shape
    v = np.empty((rows, n))
    starts = []
    for r in range(rows):
        v[r], blocks = _blocks_kl(y[r], w[r])
        starts.append(blocks[:-1] + r * n)
    blocks = np.concatenate([*starts, [rows * n]])
    first, last = _block_bounds(blocks, rows, n)
    aux = _softmax_in_blocks(a.ravel(), blocks).reshape(rows, n)
    return v, first, last, aux


def _stable_order(key: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable ascending argsort of every row of ``key`` and the sorted rows.

    NumPy's default (introsort) argsort is several times faster than its stable one;
    it is stable too on rows whose sorted values strictly increase, so only the rows
    with ties (or NaN) are sorted again with ``kind="stable"``: the result is always
    the stable order — ties in index order, the same on every backend. ``flat`` is
    ``row · n`` per row (flat indexing is faster than ``take_along_axis``).
    """
    order = np.argsort(key, axis=-1)
    sk = key.ravel().take(order + flat).reshape(key.shape)
    if key.shape[-1] > 1:
        ties = ~np.all(sk[:, :-1] < sk[:, 1:], axis=-1)
        if ties.any():
            bad = np.flatnonzero(ties)
            o = np.argsort(key[bad], axis=-1, kind="stable")
            order[bad] = o
            sk[bad] = np.take_along_axis(key[bad], o, axis=-1)
    return order, sk


# the packed host result, ``(..., rows, n)`` per op: output, then residuals
_RANK_ROWS = 5  # ranks, sort order, block first, block last, VJP weights
_SORT_ROWS = 4  # sorted values, block first, block last, VJP weights


def _forward_host(x: np.ndarray, *, rank: bool, reg: str, eps: float, descending: bool) -> np.ndarray:
    """The whole forward on the host, packed as ``(..., K, n)`` in ``x``'s dtype.

    Sorting, PAV and its bookkeeping in one pass. Every row is in ``x``'s (original)
    order except soft sort's output and the rank's sort order: positions in the sorted
    order, ``order[j]`` = index of the ``j``-th entry, block bounds ``first``/``last``
    = sorted positions of the first/last entry of the entry's PAV block. The VJP
    weights are ``sign/ε · 1/|B|`` (L2) or ``sign/ε · softmax_B(s)`` (KL) for soft rank,
    ``1/|B|`` or ``softmax_B(s)`` for soft sort (``s`` the sorted values).
    """
    *batch, n = x.shape
    rows_k = _RANK_ROWS if rank else _SORT_ROWS
    X = np.asarray(x, dtype=np.float64).reshape(-1, n)
    rows = X.shape[0]
    packed = np.empty((rows, rows_k, n), dtype=x.dtype)
    if rows == 0:
        return packed.reshape(*batch, rows_k, n)
    # ascending key: rank sorts theta = ±x/ε descending, sort sorts ±x ascending
    key = -X if rank != descending else X
    order, sk = _stable_order(key, (np.arange(rows) * n)[:, None])
    rho = np.arange(n, 0, -1, dtype=np.float64)
    if rank:
        s = sk / -eps  # theta sorted descending
        if reg == "l2":
            v, first, last = _pav_l2_rows(s - rho)
            out, aux = s - v, 1.0 / (last - first + 1)
        else:
            v, first, last, aux = _pav_kl_rows(s, np.broadcast_to(np.log(rho), s.shape), s)
            out = np.exp(s - v)
        aux *= (-1.0 if descending else 1.0) / eps
        scattered = (out, first, last, aux)
        packed[:, 1] = order
    else:
        s, z = -sk, rho / eps
        if reg == "l2":
            v, first, last = _pav_l2_rows(z - s)
            aux = 1.0 / (last - first + 1)
        else:
            v, first, last, aux = _pav_kl_rows(np.broadcast_to(z, s.shape), s, s)
        packed[:, 0] = z - v if descending else v - z
        scattered = (first, last, aux)
    # sorted -> original order: entry j of a row goes to position order[j]
    flat = packed.reshape(-1)
    dest = (order + (np.arange(rows) * (rows_k * n))[:, None]).ravel()
    for k, a in zip((0, 2, 3, 4) if rank else (1, 2, 3), scattered, strict=True):
        flat[k * n :][dest] = a.ravel()
    return packed.reshape(*batch, rows_k, n)


# ---------------------------------------------------------------------------------
# device-side pieces
# ---------------------------------------------------------------------------------
def _host_forward(op: Any, x: Any, *, rank: bool, xp: Any) -> tuple[Any, Any, Any]:
    """Run :func:`_forward_host`; return ``(y, flat indices (..., 3|2, n), weights)``.

    Indices become flat (``row · n`` added): the VJP gathers with 1-D integer-array
    indexing, which is cheaper than ``take_along_axis`` through array-api-compat.
    """
    *batch, n = x.shape
    rows_k = _RANK_ROWS if rank else _SORT_ROWS

    def func(x_np: np.ndarray) -> np.ndarray:
        return _forward_host(x_np, rank=rank, reg=op.reg, eps=op.strength, descending=op.descending)

    packed = host_call(func, x, shape=(*batch, rows_k, n), dtype=x.dtype)
    itype = index_dtype(xp)
    rows = math.prod(batch)
    base = xp.reshape(xp.arange(0, rows * n, n, dtype=itype, device=device(x)), (*batch, 1, 1))
    idx = xp.astype(packed[..., 1 : rows_k - 1, :], itype) + base
    # a fresh array: torch forbids in-place edits of a custom Function's view outputs
    y = xp.asarray(packed[..., 0, :], copy=True)
    return y, idx, packed[..., rows_k - 1, :]


def _block_sums(u: Any, first: Any, last: Any, *, xp: Any) -> Any:
    """``Σ_{i ∈ block} u_i`` at every entry, from flat block bounds (cumulative sums)."""
    c = xp.cumulative_sum(u, axis=-1)
    return xp.reshape(c, (-1,))[last] - xp.reshape(c - u, (-1,))[first]


@dataclass(frozen=True)
class SoftRankOp(Op):
    strength: float
    reg: str
    descending: bool
    name: ClassVar[str] = "soft_rank"
    host: ClassVar[bool] = True

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        r, idx, weights = _host_forward(self, x, rank=True, xp=xp)
        return r, ((idx, weights, r) if self.reg == "kl" else (idx, weights))

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        # sorted coordinates: J = (I - blocks of 1/|B|) / ε (L2), diag(r) - ... (KL)
        idx, weights = residuals[0], residuals[1]
        h = cotangent * residuals[2] if self.reg == "kl" else cotangent
        hs = xp.reshape(h, (-1,))[idx[..., 0, :]]  # h in sorted order
        scale = (-1.0 if self.descending else 1.0) / self.strength
        return (h * scale - weights * _block_sums(hs, idx[..., 1, :], idx[..., 2, :], xp=xp),)


@dataclass(frozen=True)
class SoftSortOp(Op):
    strength: float
    reg: str
    descending: bool
    name: ClassVar[str] = "soft_sort"
    host: ClassVar[bool] = True

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        y, idx, weights = _host_forward(self, x, rank=False, xp=xp)
        return y, (idx, weights)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        # the output is in sorted order: entry i gets its block's cotangent sum, weighted
        idx, weights = residuals
        return (weights * _block_sums(cotangent, idx[..., 0, :], idx[..., 1, :], xp=xp),)


def _validate(
    x: Any, strength: Any, reg: Any, descending: Any, check_finite: bool
) -> tuple[Any, Any, float, str, bool]:
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    strength = check_positive(strength, name="regularization_strength")
    reg = check_choice(reg, name="regularization", choices=REGULARIZATIONS)
    descending = check_flag(descending, name="descending")
    return x, out_dtype, strength, reg, descending


@op_function
def soft_sort(
    x: Any,
    /,
    *,
    regularization_strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Soft sort along the last axis (Blondel et al. 2020), ascending by default.

    With :math:`\varepsilon` = ``regularization_strength``,

    .. math::

        \text{L2:}\ \ s_\varepsilon(x) = -P_Q(\rho/\varepsilon, -x), \qquad
        \text{KL:}\ \ s_\varepsilon(x) = -\log P_E(\rho/\varepsilon, e^{-x})

    (see the module docstring), the conventions of torchsort (weights
    :math:`(n, \dots, 1)/\varepsilon`): the numbers equal ``torchsort.soft_sort``. As
    :math:`\varepsilon \to 0` the output is the exact ascending sort; as
    :math:`\varepsilon \to \infty`, L2 tends to the mean of ``x`` in every slot and KL to
    :math:`-\log \operatorname{mean}(e^{-x})`. L2 is piecewise linear in ``x``. Any batch
    shape; ``descending=True`` returns ``-soft_sort(-x)``.

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_sort
    >>> soft_sort(np.array([3.0, 1.0, 2.0]), regularization_strength=0.1)
    array([1., 2., 3.])
    >>> soft_sort(np.array([3.0, 1.0, 2.0]), regularization_strength=10.0)
    array([1.9, 2. , 2.1])

    References
    ----------
    Blondel, Teboul, Berthet, Djolonga, "Fast differentiable sorting and ranking",
    ICML 2020, arXiv:2002.08871.
    """
    x, out_dtype, eps, reg, desc = _validate(
        x, regularization_strength, regularization, descending, check_finite
    )
    return Bound(SoftSortOp(eps, reg, desc), (x,), out_dtype)


@op_function
def soft_rank(
    x: Any,
    /,
    *,
    regularization_strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Soft ranks along the last axis (Blondel et al. 2020), 1-based, ascending by default.

    .. math::

        \text{L2:}\ \ r_\varepsilon(x) = P_Q(x/\varepsilon, \rho), \qquad
        \text{KL:}\ \ r_\varepsilon(x) = P_E(x/\varepsilon, \rho)

    with :math:`\rho = (n, \dots, 1)`: the largest entry gets rank ``n`` (``descending=True``:
    rank 1), as :func:`dopt_core.solvers.rank` and ``torchsort.soft_rank``. As
    :math:`\varepsilon \to 0` the ranks are exact; as :math:`\varepsilon \to \infty` every
    rank tends to :math:`(n+1)/2`. Ranks always lie in the permutahedron (they sum to
    :math:`n(n+1)/2`).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_rank
    >>> soft_rank(np.array([[0.3, -1.0, 2.0]]), regularization_strength=0.01)
    array([[2., 1., 3.]])
    >>> np.round(soft_rank(np.array([0.3, -1.0, 2.0]), regularization_strength=1e4), 3)
    array([2., 2., 2.])

    References
    ----------
    Blondel, Teboul, Berthet, Djolonga, "Fast differentiable sorting and ranking",
    ICML 2020, arXiv:2002.08871.
    """
    x, out_dtype, eps, reg, desc = _validate(
        x, regularization_strength, regularization, descending, check_finite
    )
    return Bound(SoftRankOp(eps, reg, desc), (x,), out_dtype)
