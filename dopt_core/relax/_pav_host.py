"""Host half of soft sort / soft rank: stable sort, PAV and the packed result (pure NumPy).

Everything here runs on NumPy arrays inside the one :func:`dopt_core.backend.host_call`
of :mod:`dopt_core.relax._softsort`: a stable sort, pool-adjacent-violators (SciPy's
``isotonic_regression`` for L2 on chunks of chained rows, a batched PAV for KL), the
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
_SPREAD_RATIO = 256.0  # largest ratio of row spreads chained in one call


def _chunk_starts(spread: np.ndarray) -> np.ndarray:
    """First row of every chunk (then ``rows``): at most :data:`_ROWS_PER_CALL` rows, and
    row spreads within a factor :data:`_SPREAD_RATIO` of each other, so that the
    chunk's offsets (multiples of its largest spread) round every row's values at
    about ``_ROWS_PER_CALL · _SPREAD_RATIO · eps`` relative to that row's own spread,
    whatever the other rows hold. One vectorised test in the common case of a batch
    of similar rows (fixed chunks); a greedy pass over the rows otherwise."""
    rows = spread.shape[0]
    fixed = np.arange(0, rows, _ROWS_PER_CALL)
    sp = np.where(np.isfinite(spread), spread, 0.0)
    sp = np.maximum(sp, float(sp.max(initial=0.0)) * 2.0**-1000 + 2.0**-1000)
    if rows == 0 or float(sp.max()) <= _SPREAD_RATIO * float(sp.min()):
        return np.append(fixed, rows)
    starts, lo, hi, count = [0], float(sp[0]), float(sp[0]), 1
    for r, v in enumerate(sp.tolist()[1:], start=1):
        lo, hi, count = min(lo, v), max(hi, v), count + 1
        if count > _ROWS_PER_CALL or hi > _SPREAD_RATIO * lo:
            starts.append(r)
            lo, hi, count = v, v, 1
    return np.asarray([*starts, rows])


def _chain_offsets(
    lo: np.ndarray, hi: np.ndarray, *, scale: float = 1.0, extra: float = 0.0, unit: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Offsets that chain rows into one isotonic problem per chunk of rows, and the
    chunks (first rows, then ``rows``; :func:`_chunk_starts`).

    Each row's values lie in ``[lo·scale, hi·scale + extra]`` (``lo``, ``hi`` per row;
    ``scale > 0``). Within a chunk row ``r`` is shifted down by ``r · big``, ``big`` a
    power of two above twice the chunk's spread: no block can straddle two rows (the
    constraint between rows is slack), and subtracting the offset is exact for
    integer (dyadic) data, so ties there stay ties. ``unit = k``: the values are those
    of a problem scaled by ``2**k`` (``scale`` and ``extra`` already include it), and the
    offsets are exactly ``2**k`` times those of the unscaled problem.
    """
    rows = lo.shape[0]
    shift = np.arange(rows, dtype=np.float64)
    chunks = _chunk_starts((hi - lo) * scale + extra)
    for c, end in zip(chunks[:-1].tolist(), chunks[1:].tolist()):
        chunk = slice(c, end)
        spread = (float(hi[chunk].max()) - float(lo[chunk].min())) * scale + extra
        if not math.isfinite(spread):  # NaN/inf with check_finite=False: garbage, no error
            spread = 0.0
        # 2**ceil(log2(2·spread/2**k + 1)) · 2**k, without forming spread/2**k
        e = math.ceil(math.log2(2.0 * spread + math.ldexp(1.0, unit)) - unit)
        big = math.ldexp(1.0, e + unit)
        shift[chunk] = (shift[chunk] - c) * big
    return shift, chunks


def _isotonic_chained(y: np.ndarray, chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-increasing isotonic regression of rows chained by :func:`_chain_offsets`
    (one call per chunk, ``chunks`` its first rows, then ``rows``): the block starts
    (flat positions, then ``y.size``) and the solution, ``(rows, n)``."""
    from scipy.optimize import isotonic_regression

    rows, n = y.shape
    if len(chunks) <= 2:
        res = isotonic_regression(y.ravel(), increasing=False)
        return res.blocks, res.x.reshape(rows, n)
    starts, xs = [], []
    for c, end in zip(chunks[:-1].tolist(), chunks[1:].tolist()):
        res = isotonic_regression(y[c:end].ravel(), increasing=False)
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
    shift, chunks = _chain_offsets(y.min(axis=-1), y.max(axis=-1))
    blocks, xs = _isotonic_chained(y - shift[:, None], chunks)
    st = blocks[:-1]
    return blocks, xs.ravel().take(st) + shift.take(st // n)


#: Rounds of batched pooling before the blocks still in violation go to the sequential loop.
_POOL_ROUNDS = 64
#: Mixed pieces with fewer entries in all than this go straight to the sequential loop
#: (a Python loop over a few hundred entries costs less than the rounds' NumPy calls).
_SEQUENTIAL_BELOW = 512


def _lse_runs(a: np.ndarray, gstarts: np.ndarray, gid: np.ndarray) -> np.ndarray:
    """``LSE`` of every run of ``a`` (runs start at ``gstarts``; ``gid`` = run of each entry)."""
    m = np.maximum.reduceat(a, gstarts)
    return m + np.log(np.add.reduceat(np.exp(a - m.take(gid)), gstarts))


def _kl_pav_blocks(ly: list, lw: list, first: list) -> list[int]:
    """The sequential PAV of :func:`_kl_pav` on blocks (``LSE`` of ``y`` and ``w`` per block),
    never pooling a block with ``first`` set into the one before it: the indices of the
    blocks that start the pooled blocks."""
    starts: list[int] = []
    la: list[float] = []
    lb: list[float] = []
    val: list[float] = []
    floor = 0
    log1p, exp = math.log1p, math.exp
    for i in range(len(ly)):
        a, b, st = ly[i], lw[i], i
        if first[i]:
            floor = len(val)
        v = a - b
        while len(val) > floor and val[-1] < v:
            pa, pb = la.pop(), lb.pop()
            val.pop()
            st = starts.pop()
            a = max(a, pa) + log1p(exp(-abs(a - pa)))
            b = max(b, pb) + log1p(exp(-abs(b - pb)))
            v = a - b
        starts.append(st)
        la.append(a)
        lb.append(b)
        val.append(v)
    return starts


def _pav_kl_flat(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Block starts (flat positions, then ``y.size``) of the KL PAV of every row of the
    float64 ``y``, ``w`` (one 2-D, the other 2-D or a 1-D row broadcast): the blocks of
    :func:`_kl_pav` row by row, vectorised over the batch.

    Exact reductions first, then pooling in rounds. (1) A row splits where the smallest
    ``v = y - w`` before a position exceeds the largest after it: block values are
    log-mean-exps of the ``v`` they pool, so no block crosses there. A piece without an
    adjacent violation ``v_i < v_{i+1}`` stays all singletons; a piece that is one run of
    violations (``v`` strictly increasing) pools into one block, as sequential PAV pools
    every such run (the pooled value of a prefix of the run stays below the next entry).
    (2) On the other pieces every maximal run of adjacent violating blocks pools at once,
    round after round until no violation is left: PAV in another order, with the same
    blocks (pools happen only on strict violations; where two adjacent pooled blocks have
    exactly equal values, rounding decides, in either order). After
    :data:`_POOL_ROUNDS` rounds the sequential loop finishes what is left; below
    :data:`_SEQUENTIAL_BELOW` entries it does all of (2), with the arithmetic of
    :func:`_kl_pav` (the same blocks, bit for bit).
    """
    rows, n = y.shape if y.ndim == 2 else w.shape
    size = rows * n
    v = y - w  # non-finite input (check_finite=False): garbage, no error or warning
    viol = v[:, :-1] < v[:, 1:]
    if size == 0 or not viol.any():
        return np.arange(size + 1)
    # (1) split points: min(v[:i+1]) > max(v[i+1:]); a piece starts there
    piece = np.empty((rows, n), dtype=bool)
    piece[:, 0] = True
    np.greater(
        np.minimum.accumulate(v[:, :-1], axis=-1),
        np.maximum.accumulate(v[:, :0:-1], axis=-1)[:, ::-1],
        out=piece[:, 1:],
    )
    pid = np.cumsum(piece.ravel()) - 1
    inner = pid.reshape(rows, n)[:, 1:]  # piece of each adjacent pair inside a row
    live = np.zeros(int(pid[-1]) + 1, dtype=bool)
    live[inner[viol]] = True
    mixed = np.zeros_like(live)  # a piece with a violation and a non-violation inside
    mixed[inner[~(viol | piece[:, 1:])]] = True
    mixed &= live
    # singletons outside live pieces, one block per piece of a single run
    is_start = np.append(piece.ravel() | ~live.take(pid), True)
    if mixed.any():
        idx = np.flatnonzero(mixed.take(pid))  # entries of the mixed pieces
        ly = y.ravel().take(idx) if y.ndim == 2 else y.take(idx % n)
        lw = w.ravel().take(idx) if w.ndim == 2 else w.take(idx % n)
        first = piece.ravel().take(idx)
        if idx.size <= _SEQUENTIAL_BELOW:  # few entries: the sequential loop is cheaper
            start = idx.take(_kl_pav_blocks(ly.tolist(), lw.tolist(), first.tolist()))
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                start = _pool_rounds(ly, lw, idx, first)  # (2)
        is_start[idx] = False
        is_start[start] = True
    return np.flatnonzero(is_start)


def _pool_rounds(
    ly: np.ndarray, lw: np.ndarray, start: np.ndarray, first: np.ndarray
) -> np.ndarray:
    """Step (2) of :func:`_pav_kl_flat` on blocks (``LSE`` of ``y`` and ``w``, first entry
    ``start``; ``first``: a piece starts there): the first entry of every final block."""
    val = ly - lw
    for _ in range(_POOL_ROUNDS):
        new = np.empty(val.size, dtype=bool)
        new[0] = True
        np.logical_or(~(val[:-1] < val[1:]), first[1:], out=new[1:])  # NaN: no pool
        if new.all():
            break
        gstarts = np.flatnonzero(new)
        gid = np.cumsum(new) - 1
        ly, lw = _lse_runs(ly, gstarts, gid), _lse_runs(lw, gstarts, gid)
        start, first = start.take(gstarts), first.take(gstarts)
        val = ly - lw
    else:
        keep = _kl_pav_blocks(ly.tolist(), lw.tolist(), first.tolist())
        start = start.take(keep)
    return start


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


# flat positions (row · n + j, and up to 2 · rows · n for the second source's row) are
# exact in the packed float array up to this many; beyond, the host writes per-row
# positions and the device adds row · n (and rows · n)
MAX_FLAT = {4: 2**24, 8: 2**53}


def flat_on_host(entries: int, itemsize: int) -> bool:
    return entries <= MAX_FLAT[itemsize]


# the packed host result: K rows of ``(..., n)``, the output, then the residuals. Row 4
# indexes the second half of the VJP's gather source, [cumulative sums, values]: the
# first entry of the block, in sorted order for soft sort (its cotangent is sorted), in
# x's order for soft rank (``order[first]``), offset by the batch size ``rows · n``
RANK_ROWS = 6  # ranks, sort order, block last, block first, order[block first], VJP weights
SORT_ROWS = 6  # sorted values, sort order (for the JVP), block last, block first, block first, VJP weights


def forward_host(
    x: np.ndarray,
    *,
    rank: bool,
    reg: str,
    eps: float,
    descending: bool,
    flat_positions: bool = False,
) -> np.ndarray:
    """The whole forward on the host, packed in ``x``'s dtype: ``(K, ..., n)`` with
    ``flat_positions`` (each of the K rows contiguous), else ``(..., K, n)``.

    Sorting, PAV and its bookkeeping in one pass. Every row is in ``x``'s (original)
    order except soft sort's output and the rank's sort order: positions in the sorted
    order (both ops: soft sort's JVP gathers with it), ``order[j]`` = index of the
    ``j``-th entry, block bounds ``first``/``last`` = sorted positions of the first/last
    entry of the entry's PAV block, and row 4 the position of the block's first entry in
    the second half of the VJP's gather source (``first`` for sort, ``order[first]`` for
    rank, plus ``rows · n`` where positions are flat). The VJP
    weights are ``1/|B|`` (L2) or ``softmax_B(s)`` (KL; ``s`` the sorted values); soft
    rank's VJP scales by ``±1/ε`` last, so that singleton blocks give an exact zero.
    Only the block id of every entry is scattered to the original order; everything
    else is looked up per block. Sorting runs in ``x``'s dtype, PAV and values in float64.
    Positions are per-row, or flat (``row · n`` added) with ``flat_positions`` (the caller checks
    that the packed dtype holds them exactly, up to ``2 · rows · n``, and that ``x`` is the
    whole batch, which it is not for a JAX ``vmap``-ed callback).
    """
    *batch, n = x.shape
    rows_k = RANK_ROWS if rank else SORT_ROWS
    x = np.asarray(x).reshape(-1, n)
    rows, dt = x.shape[0], x.dtype
    if flat_positions:  # row k of the result is P[k], (rows, n), contiguous
        out = np.empty((rows_k, rows, n), dtype=dt)
        P = out
        shape = (rows_k, *batch, n)
    else:
        out = np.empty((rows, rows_k, n), dtype=dt)
        P = out.transpose(1, 0, 2)
        shape = (*batch, rows_k, n)
    if rows == 0:
        return out.reshape(shape)
    # ascending key: rank sorts theta = ±x/ε descending, sort sorts ±x ascending
    key = -x if rank != descending else x
    order, flat, sk = _stable_order(key)
    big = float(np.abs(sk[:, [0, -1]]).max())  # max |x| (NaN or inf: not finite)
    finite = math.isfinite(big)
    if (
        reg == "l2"
        and not rank
        and eps < 1.0
        and n > 1
        and finite
        and _l2_sort_unpooled(sk, big, eps)
    ):
        _singletons(P, order, flat, sk, rank=rank, descending=descending, flat_positions=flat_positions)
        return out.reshape(shape)
    rho = np.arange(n, 0, -1, dtype=np.float64)
    direct = None
    if reg == "l2":
        blocks, xs, shift, base = _l2_blocks(sk, rho, rank=rank, eps=eps)
        if eps >= 1.0:  # the PAV solution itself is accurate here: use it (cheaper)
            direct = (xs, shift, base)
    else:
        blocks = _kl_blocks(sk, rho, rank=rank, eps=eps, big=big if finite else 0.0)
    if blocks.size == rows * n + 1 and direct is None and finite:
        _singletons(P, order, flat, sk, rank=rank, descending=descending, flat_positions=flat_positions)
        return out.reshape(shape)
    starts, sizes = blocks[:-1], blocks[1:] - blocks[:-1]
    itype = np.int32 if blocks[-1] < 2**31 else np.int64
    bid = np.repeat(np.arange(sizes.size, dtype=itype), sizes)  # block of each sorted entry
    bid_orig = np.empty((rows, n), dtype=itype)  # block of each entry, original order
    bid_orig.ravel()[flat] = bid.reshape(rows, n)
    flat_pos = flat_positions
    # the outputs from the blocks alone, in a form without cancellation: every term is
    # a difference of keys inside one block (exact for ties), a difference of positions,
    # or a block mean of ρ, so that ε → 0 gives the exact sort/ranks (no x/ε - (x/ε - ρ))
    first_row = starts % n  # sorted position of each block's first entry, in its row
    k_first = sk.ravel().take(starts)  # each block's smallest key
    if direct is not None:
        pass
    elif reg == "l2" and rank:
        # block means of the key, as k_first + mean(key - k_first): exact for ties, whose
        # deviation the rank multiplies by 1/ε
        u = np.subtract(sk.ravel(), k_first.take(bid), dtype=np.float64)
        mean_key = k_first + np.add.reduceat(u, starts) / sizes
    elif reg == "l2":
        mean_key = np.add.reduceat(sk.ravel(), starts, dtype=np.float64) / sizes
    else:
        # softmax_B(s) with s = -key·κ (κ = 1/ε for ranks, 1 for sort): e / Z_B
        kappa = 1.0 / eps if rank else 1.0
        u = np.subtract(sk.ravel(), k_first.take(bid), dtype=np.float64)
        e = np.exp(u * -kappa)
        z = np.add.reduceat(e, starts)
        soft = np.empty((rows, n))  # softmax_B(s), formed in sorted order, then scattered
        soft.ravel()[flat] = (e / z.take(bid)).reshape(rows, n)
    if rank:
        if direct is not None:  # r = θ - v_B, v_B from the PAV solution (ε >= 1: no x/ε blow-up)
            xs, shift, _ = direct
            theta = np.multiply(key, -1.0 / eps, dtype=np.float64)
            value = xs.ravel().take(starts) + shift.take(starts // n)
            r = np.subtract(theta, value.take(bid_orig))
        elif reg == "l2":  # r = θ - mean_B θ + mean_B ρ, θ - mean_B θ = -(key - mean_B key)/ε
            tab = np.stack([mean_key, n - first_row - (sizes - 1) / 2.0])
            t = np.take(tab, bid_orig, axis=1, mode="clip")  # mean key, mean ρ per entry
            r = np.subtract(key, t[0], dtype=np.float64) * (-1.0 / eps) + t[1]
        else:  # r = softmax_B(θ) · Σ_B ρ  (P_E: e^{θ - LSE(θ_B) + log Σ_B ρ})
            sum_rho = sizes * (n - first_row - (sizes - 1) / 2.0)
            r = soft * sum_rho.take(bid_orig)
        P[0] = r
        P[1] = flat if flat_pos else order
    else:  # no in-place ufunc on the packed view (NumPy 2.4 gets in-place negation of an
        # (rows, 1) strided view wrong)
        pos = np.arange(n, dtype=np.float64)
        if direct is not None:  # v - z from the PAV solution (ε >= 1: ρ/ε <= n)
            xs, _, base = direct
            y_sorted = xs + base
        elif reg == "l2":  # mean_B(key) + (mean_B ρ - ρ_j)/ε = mean_B(key) + (j - centre_B)/ε
            tab = np.stack([mean_key, first_row + (sizes - 1) / 2.0])
            t = np.take(tab, bid.reshape(rows, n), axis=1, mode="clip")
            y_sorted = (pos - t[1]) * (1.0 / eps) + t[0]
        else:  # LSE_B(ρ/ε) - ρ_j/ε - LSE_B(-key): positions and in-block key differences
            lse_rho = np.log(-np.expm1(-sizes / eps)) - np.log(-np.expm1(-1.0 / eps))
            tab = np.stack([first_row.astype(np.float64), lse_rho + k_first - np.log(z)])
            t = np.take(tab, bid.reshape(rows, n), axis=1, mode="clip")
            y_sorted = (pos - t[0]) * (1.0 / eps) + t[1]
        P[0] = -y_sorted if descending else y_sorted
        P[1] = flat if flat_pos else order  # the JVP gathers into sorted order
    # per-block tables in the output dtype, one take for all: last, first, the second
    # source's first (, weight)
    k0 = 2
    table = np.empty((4 if reg == "l2" else 3, sizes.size), dtype=dt)
    first = starts if flat_pos else first_row  # integer arithmetic, then one cast
    table[0] = first + (sizes - 1)
    table[1] = first
    if rank:  # the block's first entry in x's order
        table[2] = flat.ravel().take(starts) + rows * n if flat_pos else order.ravel().take(starts)
    else:
        table[2] = starts + rows * n if flat_pos else first_row
    if reg == "l2":
        table[3] = 1.0 / sizes
    # straight into the slab; mode="clip" skips the bounds check (bid_orig < #blocks)
    np.take(table, bid_orig, axis=1, out=P[k0 : k0 + table.shape[0]], mode="clip")
    if reg == "kl":  # VJP weights: softmax_B(s)
        P[k0 + 3] = soft
    return out.reshape(shape)


def _l2_sort_unpooled(sk: np.ndarray, big: float, eps: float) -> bool:
    """Whether L2 soft sort's PAV (:func:`_l2_blocks`) leaves every block a singleton, decided
    without it: it pools only across a gap of ``x`` above 1/ε, and with every gap below half
    of that the chained problem decreases by at least ``c/(2ε)`` per step, which its
    rounding (``2**-52`` of about ``c·(max|x| + 600·(spread + n/ε))``, offsets included)
    cannot undo while ``max|x|·ε < 2**32`` and ``n < 2**30``."""
    n = sk.shape[-1]  # big: max|x|
    if big * eps >= 2.0**32 or n >= 2**30:
        return False
    return float(np.subtract(sk[:, 1:], sk[:, :-1], dtype=np.float64).max()) <= 0.5 / eps


def _singletons(
    P: np.ndarray,
    order: np.ndarray,
    flat: np.ndarray,
    sk: np.ndarray,
    *,
    rank: bool,
    descending: bool,
    flat_positions: bool,
) -> None:
    """:func:`forward_host`'s packed result where every PAV block is a singleton (finite
    ``x``, ``ε < 1`` for L2), written into its rows ``P`` (``P[k]``: row ``k``, ``(rows, n)``):
    the same numbers as the general formulas, which reduce to these exactly — the sorted
    keys (``0·(1/ε) + s``, so that ``-0.0`` becomes ``0.0`` as there), ranks ``n - position``,
    weights 1, each entry's block bounds both its own sorted position, and the second
    source's first entry the entry itself (rank) or its sorted position (sort)."""
    rows, n = sk.shape
    size = rows * n
    itype = np.int32 if 2 * size < 2**31 else np.int64
    inv = np.empty(size, dtype=itype)  # sorted flat position of every entry (block id)
    inv[flat.ravel()] = np.arange(size, dtype=itype)
    inv = inv.reshape(rows, n)
    pos = inv if flat_positions else inv % n
    if rank:
        P[0] = n - (inv % n if flat_positions else pos)
    else:
        y = sk + 0.0
        P[0] = -y if descending else y
    P[1] = flat if flat_positions else order
    P[2] = pos
    P[3] = pos
    if rank:  # the entry itself, in x's order
        P[4] = np.arange(size, 2 * size, dtype=itype).reshape(rows, n) if flat_positions else np.arange(n)
    else:
        P[4] = inv + size if flat_positions else pos
    P[5] = 1.0


def _l2_blocks(
    sk: np.ndarray, rho: np.ndarray, *, rank: bool, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PAV blocks of the L2 problem of every row (flat block starts, then ``sk.size``),
    and the chained solution ``xs`` with its row offsets ``shift`` and ``base``.

    Rank: ``v = iso(s - ρ)`` with ``s = -sk/ε``; sort: ``v = iso(sk + ρ/ε)`` (both
    non-increasing). Isotonic regression is positively homogeneous, so the blocks are
    those of ``c·(...)`` for any ``c > 0``: ``c`` = the power of two in ``(ε/2, ε]`` (1 for
    ``ε >= 1``) keeps every term within about ``max(|x|, n)`` for any ε (no ``x/ε`` or
    ``ρ/ε`` overflow as ε → 0) and rounds exactly as the unscaled problem. Rows are chained
    by :func:`_chain_offsets` (one ``isotonic_regression`` call per chunk of rows).
    """
    n = sk.shape[-1]
    k = min(0, math.frexp(eps)[1] - 1)  # c = 2**k in (ε/2, ε] for ε < 1, else 1
    c = math.ldexp(1.0, k)
    lo, hi = sk[:, 0], sk[:, -1]
    # c a power of two: the scaled problem rounds exactly like the unscaled one (same
    # blocks, bit for bit, wherever the unscaled one does not overflow)
    if rank:  # c (s - ρ) = -sk·(c/ε) - c ρ
        shift, chunks = _chain_offsets(lo, hi, scale=c / eps, extra=c * (n - 1.0), unit=k)
        base = np.add.outer(shift, c * rho)
        y = np.multiply(sk, -c / eps, dtype=np.float64) - base
    else:  # c (sk + ρ/ε) = c sk + (c/ε) ρ
        shift, chunks = _chain_offsets(lo, hi, scale=c, extra=c * (n - 1.0) / eps, unit=k)
        rw = rho / eps * c if eps > 2.0**-900 else rho * (c / eps)
        base = np.subtract.outer(shift, rw)
        scaled = sk if c == 1.0 else np.multiply(sk, c, dtype=np.float64)
        y = np.subtract(scaled, base, dtype=np.float64)
    blocks, xs = _isotonic_chained(y, chunks)
    return blocks, xs, shift, base


#: The KL PAV of soft rank runs at ``ε >= max(|x|, 1) · n · 2**-40``: there ``x/ε`` is small enough
#: for float64 to resolve ``log ρ_i - log ρ_{i+1} >= 1/n`` (so exact ties pool, as in the
#: ε → 0 limit), and the blocks are those of ε → 0 except for entries closer than about
#: ``1e-12 · n · max|x|`` (treated as ties; float32 inputs are never that close).
_KL_FLOOR = 2.0**-40


def _kl_blocks(
    sk: np.ndarray, rho: np.ndarray, *, rank: bool, eps: float, big: float | None = None
) -> np.ndarray:
    """PAV blocks of the KL problem of every row (flat block starts, then ``sk.size``).

    Rank: ``v_E(s, log ρ)``, ``s = -sk/ε``; sort: ``v_E(ρ/ε, -sk)``. The PAV is not
    homogeneous, so ε is floored for the block decisions only (rank: :data:`_KL_FLOOR`;
    sort: ``1/(8 max(|x|, 1))``, below which every block is a singleton); the outputs
    use the true ε.
    """
    if big is None:  # max|x| over the finite batch (0 if any entry is not finite)
        ends = np.abs(sk[:, [0, -1]])
        big = float(ends.max()) if np.isfinite(ends).all() else 0.0
    big = max(big, 1.0)
    if rank:
        e = max(eps, big * sk.shape[-1] * _KL_FLOOR)
        blocks = _pav_kl_flat(np.multiply(sk, -1.0 / e, dtype=np.float64), np.log(rho))
    else:
        # sort compares 1/ε with the gaps of x (ties never pool): below ε = 1/(8·max|x|)
        # 1/ε exceeds every gap (<= 2·max|x|), every block is a singleton, as at that
        # floor, which only keeps ρ/ε finite (no floor from |x| · n: it pooled)
        e = max(eps, 0.125 / big)
        blocks = _pav_kl_flat(rho / e, np.negative(sk, dtype=np.float64))
    return blocks
