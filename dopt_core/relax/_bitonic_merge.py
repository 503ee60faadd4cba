r"""The relaxed permutation matrix of a bitonic network, one merge matrix at a time.

A bitonic network on ``n2 = 2^N`` wires runs ``N`` blocks; block ``b`` merges aligned
groups of ``g = 2^(b+1)`` wires with ``b + 1`` layers, and a wire never leaves its group
during the block. With ``A_l`` the doubly-stochastic matrix of layer ``l``
(``(A_l q)_w = (1 - c_w) q_w + c_w q_{p(w)}``, ``p(w)`` the wire compared with ``w`` and
``c_w`` the weight it takes from it), the block's merge matrix
``M_b = A_{last} ⋯ A_{first}`` is block-diagonal with dense ``g × g`` blocks, and the
permutation matrix of the network (``sorted = x @ P``) is

.. math::

    P_0 = M_0^\top, \qquad P_b = \operatorname{blockdiag}(P_{b-1})\, M_b^\top
    \quad(b = 1, \dots, N-1), \qquad P = P_{N-1},

one batched matrix product per block, ``(g/2 × g/2) · (g/2 × g)`` for each half of each
group: ``n2 · g² / 2`` multiply-adds in block ``b`` (⅔ n³ in all, in BLAS), instead of
one pass over ``n × g`` entries per layer with several elementwise array operations.

**Building a merge matrix without dense layers.** In a merge the compared wires differ
in one bit of their position in the group: bit ``g/2`` in the first layer, then
``g/4``, …, ``1`` (diffsort's layout for powers of two; for other ``n`` the first layer
compares wire ``i`` with its mirror ``g-1-i``, which becomes bit ``g/2`` after reversing
the upper half of each group, a fixed relabelling ``φ`` undone by one gather at the
end). After the first ``k`` layers, row ``r`` of the partial product is non-zero only in
the ``2^k`` columns that agree with ``r`` in the bits not yet used, so it is stored as
``(g, 2^k)`` with the used bits as the column index. The next layer, of bit ``m``,
writes for the row ``r = (t, a, i)`` (``a`` = bit ``m`` of ``r``) and the new column bit
``β``

.. math::

    R'[(t, a, i), (j, β)] = W_{aβ}\, R[(t, β, i), j], \qquad
    W_{aβ} = \begin{cases} 1 - c & a = β \\ c & a \ne β \end{cases}

(``c`` the comparator's weight): one broadcast product per layer, ``g · 2^(k+1)``
entries, ``2 g²`` for the whole merge. After the last layer the column index is the
column itself.

The VJP recomputes each merge's partial products (cheap), runs the block products
backwards (two matrix products per block) and the layers of each merge backwards,
returning ``∂/∂c`` per comparator. Residuals are the ``P_b`` (``≈ n²`` entries in all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._lib._compat import device

__all__ = ["MergeSchedule", "merge_schedule", "merges_forward", "merges_vjp"]


@dataclass(frozen=True)
class _Step:
    """One layer of a merge: its bit ``m`` and its pairs of wires.

    Pairs are numbered ``p = group · g/2 + t · m + i`` for the lower wire
    ``group · g + t · 2m + i`` (in the relabelled order); ``pair_slot[p]`` is ``1 +`` the
    comparator slot on that pair, or 0 where no comparator acts (the weight is then 0).
    ``slot_pair[s]`` is the pair of comparator slot ``s`` (0 for padding slots).
    """

    m: int
    pair_slot: np.ndarray
    slot_pair: np.ndarray


@dataclass(frozen=True)
class _Block:
    g: int
    steps: tuple[_Step, ...]
    to_true: np.ndarray | None  # flat gather: M_b in true wire order from the relabelled one
    from_true: np.ndarray | None  # its inverse


@dataclass(frozen=True)
class MergeSchedule:
    """Static schedule of a bitonic network's merges (``n`` wires padded to ``n2``)."""

    n: int
    n2: int
    blocks: tuple[_Block, ...]


def _relabel(n2: int, g: int, relabel: bool) -> np.ndarray:
    """``φ``: identity, or each aligned group of ``g`` wires with its upper half reversed."""
    r = np.arange(n2)
    if not relabel:
        return r
    within = r % g
    return np.where(within < g // 2, r, r - within + (3 * g // 2 - 1 - within))


def merge_schedule(
    n: int, ia: np.ndarray, ib: np.ndarray, counts: tuple[int, ...]
) -> MergeSchedule:
    """The merge schedule of a bitonic network given as comparator arrays ``ia``/``ib``
    (``(L, C)``, valid up to ``counts[l]`` in layer ``l``); checks that they are one."""
    L = len(counts)
    width = int(ia.shape[1]) if ia.ndim == 2 else 0
    ia_a, ib_a = np.asarray(ia), np.asarray(ib)
    N = math.ceil(math.log2(n)) if n > 1 else 0
    n2 = 2**N
    relabel = n2 != n  # the all-ascending form: first layer of a merge pairs mirrors
    blocks, li = [], 0
    for b in range(N):
        g = 2 ** (b + 1)
        phi = _relabel(n2, g, relabel)
        steps = []
        for k in range(b + 1):
            m = g >> (k + 1)
            if li >= L:
                raise AssertionError("bitonic merge schedule out of step with the network")
            lo_w, hi_w = phi[ia_a[li, : counts[li]]], phi[ib_a[li, : counts[li]]]
            if np.any((lo_w ^ hi_w) != m) or np.any(lo_w // g != hi_w // g):
                raise AssertionError("bitonic merge schedule out of step with the network")
            lo = np.minimum(lo_w, hi_w)
            pair = (lo // g) * (g // 2) + ((lo % g) // (2 * m)) * m + lo % m
            pair_slot = np.zeros(n2 // 2, np.int64)
            pair_slot[pair] = 1 + np.arange(counts[li])
            slot_pair = np.zeros(width, np.int64)
            slot_pair[: counts[li]] = pair
            steps.append(_Step(m, pair_slot, slot_pair))
            li += 1
        to_true = from_true = None
        if relabel:
            # both in the halves-major layout [h, r, κ] of column t = h g/2 + κ:
            # M[r, t] = M_φ[φ(r), φ(t)]  (φ is the same inside every group)
            p = phi[:g]
            h, r, k = np.meshgrid(np.arange(2), np.arange(g), np.arange(g // 2), indexing="ij")
            pt = p[h * (g // 2) + k]
            to_true = ((pt // (g // 2)) * (g * g // 2) + p[r] * (g // 2) + pt % (g // 2)).ravel()
            from_true = np.argsort(to_true)
        blocks.append(_Block(g, tuple(steps), to_true, from_true))
    if li != L:
        raise AssertionError("bitonic merge schedule out of step with the network")
    return MergeSchedule(n, n2, tuple(blocks))


def _step_weights(c_pairs: Any, batch: tuple[int, ...], n2: int, g: int, m: int, *, xp: Any) -> Any:
    """``W[..., group, t, a, 1, β, κ]`` of one layer from the pair weights ``(..., n2/2)``."""
    c = xp.reshape(c_pairs, (*batch, n2 // g, g // (2 * m), 1, 1, 1, m))
    eye = xp.reshape(xp.eye(2, dtype=c.dtype, device=device(c)), (2, 1, 2, 1))
    return c + (1 - 2 * c) * eye


def _last_weights(W: Any, *, xp: Any) -> Any:
    """``W`` of a merge's first layer (``t = 0``, ``m = g/2``) as ``[..., group, β, a, 1, κ]``.

    ``W`` is symmetric in ``(a, β)``, so this is a reshape (no transposed copy)."""
    *lead, G, _, _, _, _, m = W.shape
    return xp.reshape(W, (*lead, G, 2, 2, 1, m))


def _pair_weights(c_slots: Any, step: _Step, *, xp: Any) -> Any:
    """Per-pair weights ``(..., n2/2)`` from per-comparator-slot weights ``(..., C)``."""
    zero = xp.zeros((*c_slots.shape[:-1], 1), dtype=c_slots.dtype, device=device(c_slots))
    full = xp.concat([zero, c_slots], axis=c_slots.ndim - 1)
    return xp.take(full, xp.asarray(step.pair_slot, device=device(c_slots)), axis=full.ndim - 1)


def _gather_last(M: Any, table: np.ndarray | None, *, xp: Any) -> Any:
    """A fixed permutation of the entries of each ``(..., 2, g, g/2)`` block (or none)."""
    if table is None:
        return M
    flat = xp.reshape(M, (*M.shape[:-3], M.shape[-3] * M.shape[-2] * M.shape[-1]))
    out = xp.take(flat, xp.asarray(table, device=device(M)), axis=flat.ndim - 1)
    return xp.reshape(out, M.shape)


def _build(
    c_slots: list[Any], block: _Block, batch: tuple[int, ...], n2: int, like: Any, *, xp: Any
) -> tuple[Any, list[Any], list[Any]]:
    """A merge matrix, halves-major: ``M[..., group, h, r, κ] = M_b[r, h g/2 + κ]`` in the
    true wire order; also the partial products (the input of each layer's update) and
    the layers' ``W``, in layer order.

    The layers are applied from the last to the first as column updates (``R ← R A_l``);
    the first layer's update (bit ``g/2``, which is the column half ``h``) writes the
    halves-major layout directly.
    """
    g, G = block.g, n2 // block.g
    R = xp.ones((*batch, G, g, 1), dtype=like.dtype, device=device(like))
    states, weights = [], []
    for k in range(len(block.steps) - 1, -1, -1):
        step = block.steps[k]
        m = step.m
        W = _step_weights(_pair_weights(c_slots[k], step, xp=xp), batch, n2, g, m, xp=xp)
        states.append(R)
        weights.append(W)
        if k:
            Rb = xp.reshape(R, (*batch, G, g // (2 * m), 2, m, 1, m))
            R = xp.reshape(W * Rb, (*batch, G, g, 2 * m))
        else:  # m = g/2: out[h, (a, i), κ] = W[a, h, κ] R[(a, i), κ]
            Rb = xp.reshape(R, (*batch, G, 1, 2, m, m))
            R = xp.reshape(_last_weights(W, xp=xp) * Rb, (*batch, G, 2, g, m))
    return _gather_last(R, block.to_true, xp=xp), states[::-1], weights[::-1]


def merges_forward(
    c_slots: list[Any], sched: MergeSchedule, like: Any, *, xp: Any
) -> tuple[Any, list[Any]]:
    """``P`` ``(..., n, n)`` from each layer's comparator weights ``c`` ``(..., C)``.

    Returns ``P`` and the residuals for :func:`merges_vjp`: ``P_0, …, P_{N-2}`` and each
    merge's partial products.
    """
    batch = tuple(like.shape[:-1])
    n2 = sched.n2
    P = None
    saved: list[Any] = []
    states_all: list[Any] = []
    first = 0
    for block in sched.blocks:
        g, G = block.g, n2 // block.g
        steps = len(block.steps)
        M, states, _ = _build(c_slots[first : first + steps], block, batch, n2, like, xp=xp)
        first += steps
        states_all.extend(states)
        MT = xp.matrix_transpose(M)  # (..., G, h, κ, r): the rows h g/2 + κ of M_bᵀ
        if P is None:
            P = xp.reshape(MT, (*batch, G, g, g))
            continue
        saved.append(P)
        Pp = xp.reshape(P, (*batch, G, 2, g // 2, g // 2))
        P = xp.reshape(xp.matmul(Pp, MT), (*batch, G, g, g))
    if P is None:  # n == 1
        return xp.ones((*batch, 1, 1), dtype=like.dtype, device=device(like)), []
    P = xp.reshape(P, (*batch, n2, n2))
    if n2 != sched.n:
        P = P[..., : sched.n, : sched.n]
    return P, saved + states_all


def merges_vjp(
    c_slots: list[Any], saved: list[Any], cotangent: Any, sched: MergeSchedule, *, xp: Any
) -> list[Any]:
    """Cotangents of every layer's comparator weights ``(..., C)`` from that of ``P``."""
    batch = tuple(cotangent.shape[:-2])
    nb = len(batch)
    n, n2 = sched.n, sched.n2
    dev = device(cotangent)
    out: list[Any] = [None] * len(c_slots)
    if not sched.blocks:
        return out
    nblocks = len(sched.blocks)
    products, states_all = saved[: nblocks - 1], saved[nblocks - 1 :]
    H = cotangent
    if n2 != n:
        zr = xp.zeros((*batch, n2 - n, n), dtype=H.dtype, device=dev)
        H = xp.concat([H, zr], axis=nb)
        zc = xp.zeros((*batch, n2, n2 - n), dtype=H.dtype, device=dev)
        H = xp.concat([H, zc], axis=nb + 1)
    first = len(c_slots)
    for bi in range(nblocks - 1, -1, -1):
        block = sched.blocks[bi]
        g, G = block.g, n2 // block.g
        steps = len(block.steps)
        first -= steps
        states = states_all[first : first + steps]
        if bi == 0:
            # P_0 = M_0ᵀ: the cotangent of M_0 in the halves-major layout
            GM = xp.reshape(
                xp.matrix_transpose(xp.reshape(H, (*batch, G, 2, 1, g))), (*batch, G, 2, g, 1)
            )
        else:
            Pp = xp.reshape(products[bi - 1], (*batch, G, 2, g // 2, g // 2))
            Hr = xp.reshape(H, (*batch, G, 2, g // 2, g))
            M = _rebuild_last(c_slots[first], states[0], block, batch, n2, xp=xp)
            GM = xp.matmul(xp.matrix_transpose(Hr), Pp)  # (..., G, h, r, κ)
            H = xp.reshape(xp.matmul(Hr, M), (*batch, 2 * G, g // 2, g // 2))
        GM = _gather_last(GM, block.from_true, xp=xp)
        for k in range(steps):
            step, R = block.steps[k], states[k]
            m = step.m
            W = _step_weights(
                _pair_weights(c_slots[first + k], step, xp=xp), batch, n2, g, m, xp=xp
            )
            if k:
                Gn = xp.reshape(GM, (*batch, G, g // (2 * m), 2, m, 2, m))
                Rb = xp.reshape(R, (*batch, G, g // (2 * m), 2, m, 1, m))
                # ∂/∂W[t, a, β, κ] = Σ_i G[(t,a,i),(β,κ)] R[(t,a,i),κ];  ∂W/∂c = 1 - 2 δ_aβ
                gW = xp.sum(Gn * Rb, axis=-3)  # (..., G, T, a, β, κ)
                diag = gW[..., 0, 0, :] + gW[..., 1, 1, :]
                off = gW[..., 0, 1, :] + gW[..., 1, 0, :]
                # ∂/∂R[(t,a,i),κ] = Σ_β W[t,a,β,κ] G[(t,a,i),(β,κ)]
                GM = xp.reshape(xp.sum(W * Gn, axis=-2), (*batch, G, g, m))
            else:  # the halves-major first layer: G[h, (a, i), κ], R[(a, i), κ]
                Gn = xp.reshape(GM, (*batch, G, 2, 2, m, m))
                Rb = xp.reshape(R, (*batch, G, 1, 2, m, m))
                gW = xp.sum(Gn * Rb, axis=-2)  # (..., G, β, a, κ)
                diag = gW[..., 0, 0, :] + gW[..., 1, 1, :]
                off = gW[..., 0, 1, :] + gW[..., 1, 0, :]
                GM = xp.reshape(
                    xp.sum(_last_weights(W, xp=xp) * Gn, axis=nb + 1), (*batch, G, g, m)
                )
            g_pair = xp.reshape(off - diag, (*batch, n2 // 2))
            out[first + k] = xp.take(g_pair, xp.asarray(step.slot_pair, device=dev), axis=nb)
    return out


def _rebuild_last(
    c_slot: Any, R: Any, block: _Block, batch: tuple[int, ...], n2: int, *, xp: Any
) -> Any:
    """A merge matrix (halves-major, true order) from its first layer and saved state."""
    g, G, m = block.g, n2 // block.g, block.g // 2
    W = _step_weights(_pair_weights(c_slot, block.steps[0], xp=xp), batch, n2, g, m, xp=xp)
    Rb = xp.reshape(R, (*batch, G, 1, 2, m, m))
    M = xp.reshape(_last_weights(W, xp=xp) * Rb, (*batch, G, 2, g, m))
    return _gather_last(M, block.to_true, xp=xp)
