"""Host half of soft sort / soft rank: stable sort, PAV and the packed result (pure NumPy).

Everything here runs on NumPy arrays inside the one :func:`dopt_core.backend.host_call`
of :mod:`dopt_core.relax._softsort`: a stable sort, pool-adjacent-violators (SciPy's
``isotonic_regression`` for L2 on chunks of chained rows, a Python PAV for KL), the
outputs from block means in a cancellation-free form, and the VJP's bookkeeping
(sort order, block bounds, weights) packed with the output into one array of the
input's dtype. No framework array reaches this module.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "RANK_ROWS",
    "SORT_ROWS",
    "flat_on_host",
    "forward_host",
    "isotonic_kl",
    "isotonic_l2",
]


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


# flat positions (row · n + j) are exact in the packed float array up to this many
# entries in all; beyond, the host writes per-row positions and the device adds row · n
MAX_FLAT = {4: 2**24, 8: 2**53}


def flat_on_host(entries: int, itemsize: int) -> bool:
    return entries <= MAX_FLAT[itemsize]


# the packed host result, ``(..., K, n)`` per op: the output, then the residuals
RANK_ROWS = 5  # ranks, sort order, block first, block last, VJP weights
SORT_ROWS = 4  # sorted values, block first, block last, VJP weights


def forward_host(
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
    rows_k = RANK_ROWS if rank else SORT_ROWS
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


