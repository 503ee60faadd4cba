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
:math:`\mathbf 1\,\operatorname{softmax}(\cdot_B)^\top` (KL) — so the VJPs are block sums:
a cumulative sum and two gathers (plus one into sorted order for soft rank), array-API
code on the arrays' device. The forward runs on the host in one
:func:`dopt_core.backend.host_call` (one transfer each way): a stable sort, PAV (SciPy's
``isotonic_regression`` for L2, on chunks of rows chained with separating offsets so
that a whole batch costs a few calls; a pure-Python PAV for KL, O(n) per row but slow
for long rows) and its bookkeeping, returned as one array holding the output and the
VJP's residuals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_choice, check_flag, check_positive, check_scores
from .._lib._compat import device, index_dtype, is_jax_array
from ..backend import host_call
from ..op import Bound, Op, op_function

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
    """PAV for v_E: the solution and the blocks (start indices, then n)."""
    val, blocks = _kl_pav(y, w)
    return np.repeat(val, np.diff(blocks)), blocks


def _kl_pav(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PAV for v_E: the value of every block and the blocks (start indices, then n).

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
    return np.asarray(val), np.asarray([*starts, len(yl)])


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


def _logsumexp_in_blocks(a: np.ndarray, starts: np.ndarray, bid: np.ndarray) -> np.ndarray:
    """``LSE(a_B)`` of every block (starts ``starts``; ``bid`` = block of every entry)."""
    m = np.maximum.reduceat(a, starts)
    return m + np.log(np.add.reduceat(np.exp(a - m.take(bid)), starts))


_ROWS_PER_CALL = 128


def _chain_offsets(
    lo: np.ndarray, hi: np.ndarray, *, scale: float = 1.0, extra: float = 0.0
) -> np.ndarray:
    """Offsets that chain rows into one isotonic problem per chunk of rows.

    Each row's values lie in ``[lo·scale, hi·scale + extra]`` (``lo``, ``hi`` per row;
    ``scale > 0``). Within a chunk row ``r`` is shifted down by ``r · big``, ``big`` a
    power of two above twice the chunk's spread: no block can straddle two rows (the
    constraint between rows is slack), and subtracting the offset is exact for
    integer (dyadic) data, so ties there stay ties.
    """
    rows = lo.shape[0]
    shift = np.arange(rows, dtype=np.float64)
    for c in range(0, rows, _ROWS_PER_CALL):
        chunk = slice(c, c + _ROWS_PER_CALL)
        spread = (float(hi[chunk].max()) - float(lo[chunk].min())) * scale + extra
        if not math.isfinite(spread):  # NaN/inf with check_finite=False: garbage, no error
            spread = 0.0
        big = 2.0 ** math.ceil(math.log2(2.0 * spread + 1.0))
        if rows <= _ROWS_PER_CALL:
            shift *= big
        else:
            shift[chunk] = (shift[chunk] - c) * big
    return shift


def _isotonic_chained(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-increasing isotonic regression of rows chained by :func:`_chain_offsets`:
    the block starts (flat positions, then ``y.size``) and the solution, ``(rows, n)``."""
    from scipy.optimize import isotonic_regression

    rows, n = y.shape
    if rows <= _ROWS_PER_CALL:
        res = isotonic_regression(y.ravel(), increasing=False)
        return res.blocks, res.x.reshape(rows, n)
    starts, xs = [], []
    for c in range(0, rows, _ROWS_PER_CALL):
        res = isotonic_regression(y[c : c + _ROWS_PER_CALL].ravel(), increasing=False)
        starts.append(res.blocks[:-1] + c * n)
        xs.append(res.x)
    return np.concatenate([*starts, [rows * n]]), np.concatenate(xs).reshape(rows, n)


def _pav_l2_rows(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2 PAV of every row of the 2-D ``y``: the block starts (flat positions, then
    ``y.size``) and the value of every block.

    Rows are chained (:func:`_chain_offsets`): one ``isotonic_regression`` call per
    chunk of rows. The offsets cost precision: absolute error about
    ``256 · spread of the chunk · eps`` (float64 on the host), ~1e-13 relative to the
    batch's spread; where two adjacent blocks of a row have equal values (a kink),
    rounding may split or merge them differently from a row-by-row PAV (same values,
    another valid subgradient).
    """
    n = y.shape[-1]
    shift = _chain_offsets(y.min(axis=-1), y.max(axis=-1))
    blocks, xs = _isotonic_chained(y - shift[:, None])
    st = blocks[:-1]
    return blocks, xs.ravel().take(st) + shift.take(st // n)


def _pav_kl_rows(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KL PAV of every row of the 2-D ``y``, ``w``: block starts and block values, as
    :func:`_pav_l2_rows` (a Python loop over the rows)."""
    y, w = np.broadcast_arrays(y, w)
    rows, n = y.shape
    starts, values = [], []
    for r in range(rows):
        val, blocks = _kl_pav(y[r], w[r])
        starts.append(blocks[:-1] + r * n)
        values.append(val)
    return np.concatenate([*starts, [rows * n]]), np.concatenate(values)


def _stable_order(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable ascending argsort of every row of the 2-D ``key``: the order, the same as
    flat indices (``row · n`` added) and the sorted rows.

    NumPy's default (introsort) argsort is several times faster than its stable one,
    and already stable on rows whose sorted values strictly increase. On the other
    rows (ties, NaN) each run of equal values is put in index order by sorting the
    unique integers ``run · n + index``: the result is always the stable order — ties
    in index order, as on every backend.
    """
    rows, n = key.shape
    order = np.argsort(key, axis=-1)
    flat = order + np.arange(0, rows * n, n)[:, None]
    sk = key.ravel().take(flat)
    increasing = sk[:, :-1] < sk[:, 1:]
    if not increasing.all():
        bad = np.flatnonzero(~increasing.all(axis=-1))
        sb = sk[bad]
        same = (sb[:, 1:] == sb[:, :-1]) | (np.isnan(sb[:, 1:]) & np.isnan(sb[:, :-1]))
        run = np.zeros(sb.shape, dtype=np.int64)
        np.cumsum(~same, axis=-1, out=run[:, 1:])
        order[bad] = np.sort(run * n + order[bad], axis=-1) % n
        flat[bad] = order[bad] + (bad * n)[:, None]
    return order, flat, sk


_MAX_N_FLOAT32 = 2**24
# flat positions (row · n + j) are exact in the packed float array up to this many
# entries in all; beyond, the host writes per-row positions and the device adds row · n
_MAX_FLAT = {4: 2**24, 8: 2**53}


def _flat_on_host(entries: int, itemsize: int) -> bool:
    return entries <= _MAX_FLAT[itemsize]


# the packed host result, ``(..., K, n)`` per op: the output, then the residuals
_RANK_ROWS = 5  # ranks, sort order, block first, block last, VJP weights
_SORT_ROWS = 4  # sorted values, block first, block last, VJP weights


def _forward_host(
    x: np.ndarray,
    *,
    rank: bool,
    reg: str,
    eps: float,
    descending: bool,
    flat_positions: bool = False,
) -> np.ndarray:
    """The whole forward on the host, packed as ``(..., K, n)`` in ``x``'s dtype.

    Sorting, PAV and its bookkeeping in one pass. Every row is in ``x``'s (original)
    order except soft sort's output and the rank's sort order: positions in the sorted
    order, ``order[j]`` = index of the ``j``-th entry, block bounds ``first``/``last``
    = sorted positions of the first/last entry of the entry's PAV block. The VJP
    weights are ``sign/ε · 1/|B|`` (L2) or ``sign/ε · softmax_B(s)`` (KL) for soft rank,
    ``1/|B|`` or ``softmax_B(s)`` for soft sort (``s`` the sorted values). Only the
    block id of every entry is scattered to the original order; everything else is
    looked up per block. Sorting runs in ``x``'s dtype, PAV and values in float64.
    Positions are per-row, or flat (``row · n`` added) with ``flat_positions`` (the caller checks
    that the packed dtype holds them exactly and that ``x`` is the whole batch, which it
    is not for a JAX ``vmap``-ed callback).
    """
    *batch, n = x.shape
    rows_k = _RANK_ROWS if rank else _SORT_ROWS
    x = np.asarray(x).reshape(-1, n)
    rows, dt = x.shape[0], x.dtype
    packed = np.empty((rows, rows_k, n), dtype=dt)
    if rows == 0:
        return packed.reshape(*batch, rows_k, n)
    # ascending key: rank sorts theta = ±x/ε descending, sort sorts ±x ascending
    key = -x if rank != descending else x
    order, flat, sk = _stable_order(key)
    rho = np.arange(n, 0, -1, dtype=np.float64)
    value = None
    if reg == "l2":
        # the chained PAV input y - w - shift in one go; value bounds from the sorted ends
        lo, hi = sk[:, 0], sk[:, -1]
        if rank:  # y - w = s - rho, s = -sk/ε (theta sorted descending)
            shift = _chain_offsets(lo, hi, scale=1.0 / eps, extra=n - 1.0)
            base = np.add.outer(shift, rho)
            blocks, xs = _isotonic_chained(np.multiply(sk, -1.0 / eps, dtype=np.float64) - base)
        else:  # y - w = z + sk, z = rho/ε; v - z = xs + shift - z = xs + base
            shift = _chain_offsets(lo, hi, extra=(n - 1.0) / eps)
            base = np.subtract.outer(shift, rho / eps)
            blocks, xs = _isotonic_chained(np.subtract(sk, base, dtype=np.float64))
    elif rank:
        s = np.multiply(sk, -1.0 / eps, dtype=np.float64)
        blocks, value = _pav_kl_rows(s, np.log(rho))
    else:
        s = np.negative(sk, dtype=np.float64)
        blocks, value = _pav_kl_rows(rho / eps, s)
    starts, sizes = blocks[:-1], blocks[1:] - blocks[:-1]
    itype = np.int32 if blocks[-1] < 2**31 else np.int64
    bid = np.repeat(np.arange(sizes.size, dtype=itype), sizes)  # block of each sorted entry
    bid_orig = np.empty((rows, n), dtype=itype)  # block of each entry, original order
    bid_orig.ravel()[flat] = bid.reshape(rows, n)
    scale = ((-1.0 if descending else 1.0) / eps) if rank else 1.0
    flat_pos = flat_positions
    if rank:
        theta = np.multiply(key, -1.0 / eps, dtype=np.float64)
        if value is None:
            value = xs.ravel().take(starts) + shift.take(starts // n)
        r = np.subtract(theta, value.take(bid_orig))
        packed[:, 0] = r if reg == "l2" else np.exp(r)
        packed[:, 1] = flat if flat_pos else order
    else:  # v - z, sorted; no in-place ufunc on the packed view (NumPy 2.4 gets
        # in-place negation of an (rows, 1) strided view wrong)
        y_sorted = xs + base if value is None else value.take(bid).reshape(rows, n) - rho / eps
        packed[:, 0] = -y_sorted if descending else y_sorted
    # per-block tables in the output dtype, one take for all: first, last (, weight)
    k0 = 2 if rank else 1
    table = np.empty((3 if reg == "l2" else 2, sizes.size), dtype=dt)
    first = starts if flat_pos else starts % n  # integer arithmetic, then one cast
    table[0] = first
    table[1] = first + (sizes - 1)
    if reg == "l2":
        table[2] = scale / sizes
    # straight into the strided slab; mode="clip" skips the bounds check (bid_orig < #blocks)
    np.take(
        table,
        bid_orig,
        axis=1,
        out=packed[:, k0 : k0 + table.shape[0]].transpose(1, 0, 2),
        mode="clip",
    )
    if reg == "kl":  # softmax_B(s) = exp(s - LSE(s_B)); s in the original order: theta or -key
        lse = _logsumexp_in_blocks(s.ravel(), starts, bid)
        s_orig = theta if rank else np.negative(key, dtype=np.float64)
        packed[:, k0 + 2] = np.exp(s_orig - lse.take(bid_orig)) * scale
    return packed.reshape(*batch, rows_k, n)


# ---------------------------------------------------------------------------------
# device-side pieces
# ---------------------------------------------------------------------------------
def _host_forward(op: Any, x: Any, *, rank: bool, xp: Any) -> tuple[Any, Any, Any]:
    """Run :func:`_forward_host`; return ``(y, flat indices (..., 3|2, n), weights)``.

    Indices are flat (``row · n`` added, on the host where exact, else here): the VJP
    gathers with 1-D integer-array indexing, which is cheaper than ``take_along_axis``
    through array-api-compat.
    """
    *batch, n = x.shape
    rows_k = _RANK_ROWS if rank else _SORT_ROWS

    rows = math.prod(batch)
    # flat positions from the host where exact and where the host sees the whole batch
    # (under JAX's vmap the callback gets the vmapped batch: per-row positions there)
    flat = _flat_on_host(rows * n, 4 if x.dtype == xp.float32 else 8) and not is_jax_array(x)

    def func(x_np: np.ndarray) -> np.ndarray:
        return _forward_host(
            x_np,
            rank=rank,
            reg=op.reg,
            eps=op.strength,
            descending=op.descending,
            flat_positions=flat,
        )

    packed = host_call(func, x, shape=(*batch, rows_k, n), dtype=x.dtype)
    itype = index_dtype(xp)
    idx = xp.astype(packed[..., 1 : rows_k - 1, :], itype)
    if not flat:
        base = xp.arange(0, rows * n, n, dtype=itype, device=device(x))
        idx = idx + xp.reshape(base, (*batch, 1, 1))
    # a fresh array: torch forbids in-place edits of a custom Function's view outputs
    y = xp.asarray(packed[..., 0, :], copy=True)
    return y, idx, packed[..., rows_k - 1, :]


def _block_sums(u: Any, first: Any, last: Any, *, xp: Any) -> Any:
    """``Σ_{i ∈ block} u_i``: ``u`` in sorted order, ``first``/``last`` the flat sorted
    positions of each entry's block ends (cumulative sums and two gathers)."""
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
        # ±1/ε · (h - weight_B · Σ_B h) with h = g (L2, weight 1/|B|) or g·r (KL, weight
        # softmax_B(s)); the block sums run over the sorted order
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
    x, xp, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    if x.dtype == xp.float32 and x.shape[-1] > _MAX_N_FLOAT32:
        # the host packs sort positions into the float32 result: exact up to 2**24
        raise ValueError(
            f"x: float32 rows longer than 2**24 are not supported (got {x.shape[-1]}); use float64"
        )
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

    Parameters
    ----------
    x : array, shape ``(..., n)``
        Values; leading axes are batch axes.
    regularization_strength : float > 0
        ε: small values approach the exact operation, large ones flatten it.
    regularization : {"l2", "kl"}
        Quadratic (Euclidean projection) or entropic regularisation.
    descending : bool
        Reverse the order.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

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

    Parameters
    ----------
    x : array, shape ``(..., n)``
        Values; leading axes are batch axes.
    regularization_strength : float > 0
        ε: small values approach the exact operation, large ones flatten it.
    regularization : {"l2", "kl"}
        Quadratic (Euclidean projection) or entropic regularisation.
    descending : bool
        Reverse the order.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

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
