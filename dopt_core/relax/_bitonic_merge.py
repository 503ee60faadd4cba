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

The VJP runs the block products backwards (two matrix products per block) and the
layers of each merge backwards, returning ``∂/∂c`` per comparator. The forward keeps
only the products ``P_{b-1}`` the blocks consumed (about ``n²`` entries); the VJP
rebuilds each merge matrix, its partial products and layer weights from ``c`` when it
reaches the block (the elementwise part of the forward once more, not its matrix
products), so at most one block's ``2 n g`` partial products are alive.

Layouts: layers of small bit ``m`` (and the block products of small merges) run with the
batch axis last, the others with it first, so that elementwise kernels always see long
contiguous inner loops. Every array stays at rank <= 6 (batch included): jaxlib 0.10's
XLA:CPU YNN fusions crashed under ``jit`` on rank-7 intermediates of this code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .._lib._compat import device
from .._lib._constants import DeviceConstants, static_table
from ..backend import take_nonnegative as _take

__all__ = [
    "MergeResiduals",
    "MergeSchedule",
    "live_schedule",
    "merge_schedule",
    "merges_forward",
    "merges_vjp",
    "remember_schedule",
]


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
    consts: DeviceConstants = field(
        default_factory=DeviceConstants, init=False, compare=False, repr=False
    )


@dataclass(frozen=True)
class _Block:
    g: int
    steps: tuple[_Step, ...]
    to_true: np.ndarray | None  # flat gather: M_b in true wire order from the relabelled one
    from_true: np.ndarray | None  # its inverse
    consts: DeviceConstants = field(
        default_factory=DeviceConstants, init=False, compare=False, repr=False
    )


@dataclass(frozen=True)
class MergeSchedule:
    """Static schedule of a bitonic network's merges (``n`` wires padded to ``n2``)."""

    n: int
    n2: int
    blocks: tuple[_Block, ...]


# The schedules in use, by n (bounded): :func:`merge_tables` finds its tables here, and a
# traced caller (torch.compile) reads a schedule from this dict instead of tracing the
# code that builds it (:func:`dopt_core.relax._network_tables.merges`).
_LIVE: dict[int, MergeSchedule] = {}
_MAX_LIVE = 64


def remember_schedule(sched: MergeSchedule) -> int:
    """Keep ``sched`` where :func:`live_schedule` and :func:`merge_tables` find it; its ``n``."""
    if sched.n not in _LIVE and len(_LIVE) >= _MAX_LIVE:
        _LIVE.pop(next(iter(_LIVE)))
    _LIVE[sched.n] = sched
    return sched.n


def live_schedule(n: int) -> MergeSchedule:
    """The schedule last given to :func:`remember_schedule` for ``n``."""
    return _LIVE[n]


@static_table
def merge_tables(n: int, xp: Any, dev: Any) -> tuple[Any, ...]:
    """Every index table of the live schedule on ``n`` wires as arrays of ``xp`` on ``dev``
    (converted once per device): per block, ``(to_true, from_true, pair_slots,
    slot_pairs)`` (``None`` where there is no relabelling; one entry per step)."""
    out = []
    for block in _LIVE[n].blocks:
        relabel = [
            None if table is None else block.consts.array(name, table, xp, dev)
            for name, table in (("to_true", block.to_true), ("from_true", block.from_true))
        ]
        per_step = [
            tuple(step.consts.array(name, getattr(step, name), xp, dev) for step in block.steps)
            for name in ("pair_slot", "slot_pair")
        ]
        out.append((*relabel, *per_step))
    return tuple(out)


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


# Layers whose bit m is below this (and the block products of merges with g/2 below
# it) run with the batch axis last: their arrays have tiny trailing axes (m, 2m), and
# elementwise kernels are only efficient on long contiguous inner loops.
_SMALL = 16
# Block products of merges up to this size are broadcast products with the batch last
# (tiny matrices); larger ones are batched matrix products with the batch first.
_SMALL_PRODUCT = 8


@dataclass(frozen=True)
class _Layout:
    """Where the (flattened) batch axis of size ``B`` sits: first, or last (``last``)."""

    B: int
    last: bool

    def shape(self, *dims: int) -> tuple[int, ...]:
        return (*dims, self.B) if self.last else (self.B, *dims)

    def axis(self, a: int) -> int:
        """A negative axis of the logical (batch-free) shape."""
        return a - 1 if self.last else a

    def at(self, x: Any, axis: int, i: int) -> Any:
        """``x`` at index ``i`` of the negative logical axis ``axis`` (that axis dropped)."""
        rest = (slice(None),) * (-axis - 1 + self.last)
        return x[(..., i, *rest)]

    def pick(self, x: Any, *index: int) -> Any:
        """``x[..., *index, :]`` on the logical shape (the last logical axis kept)."""
        return (
            x[(..., *index, slice(None), slice(None))]
            if self.last
            else x[(..., *index, slice(None))]
        )


def _move(x: Any, *, to_last: bool, xp: Any) -> Any:
    """A contiguous copy of ``x`` with its batch axis moved last (or first)."""
    nd = x.ndim
    perm = (*range(1, nd), 0) if to_last else (nd - 1, *range(nd - 1))
    y = xp.permute_dims(x, perm)
    n0 = y.shape[0]
    rest = math.prod(y.shape[1:])
    return xp.reshape(xp.reshape(y, (n0 * rest,)), y.shape)  # the flattening copies


def _layout_of(m: int, B: int) -> _Layout:
    """The layout of the update of a layer of bit ``m``."""
    return _Layout(B, m < _SMALL)


def _product_layout(g: int, B: int) -> _Layout:
    """The layout of a merge's block product."""
    return _Layout(B, g <= _SMALL_PRODUCT)


def _pair_weights(c_slots: Any, table: Any, lay: _Layout, *, xp: Any) -> Any:
    """Per-pair weights (logical ``(n2/2,)``) from per-comparator-slot weights ``(B, C)``
    (``table``: the step's ``pair_slot``)."""
    dev = device(c_slots)
    if lay.last:
        full = xp.concat(
            [
                xp.zeros((1, lay.B), dtype=c_slots.dtype, device=dev),
                xp.permute_dims(c_slots, (1, 0)),
            ],
            axis=0,
        )
        return _take(full, table, axis=0)
    full = xp.concat([xp.zeros((lay.B, 1), dtype=c_slots.dtype, device=dev), c_slots], axis=1)
    return _take(full, table, axis=1)


def _step_weights(c_pairs: Any, lay: _Layout, n2: int, m: int, *, xp: Any) -> Any:
    """``W[group, t, a, 1, β, κ]`` (logical) of one layer from its pair weights."""
    c = xp.reshape(c_pairs, lay.shape(n2 // (2 * m), 1, 1, 1, m))  # (group t, a, i, β, κ)
    eye = xp.reshape(
        xp.eye(2, dtype=c.dtype, device=device(c)), (2, 1, 2, 1, 1) if lay.last else (2, 1, 2, 1)
    )
    return c + (1 - 2 * c) * eye


def _weights(
    c_slots: Any, step: _Step, pair_slot: Any, n2: int, *, xp: Any
) -> tuple[Any, _Layout]:
    lay = _layout_of(step.m, c_slots.shape[0])
    c_pairs = _pair_weights(c_slots, pair_slot, lay, xp=xp)
    return _step_weights(c_pairs, lay, n2, step.m, xp=xp), lay


def _first_layer_update(W: Any, R: Any, lay: _Layout, G: int, g: int, *, xp: Any) -> Any:
    """The first layer of a merge (bit ``m = g/2`` = the column half ``h``), written
    halves-major: ``M[group, h, (a, i), κ] = W[a, h, κ] R[(a, i), κ]``. ``W`` is symmetric
    in ``(a, β)``, so its ``[β, a]`` view is a reshape."""
    m = g // 2
    Wl = xp.reshape(W, lay.shape(G, 2, 2, 1, m))
    Rb = xp.reshape(R, lay.shape(G, 1, 2, m, m))
    return xp.reshape(Wl * Rb, lay.shape(G, 2, g, m))


def _gather_true(M: Any, idx: Any, lay: _Layout, *, xp: Any) -> Any:
    """The relabelling of a merge matrix (each group's ``(2, g, g/2)`` block) to the true
    wire order (``idx``: the block's ``to_true``), or back (its ``from_true``); nothing
    where there is no relabelling (``idx`` is None)."""
    if idx is None:
        return M
    G, h, g, k = (M.shape[:-1] if lay.last else M.shape[1:])[-4:]
    flat = xp.reshape(M, lay.shape(G, h * g * k))
    out = _take(flat, idx, axis=lay.axis(-1))
    return xp.reshape(out, M.shape)


def _build(
    c_slots: list[Any],
    block: _Block,
    tables: tuple[Any, ...],
    B: int,
    n2: int,
    like: Any,
    *,
    xp: Any,
) -> tuple[Any, list[Any], list[Any]]:
    """A merge matrix, halves-major, ``M[group, h, r, κ] = M_b[r, h g/2 + κ]`` in the true
    wire order (batch last if ``g/2 < _SMALL``), the partial products (the input of each
    layer's update) and the layers' ``W``, both in layer order.

    The layers are applied from the last to the first as column updates (``R ← R A_l``),
    which keeps the new column bit the most significant one (long contiguous runs).
    """
    g, G = block.g, n2 // block.g
    lay = _layout_of(1, B)
    R = xp.ones(lay.shape(G, g, 1), dtype=like.dtype, device=device(like))
    states: list[Any] = []
    weights: list[Any] = []
    for k in range(len(block.steps) - 1, -1, -1):
        step = block.steps[k]
        m = step.m
        W, new = _weights(c_slots[k], step, tables[2][k], n2, xp=xp)
        if new.last != lay.last:
            R, lay = _move(R, to_last=new.last, xp=xp), new
        states.append(R)
        weights.append(W)
        if k:
            Rb = xp.reshape(R, lay.shape(n2 // (2 * m), 2, m, 1, m))
            R = xp.reshape(W * Rb, lay.shape(G, g, 2 * m))
        else:
            R = _first_layer_update(W, R, lay, G, g, xp=xp)
    return _gather_true(R, tables[0], lay, xp=xp), states[::-1], weights[::-1]


class MergeResiduals(NamedTuple):
    """What :func:`merges_forward` keeps for :func:`merges_vjp`: ``products[b-1]``, the
    product ``P_{b-1}`` that block ``b >= 1`` consumed (in the layout of its block
    product), about ``n²`` entries in all. The merge matrices, the partial products and
    the layers' ``W`` (``2 n g`` entries per block) are rebuilt by the VJP from the layer
    weights, block by block, which costs one more build of each merge (the elementwise
    part of the forward, not its matrix products) and keeps at most one block's in memory.
    At the Op boundary the residuals are one flat tuple of arrays (:meth:`flat`).
    """

    products: list[Any]

    def flat(self) -> tuple[Any, ...]:
        return tuple(self.products)

    @classmethod
    def unflatten(
        cls, saved: tuple[Any, ...], sched: MergeSchedule, num_layers: int
    ) -> MergeResiduals:
        nb = max(len(sched.blocks) - 1, 0)
        if len(saved) != nb:
            raise AssertionError("bitonic merge residuals out of step with the schedule")
        return cls(list(saved))


def _merge_matrix(
    c_flat: list[Any], block: _Block, block_tables: tuple[Any, ...], B: int, n2: int, like: Any,
    *, xp: Any
) -> tuple[Any, list[Any], list[Any]]:
    """:func:`_build`, with the merge matrix in the layout of the block's product."""
    M, states, weights = _build(c_flat, block, block_tables, B, n2, like, xp=xp)
    lay = _product_layout(block.g, B)
    if _layout_of(block.g // 2, B).last != lay.last:
        M = _move(M, to_last=lay.last, xp=xp)
    return M, states, weights


def merges_forward(
    c_slots: list[Any], sched: MergeSchedule, like: Any, *, xp: Any
) -> tuple[Any, MergeResiduals]:
    """``P`` ``(..., n, n)`` from each layer's comparator weights ``c`` ``(..., C)``.

    Returns ``P`` and the residuals for :func:`merges_vjp` (:class:`MergeResiduals`).
    """
    batch = tuple(like.shape[:-1])
    B = math.prod(batch)
    n, n2 = sched.n, sched.n2
    c_flat = [xp.reshape(c, (B, c.shape[-1])) for c in c_slots]
    P, P_last = None, True
    products: list[Any] = []
    first = 0
    tables = merge_tables(n, xp, device(like))
    for block, block_tables in zip(sched.blocks, tables, strict=True):
        g, G = block.g, n2 // block.g
        steps = len(block.steps)
        M, _, _ = _merge_matrix(
            c_flat[first : first + steps], block, block_tables, B, n2, like, xp=xp
        )
        first += steps
        lay = _product_layout(g, B)
        if P is None:  # P_0 = M_0ᵀ: [group, h, κ = 0, r] -> rows h, columns r
            P, P_last = xp.reshape(M, lay.shape(G, 2, 2)), lay.last
            continue
        if P_last != lay.last:
            P, P_last = _move(P, to_last=lay.last, xp=xp), lay.last
        products.append(P)
        if lay.last:  # small blocks: Σ_κ P[h, x, κ] M[h, r, κ] as a broadcast product
            Pp = xp.reshape(P, lay.shape(G, 2, g // 2, 1, g // 2))
            Mb = xp.reshape(M, lay.shape(G, 2, 1, g, g // 2))
            P = xp.reshape(xp.sum(Pp * Mb, axis=lay.axis(-1)), lay.shape(G, g, g))
        else:
            Pp = xp.reshape(P, lay.shape(G, 2, g // 2, g // 2))
            P = xp.reshape(xp.matmul(Pp, xp.matrix_transpose(M)), lay.shape(G, g, g))
    if P is None:  # n == 1
        one = xp.ones((*batch, 1, 1), dtype=like.dtype, device=device(like))
        return one, MergeResiduals([])
    if P_last:
        P = _move(P, to_last=False, xp=xp)
    P = xp.reshape(P, (B, n2, n2))
    if n2 != n:
        P = P[:, :n, :n]
    return xp.reshape(P, (*batch, n, n)), MergeResiduals(products)


def merges_vjp(
    c_slots: list[Any],
    saved: MergeResiduals,
    cotangent: Any,
    sched: MergeSchedule,
    *,
    xp: Any,
) -> list[Any]:
    """Cotangents of every layer's comparator weights ``(..., C)`` from that of ``P``
    (``c_slots``: the weights given to :func:`merges_forward`, ``saved``: its residuals;
    each merge is rebuilt from ``c_slots`` when its block is reached)."""
    num_layers = len(c_slots)
    batch = tuple(cotangent.shape[:-2])
    B = math.prod(batch)
    n, n2 = sched.n, sched.n2
    dev = device(cotangent)
    out: list[Any] = [None] * num_layers
    if not sched.blocks:
        return out
    nblocks = len(sched.blocks)
    (products,) = saved
    c_flat = [xp.reshape(c, (B, c.shape[-1])) for c in c_slots]
    H = xp.reshape(cotangent, (B, n, n))
    if n2 != n:
        H = xp.concat([H, xp.zeros((B, n2 - n, n), dtype=H.dtype, device=dev)], axis=1)
        H = xp.concat([H, xp.zeros((B, n2, n2 - n), dtype=H.dtype, device=dev)], axis=2)
    H_last = False
    first = num_layers
    tables = merge_tables(n, xp, dev)
    for bi in range(nblocks - 1, -1, -1):
        block = sched.blocks[bi]
        g, G = block.g, n2 // block.g
        steps = len(block.steps)
        first -= steps
        M, states, weights = _merge_matrix(
            c_flat[first : first + steps], block, tables[bi], B, n2, cotangent, xp=xp
        )
        lay = _product_layout(g, B)
        if H_last != lay.last:
            H, H_last = _move(H, to_last=lay.last, xp=xp), lay.last
        if bi == 0:  # P_0 = M_0ᵀ
            GM = xp.reshape(H, lay.shape(G, 2, 2, 1))
        else:
            Pp = products[bi - 1]
            if lay.last:
                H5 = xp.reshape(H, lay.shape(G, 2, g // 2, g, 1))
                Pp = xp.reshape(Pp, lay.shape(G, 2, g // 2, 1, g // 2))
                GM = xp.sum(H5 * Pp, axis=lay.axis(-3))
                Mb = xp.reshape(M, lay.shape(G, 2, 1, g, g // 2))
                H = xp.sum(H5 * Mb, axis=lay.axis(-2))
            else:
                Hr = xp.reshape(H, lay.shape(G, 2, g // 2, g))
                Pp = xp.reshape(Pp, lay.shape(G, 2, g // 2, g // 2))
                GM = xp.matmul(xp.matrix_transpose(Hr), Pp)  # (group, h, r, κ)
                H = xp.matmul(Hr, M)
            H = xp.reshape(H, lay.shape(2 * G, g // 2, g // 2))
        GM = _gather_true(GM, tables[bi][1], lay, xp=xp)
        for k in range(steps):
            step, R = block.steps[k], states[k]
            m = step.m
            W, new = weights[k], _layout_of(m, B)
            if new.last != lay.last:
                GM, lay = _move(GM, to_last=new.last, xp=xp), new
            if k:
                Gn = xp.reshape(GM, lay.shape(n2 // (2 * m), 2, m, 2, m))
                Rb = xp.reshape(R, lay.shape(n2 // (2 * m), 2, m, 1, m))
                # ∂/∂W[t, a, β, κ] = Σ_i G[(t,a,i),(β,κ)] R[(t,a,i),κ];  ∂W/∂c = 1 - 2 δ_aβ
                gW = xp.sum(Gn * Rb, axis=lay.axis(-3))  # (group t, a, β, κ)
                # ∂/∂R[(t,a,i),κ] = Σ_β W[t,a,β,κ] G[(t,a,i),(β,κ)]
                gR = lay.at(W, -2, 0) * lay.at(Gn, -2, 0) + lay.at(W, -2, 1) * lay.at(Gn, -2, 1)
                GM = xp.reshape(gR, lay.shape(G, g, m))
            else:  # the halves-major first layer: G[h, (a, i), κ], R[(a, i), κ]
                Gn = xp.reshape(GM, lay.shape(G, 2, 2, m, m))
                Rb = xp.reshape(R, lay.shape(G, 1, 2, m, m))
                gW = xp.sum(Gn * Rb, axis=lay.axis(-2))  # (group, β, a, κ)
                Wl = xp.reshape(W, lay.shape(G, 2, 2, 1, m))
                gR = lay.at(Wl, -4, 0) * lay.at(Gn, -4, 0) + lay.at(Wl, -4, 1) * lay.at(Gn, -4, 1)
                GM = xp.reshape(gR, lay.shape(G, g, m))
            diag = lay.pick(gW, 0, 0) + lay.pick(gW, 1, 1)
            off = lay.pick(gW, 0, 1) + lay.pick(gW, 1, 0)
            g_pair = xp.reshape(off - diag, lay.shape(n2 // 2))
            table = tables[bi][3][k]
            if lay.last:
                g_slot = xp.permute_dims(_take(g_pair, table, axis=0), (1, 0))
            else:
                g_slot = _take(g_pair, table, axis=1)
            out[first + k] = xp.reshape(g_slot, (*batch, g_slot.shape[-1]))
    return out
