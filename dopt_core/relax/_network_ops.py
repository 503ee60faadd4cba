"""The Ops of the sorting networks: values, relaxed permutation matrix, soft top-k (private).

Layers are applied with gathers over the static index arrays of
:mod:`dopt_core.relax._network_tables` (values: O(n) work per layer), every comparator
through the one relaxed comparator of :mod:`dopt_core.relax._comparator`. The
permutation matrix is built without a dense n×n layer matrix: for odd-even by row
gathers (O(n²) per layer); for bitonic one merge matrix and one batched matrix product
per merge block (:mod:`dopt_core.relax._bitonic_merge`). The explicit VJPs run the
layers (or blocks) backwards with the same maps; the JVPs run the layers forwards,
carrying ``dα = α'(Δ) dΔ`` from the values network into the matrix (the bitonic
permutation's JVP too goes layer by layer: the merge matrices are products of the same
layers). Residuals, JVPs and VJPs are array operations of the input: second order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._lib._compat import device
from .._lib._constants import static_table
from ..backend import take_nonnegative as _take
from ..op import Op
from . import cdfs
from ._bitonic_merge import MergeResiduals, merges_forward, merges_vjp
from ._comparator import (
    comparator_alpha,
    comparator_cdf,
    comparator_pdf,
    compare,
    compare_t,
    compare_vjp,
)
from ._network_tables import Layers, layers, merges

__all__ = ["NetworkPermutationOp", "NetworkSortOp", "SoftTopKOp", "Spec"]


class _Idx:
    """The static index arrays of one network (its :class:`Layers` tables) on the arrays'
    device; :meth:`of` fetches those of a named network through a static table."""

    def __init__(self, lay: Layers, like: Any, xp: Any) -> None:
        self._set(_index_rows(lay, xp, device(like), like.dtype))

    @classmethod
    def of(cls, network: str, n: int, like: Any, xp: Any) -> _Idx:
        idx = cls.__new__(cls)
        idx._set(network_index(network, n, xp, device(like), like.dtype))
        return idx

    def _set(self, tables: tuple[Any, ...]) -> None:
        self.ia, self.ib, self.dmn, self.dmx, self.src, self.back, self.partner, self.sel = tables[
            :8
        ]
        self.asc, self.asc_sign = tables[8], tables[9]  # asc and 1 - 2 asc, per layer
        self.L, self.C, self.n = tables[10]


_ROW_TABLES = ("ia", "ib", "dmn", "dmx", "src", "back", "partner", "sel")


def _index_rows(lay: Layers, xp: Any, dev: Any, dtype: Any) -> tuple[Any, ...]:
    rows = tuple(tuple(lay.consts.rows(name, getattr(lay, name), xp, dev)) for name in _ROW_TABLES)
    asc = tuple(lay.consts.rows("asc", lay.asc, xp, dev, dtype))
    # 1 - 2 asc = ∂c/∂α of the partner weight c = α + asc (1 - 2α)
    sign = tuple(lay.consts.rows("asc_sign", 1 - 2 * lay.asc, xp, dev, dtype))
    return (*rows, asc, sign, (lay.num_layers, lay.width, lay.n))


@static_table
def network_index(network: str, n: int, xp: Any, dev: Any, dtype: Any) -> tuple[Any, ...]:
    """The rows of every index table of ``network`` on ``n`` wires as arrays of ``xp`` on
    ``dev`` (``asc`` in ``dtype``), then ``(num_layers, width, n)``; converted once per
    device and dtype (:class:`~dopt_core._lib._constants.DeviceConstants`)."""
    return _index_rows(layers(network, n), xp, dev, dtype)


@static_table
def network_asc(network: str, n: int, xp: Any, dev: Any, dtype: Any) -> Any:
    """The ``(num_layers, width)`` table ``asc`` (1 where a comparator's min goes to its
    first wire) as one array of ``xp`` on ``dev`` in ``dtype``."""
    lay = layers(network, n)
    return lay.consts.array("asc2d", lay.asc, xp, dev, dtype)


@static_table
def pair_runs(network: str, n: int) -> tuple[tuple[int, int], ...]:
    """Per layer ``(start, count)`` where the layer's comparators are ``(start + 2i,
    start + 2i + 1)``, ``i < count`` (every odd-even layer; the bitonic network only on
    one wire, where it has no layers)."""
    return _pair_runs(network, n)


@functools.lru_cache(maxsize=64)
def _pair_runs(network: str, n: int) -> tuple[tuple[int, int], ...]:
    lay = layers(network, n)
    runs = []
    for li, count in enumerate(lay.counts):
        start = int(lay.ia[li, 0])
        lo = start + 2 * np.arange(count)
        if not (
            np.array_equal(lay.ia[li, :count], lo)
            and np.array_equal(lay.ib[li, :count], lo + 1)
            and np.array_equal(lay.dmn[li, :count], lo)
        ):
            raise AssertionError(f"layer {li} of {network} is not a run of neighbour pairs")
        runs.append((start, int(count)))
    return tuple(runs)


# ---------------------------------------------------------------------------------
# the layer maps, on any axis (values: last; P: last = columns; top-k: rows)
# ---------------------------------------------------------------------------------
def _mix(v: Any, alpha: Any, ia: Any, ib: Any, src: Any, axis: int, *, xp: Any) -> Any:
    """One relaxed layer: compared entries along ``axis`` mixed by ``alpha``."""
    mn, mx = compare(_take(v, ia, axis=axis), _take(v, ib, axis=axis), alpha)
    return _take(xp.concat([v, mn, mx], axis=axis), src, axis=axis)


def _mix_t(
    h: Any, alpha: Any, dmn: Any, dmx: Any, back: Any, axis: int, *, xp: Any
) -> tuple[Any, Any, Any]:
    """The transpose of :func:`_mix` (fixed ``alpha``); also returns ``(h_min, h_max)``."""
    h_mn = _take(h, dmn, axis=axis)
    h_mx = _take(h, dmx, axis=axis)
    h_a, h_b = compare_t(h_mn, h_mx, alpha)
    return _take(xp.concat([h, h_a, h_b], axis=axis), back, axis=axis), h_mn, h_mx


@dataclass(frozen=True)
class Spec:
    network: str
    steepness: float
    sigmoid: str
    art_lambda: float

    @property
    def _dist(self) -> cdfs.Distribution:
        # resolved per call, not memoised on the instance: a lock-guarded cache would
        # stop torch.compile (cdfs.resolve is cheap for a resolved Distribution)
        return cdfs.resolve(self.sigmoid, art_lambda=self.art_lambda)

    def alpha(self, delta: Any, *, xp: Any) -> tuple[Any, Any]:
        """``α = F(β Δ)`` and ``dα/dΔ`` (:func:`._comparator.comparator_alpha`)."""
        d = self._dist
        return comparator_alpha(delta, self.steepness, d.entry, d.param_dict, xp=xp)

    def cdf(self, delta: Any, *, xp: Any) -> Any:
        """``α = F(β Δ)`` alone (the same numbers as :meth:`alpha`)."""
        d = self._dist
        return comparator_cdf(delta, self.steepness, d.entry, d.param_dict, xp=xp)

    def pdf(self, delta: Any, *, xp: Any) -> Any:
        """``dα/dΔ`` alone (the same numbers as :meth:`alpha`)."""
        d = self._dist
        return comparator_pdf(delta, self.steepness, d.entry, d.param_dict, xp=xp)


def _values_forward(
    x: Any, spec: Spec, idx: _Idx, *, xp: Any
) -> tuple[Any, list[Any], list[Any], list[Any]]:
    """The values network layer by layer: ``(y, alphas, dalphas, deltas)`` per layer."""
    y, alphas, res = _values_forward_res(x, spec, idx, xp=xp)
    return y, alphas, _unstack(res.dalpha, idx.L), _unstack(res.delta, idx.L)


def _values_forward_res(
    x: Any, spec: Spec, idx: _Idx, *, xp: Any
) -> tuple[Any, list[Any], Comparators]:
    """The values network: ``y``, each layer's ``α`` and the stacked :class:`Comparators`.

    Only ``α`` is needed layer by layer; ``dα/dΔ`` is one elementwise call on the
    stacked ``Δ`` after the loop (the same numbers, fewer array operations)."""
    ax = x.ndim - 1
    alphas, deltas = [], []
    d = spec._dist  # resolved once for all layers
    for li in range(idx.L):
        a = _take(x, idx.ia[li], axis=ax)
        b = _take(x, idx.ib[li], axis=ax)
        delta = b - a
        alpha = comparator_cdf(delta, spec.steepness, d.entry, d.param_dict, xp=xp)
        mn, mx = compare(a, b, alpha, delta)
        x = _take(xp.concat([x, mn, mx], axis=ax), idx.src[li], axis=ax)
        alphas.append(alpha)
        deltas.append(delta)
    like = x
    delta_s = _stack(deltas, like, idx.C, xp=xp)
    dalpha_s = spec.pdf(delta_s, xp=xp) if deltas else delta_s
    return x, alphas, Comparators(_stack(alphas, like, idx.C, xp=xp), dalpha_s, delta_s)


def _values_backward_step(
    g: Any, li: int, alpha: Any, dalpha: Any, delta: Any, g_alpha_extra: Any, idx: _Idx, *, xp: Any
) -> Any:
    """Cotangent of layer l's input from its output's cotangent ``g`` (+ a cotangent on α)."""
    ax = g.ndim - 1
    g_mn = _take(g, idx.dmn[li], axis=ax)
    g_mx = _take(g, idx.dmx[li], axis=ax)
    g_a, g_b = compare_vjp(g_mn, g_mx, alpha, dalpha, delta, g_alpha_extra)
    return _take(xp.concat([g, g_a, g_b], axis=ax), idx.back[li], axis=ax)


class Comparators(NamedTuple):
    """The values network's residuals, stacked ``(..., L, C)`` per comparator slot: ``α``,
    ``dα/dΔ`` and ``Δ``. Every Op's residuals start with these three arrays (a flat
    tuple at the Op boundary); :meth:`of` reads them back and :meth:`layers` unstacks."""

    alpha: Any
    dalpha: Any
    delta: Any

    @classmethod
    def of(cls, residuals: tuple[Any, ...]) -> Comparators:
        return cls(*residuals[: len(cls._fields)])

    @classmethod
    def stacked(
        cls, alphas: list[Any], dalphas: list[Any], deltas: list[Any], like: Any, C: int, *, xp: Any
    ) -> Comparators:
        return cls(*(_stack(r, like, C, xp=xp) for r in (alphas, dalphas, deltas)))

    def layers(self, L: int) -> tuple[list[Any], list[Any], list[Any]]:
        return _unstack(self.alpha, L), _unstack(self.dalpha, L), _unstack(self.delta, L)


#: Number of leading residuals that are :class:`Comparators`; the Op's own follow.
_NCOMP = len(Comparators._fields)


def _stack(items: list[Any], like: Any, C: int, *, xp: Any) -> Any:
    if items:
        return xp.stack(items, axis=-2)
    return xp.zeros((*like.shape[:-1], 0, C), dtype=like.dtype, device=device(like))


def _unstack(a: Any, L: int) -> list[Any]:
    return [a[..., li, :] for li in range(L)]


def _values_vjp(
    residuals: tuple[Any, ...], g: Any, idx: _Idx, g_alpha: list[Any] | None, *, xp: Any
) -> Any:
    alpha, dalpha, delta = Comparators.of(residuals).layers(idx.L)
    for li in range(idx.L - 1, -1, -1):
        extra = None if g_alpha is None else g_alpha[li]
        g = _values_backward_step(g, li, alpha[li], dalpha[li], delta[li], extra, idx, xp=xp)
    return g


@dataclass(frozen=True)
class NetworkSortOp(Op):
    spec: Spec
    n: int
    name: ClassVar[str] = "network_sort"

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        idx = _Idx.of(self.spec.network, self.n, x, xp)
        y, _, res = _values_forward_res(x, self.spec, idx, xp=xp)
        if idx.L == 0:
            y = y * 1  # a fresh array, not the input
        return y, tuple(res)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        idx = _Idx.of(self.spec.network, self.n, cotangent, xp)
        return (_values_vjp(residuals, cotangent, idx, None, xp=xp),)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # layer by layer: min = b - αΔ, max = a + αΔ with d(αΔ) = (α'Δ + α) dΔ, dΔ = t_b - t_a
        (t,) = tangents
        if t is None:
            return None
        idx = _Idx(layers(self.spec.network, self.n), t, xp)
        alpha, dalpha, delta = Comparators.of(residuals).layers(idx.L)
        ax = t.ndim - 1
        for li in range(idx.L):
            ta = _take(t, idx.ia[li], axis=ax)
            tb = _take(t, idx.ib[li], axis=ax)
            d_ad = (dalpha[li] * delta[li] + alpha[li]) * (tb - ta)
            t = _take(xp.concat([t, tb - d_ad, ta + d_ad], axis=ax), idx.src[li], axis=ax)
        return t


def _alpha_tangents(
    residuals: tuple[Any, ...], t: Any, idx: _Idx, *, xp: Any
) -> tuple[list[Any], list[Any]]:
    """Per layer ``α`` and its tangent ``dα = α'(Δ) dΔ``, with ``dΔ = t_b - t_a`` carried
    through the values network (layer by layer, as :meth:`NetworkSortOp.jvp`)."""
    alpha, dalpha, delta = Comparators.of(residuals).layers(idx.L)
    ax = t.ndim - 1
    d_alphas = []
    for li in range(idx.L):
        ta = _take(t, idx.ia[li], axis=ax)
        tb = _take(t, idx.ib[li], axis=ax)
        da = dalpha[li] * (tb - ta)
        d_alphas.append(da)
        d_ad = da * delta[li] + alpha[li] * (tb - ta)
        t = _take(xp.concat([t, tb - d_ad, ta + d_ad], axis=ax), idx.src[li], axis=ax)
    return alpha, d_alphas


def _eye_batch(x: Any, n: int, *, xp: Any) -> Any:
    eye = xp.eye(n, dtype=x.dtype, device=device(x))
    return xp.broadcast_to(eye, (*x.shape[:-1], n, n))


def _partner_coef(alpha: Any, li: int, idx: _Idx, *, xp: Any) -> Any:
    """Per-wire weight of the partner wire in layer l: ``1-α`` (ascending comparator), ``α``
    (descending comparator) or 0 (pass-through); shape ``(..., n)``."""
    return _per_wire(alpha + idx.asc[li] * (1 - 2 * alpha), li, idx, xp=xp)


def _per_wire(cp: Any, li: int, idx: _Idx, *, xp: Any) -> Any:
    """A per-comparator value of layer l, ``(..., C)``, on both wires of its comparator
    and 0 on pass-through wires, ``(..., n)``."""
    zero = xp.zeros((*cp.shape[:-1], 1), dtype=cp.dtype, device=device(cp))
    return _take(xp.concat([zero, cp], axis=cp.ndim - 1), idx.sel[li], axis=cp.ndim - 1)


def _pair_coefs(alpha: Any, network: str, n: int, *, xp: Any) -> Any:
    """Every comparator's partner weight ``c = α + asc (1 - 2α)``, stacked ``(..., L, C)``."""
    asc = network_asc(network, n, xp, device(alpha), alpha.dtype)
    return alpha + asc * (1 - 2 * alpha)


def _pairs(Q: Any, start: int, count: int, *, xp: Any) -> tuple[Any, Any]:
    """Rows ``start, start + 2, …`` and ``start + 1, start + 3, …`` of the run of
    ``2 count`` rows of ``Q`` from ``start`` (views where the backend allows)."""
    batch, m = tuple(Q.shape[:-2]), Q.shape[-1]
    pairs = xp.reshape(Q[..., start : start + 2 * count, :], (*batch, count, 2, m))
    return pairs[..., 0, :], pairs[..., 1, :]


def _splice(Q: Any, lo: Any, hi: Any, start: int, count: int, *, xp: Any) -> Any:
    """``Q`` with the run of :func:`_pairs` replaced by the rows ``lo`` and ``hi``."""
    batch, n, m = tuple(Q.shape[:-2]), Q.shape[-2], Q.shape[-1]
    new = xp.reshape(xp.stack([lo, hi], axis=-2), (*batch, 2 * count, m))
    end = start + 2 * count
    parts = [Q[..., :start, :]] if start else []
    parts.append(new)
    if end < n:
        parts.append(Q[..., end:, :])
    return xp.concat(parts, axis=-2) if len(parts) > 1 else new


def _pad_slots(v: Any, C: int, *, xp: Any) -> Any:
    """``v`` ``(..., count)`` padded with zeros to the ``C`` comparator slots."""
    count = v.shape[-1]
    if count == C:
        return v
    pad = xp.zeros((*v.shape[:-1], C - count), dtype=v.dtype, device=device(v))
    return xp.concat([v, pad], axis=-1)


@dataclass(frozen=True)
class NetworkPermutationOp(Op):
    """P is built transposed, ``Q = Pᵀ`` (rows = wires), so that every layer is one gather of
    whole rows: ``Q ← Q + c ⊙ (Q[partner] - Q)`` with ``c`` the partner weight per wire."""

    spec: Spec
    n: int
    name: ClassVar[str] = "network_permutation"

    def _blocked(self) -> bool:
        """The merge-matrix path (bitonic networks, n >= 2)."""
        return self.spec.network == "bitonic" and self.n > 1

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        if self._blocked():
            return self._forward_blocks(x, xp=xp)
        if not self._paired():
            return self._forward_layers(x, xp=xp)
        # odd-even (and the empty bitonic network on one wire): every layer compares the
        # neighbours of one contiguous run of wires, so a layer is a view of Q as pairs
        idx = _Idx.of(self.spec.network, self.n, x, xp)
        _, _, res = _values_forward_res(x, self.spec, idx, xp=xp)
        Q = _eye_batch(x, self.n, xp=xp)
        diffs = []
        if idx.L:
            c_all = _pair_coefs(res.alpha, self.spec.network, self.n, xp=xp)
            for li, (start, count) in enumerate(pair_runs(self.spec.network, self.n)):
                c = xp.expand_dims(c_all[..., li, :count], axis=-1)
                # Q_new[lo] = Q[lo] + c D, Q_new[hi] = Q[hi] - c D with D = Q[hi] - Q[lo]
                lo, hi = _pairs(Q, start, count, xp=xp)
                D = hi - lo
                cD = c * D
                Q = _splice(Q, lo + cD, hi - cD, start, count, xp=xp)
                diffs.append(D)  # one residual per layer (no stacking copy)
        return xp.matrix_transpose(Q), (*res, *diffs)

    def _paired(self) -> bool:
        """The pair-view path (every layer a run of neighbour pairs: odd-even networks)."""
        return self.spec.network == "odd_even" or self.n <= 1

    def _forward_layers(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        """Any layout, layer by layer with row gathers (``Q ← Q + c ⊙ (Q[partner] - Q)``);
        the reference the faster paths are tested against."""
        idx = _Idx.of(self.spec.network, self.n, x, xp)
        _, alphas, res = _values_forward_res(x, self.spec, idx, xp=xp)
        Q = _eye_batch(x, self.n, xp=xp)
        ax = Q.ndim - 2
        diffs = []
        for li in range(idx.L):
            E = _take(Q, idx.partner[li], axis=ax) - Q
            diffs.append(_take(E, idx.ia[li], axis=ax))  # Q[b] - Q[a] per comparator
            Q = Q + xp.expand_dims(_partner_coef(alphas[li], li, idx, xp=xp), axis=-1) * E
        return xp.matrix_transpose(Q), (*res, *diffs)

    def _vjp_layers(
        self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any
    ) -> tuple[Any | None, ...]:
        idx = _Idx.of(self.spec.network, self.n, cotangent, xp)
        alpha, dalpha, delta = Comparators.of(residuals).layers(idx.L)
        D = residuals[_NCOMP:]  # per layer: Q[b] - Q[a] for each comparator
        H = xp.matrix_transpose(cotangent)  # cotangent of Q
        ax = H.ndim - 2
        g = xp.zeros(cotangent.shape[:-1], dtype=cotangent.dtype, device=device(cotangent))
        for li in range(idx.L - 1, -1, -1):
            cp = xp.expand_dims(_partner_coef(alpha[li], li, idx, xp=xp), axis=-1)
            # Q_new[w] = Q[w] + c_w (Q[p(w)] - Q[w]), c shared by the two wires of a comparator,
            # so H_prev = H + c (H[p] - H) and d<H, Q_new>/dc = Σ_j (H[a] - H[b]) (Q[b] - Q[a])
            E = _take(H, idx.partner[li], axis=ax) - H
            g_c = xp.sum(_take(E, idx.ib[li], axis=ax) * D[li], axis=-1)
            g_alpha = g_c * (1 - 2 * idx.asc[li])  # c = α + asc (1 - 2α)
            H = H + cp * E
            g = _values_backward_step(g, li, alpha[li], dalpha[li], delta[li], g_alpha, idx, xp=xp)
        return (g,)

    def _forward_blocks(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        """Bitonic: one merge matrix and one batched matrix product per block
        (:mod:`dopt_core.relax._bitonic_merge`)."""
        idx = _Idx.of("bitonic", self.n, x, xp)
        _, _, res = _values_forward_res(x, self.spec, idx, xp=xp)
        c = _unstack(_pair_coefs(res.alpha, "bitonic", self.n, xp=xp), idx.L)
        P, saved = merges_forward(c, merges(self.n), x, xp=xp)
        return P, (*res, *saved.flat())

    def _vjp_blocks(
        self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any
    ) -> tuple[Any | None, ...]:
        idx = _Idx.of("bitonic", self.n, cotangent, xp)
        sched = merges(self.n)
        saved = MergeResiduals.unflatten(residuals[_NCOMP:], sched, idx.L)
        # the partner weights again (the same numbers as the forward's), to rebuild the merges
        c = _unstack(_pair_coefs(Comparators.of(residuals).alpha, "bitonic", self.n, xp=xp), idx.L)
        g_c = merges_vjp(c, saved, cotangent, sched, xp=xp)
        g_alpha = [g_c[li] * (1 - 2 * idx.asc[li]) for li in range(idx.L)]  # c = α + asc (1 - 2α)
        g = xp.zeros(cotangent.shape[:-1], dtype=cotangent.dtype, device=device(cotangent))
        return (_values_vjp(residuals, g, idx, g_alpha, xp=xp),)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        if self._blocked():
            return self._vjp_blocks(residuals, cotangent, xp=xp)
        if not self._paired():
            return self._vjp_layers(residuals, cotangent, xp=xp)
        idx = _Idx.of(self.spec.network, self.n, cotangent, xp)
        D = residuals[_NCOMP:]  # per layer: Q[hi] - Q[lo] for each comparator
        H = xp.matrix_transpose(cotangent)  # cotangent of Q
        g = xp.zeros(cotangent.shape[:-1], dtype=cotangent.dtype, device=device(cotangent))
        if not idx.L:
            return (g,)
        c_all = _pair_coefs(Comparators.of(residuals).alpha, self.spec.network, self.n, xp=xp)
        runs = pair_runs(self.spec.network, self.n)
        g_alpha: list[Any] = [None] * idx.L
        for li in range(idx.L - 1, -1, -1):
            start, count = runs[li]
            c = xp.expand_dims(c_all[..., li, :count], axis=-1)
            # the transpose: H_prev[lo] = H[lo] - c E, H_prev[hi] = H[hi] + c E with
            # E = H[lo] - H[hi], and d<H, Q_new>/dc = Σ_j E D (c shared by the two wires)
            h_lo, h_hi = _pairs(H, start, count, xp=xp)
            E = h_lo - h_hi
            g_c = xp.sum(E * D[li], axis=-1)
            cE = c * E
            H = _splice(H, h_lo - cE, h_hi + cE, start, count, xp=xp)
            g_alpha[li] = _pad_slots(g_c * idx.asc_sign[li][:count], idx.C, xp=xp)
        return (_values_vjp(residuals, g, idx, g_alpha, xp=xp),)

    #: the residuals (α, Δ, the saved matrices) are array operations of x, and the JVP
    #: and both VJPs array operations of the residuals
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # layer by layer on both paths (the bitonic merge matrices are products of the
        # same layers): Q ← Q + c ⊙ (Q[p] - Q) gives dQ ← dQ + c ⊙ (dQ[p] - dQ) + dc ⊙ (Q[p] - Q),
        # with c = α + asc (1 - 2α), dc = (1 - 2 asc) dα; Q is recomputed from the α residuals
        (t,) = tangents
        if t is None:
            return None
        idx = _Idx(layers(self.spec.network, self.n), t, xp)
        alpha, d_alpha = _alpha_tangents(residuals, t, idx, xp=xp)
        Q = _eye_batch(t, self.n, xp=xp)
        dQ = xp.zeros_like(Q)
        ax = Q.ndim - 2
        for li in range(idx.L):
            cp = xp.expand_dims(_partner_coef(alpha[li], li, idx, xp=xp), axis=-1)
            dc = d_alpha[li] * (1 - 2 * idx.asc[li])  # per comparator; pass-through: 0
            dcp = xp.expand_dims(_per_wire(dc, li, idx, xp=xp), axis=-1)
            E = _take(Q, idx.partner[li], axis=ax) - Q
            dE = _take(dQ, idx.partner[li], axis=ax) - dQ
            dQ = dQ + cp * dE + dcp * E
            Q = Q + cp * E
        return xp.matrix_transpose(dQ)


@dataclass(frozen=True)
class SoftTopKOp(Op):
    spec: Spec
    n: int
    k: int
    name: ClassVar[str] = "soft_top_k"

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        idx = _Idx.of(self.spec.network, self.n, x, xp)
        _, alphas, res = _values_forward_res(x, self.spec, idx, xp=xp)
        # Y_L = last k columns of I;  Y_{l-1} = M_l Y_l  (rows mixed by the transposed layer)
        Y = _eye_batch(x, self.n, xp=xp)[..., self.n - self.k :]
        ax = Y.ndim - 2
        diffs: list[Any] = [None] * idx.L
        for li in range(idx.L - 1, -1, -1):
            al = xp.expand_dims(alphas[li], axis=-1)
            Y, Y_mn, Y_mx = _mix_t(Y, al, idx.dmn[li], idx.dmx[li], idx.back[li], ax, xp=xp)
            diffs[li] = Y_mn - Y_mx
        E = (
            xp.stack(diffs, axis=-3)
            if diffs
            else xp.zeros((*x.shape[:-1], 0, 0, self.k), dtype=x.dtype, device=device(x))
        )
        return Y * 1 if idx.L == 0 else Y, (*res, E)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        idx = _Idx.of(self.spec.network, self.n, cotangent, xp)
        alpha, dalpha, delta = Comparators.of(residuals).layers(idx.L)
        (E,) = residuals[_NCOMP:]
        G = cotangent  # cotangent of Y_0
        ax = G.ndim - 2
        g_alpha = []
        for li in range(idx.L):
            # Y_{l-1}[a] = Y_l[min] - (1-α) E_l... : d/dα of row a is +E_l, of row b is -E_l
            G_a = _take(G, idx.ia[li], axis=ax)
            G_b = _take(G, idx.ib[li], axis=ax)
            g_alpha.append(xp.sum((G_a - G_b) * E[..., li, :, :], axis=-1))
            al = xp.expand_dims(alpha[li], axis=-1)
            G = _mix(G, al, idx.ia[li], idx.ib[li], idx.src[li], ax, xp=xp)
        g = xp.zeros(
            (*cotangent.shape[:-2], self.n), dtype=cotangent.dtype, device=device(cotangent)
        )
        for li in range(idx.L - 1, -1, -1):
            g = _values_backward_step(
                g, li, alpha[li], dalpha[li], delta[li], g_alpha[li], idx, xp=xp
            )
        return (g,)

    second_order: ClassVar[bool] = True  # as NetworkPermutationOp

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # Y_{l-1} = T_l(α_l) Y_l with T the transposed layer (affine in α through compare_t):
        # dY_{l-1} = T_l(α_l) dY_l + [T_l(α_l + dα_l) - T_l(α_l)] Y_l, Y recomputed from α
        (t,) = tangents
        if t is None:
            return None
        idx = _Idx(layers(self.spec.network, self.n), t, xp)
        alpha, d_alpha = _alpha_tangents(residuals, t, idx, xp=xp)
        Y = _eye_batch(t, self.n, xp=xp)[..., self.n - self.k :]
        dY = xp.zeros_like(Y)
        ax = Y.ndim - 2
        for li in range(idx.L - 1, -1, -1):
            al = xp.expand_dims(alpha[li], axis=-1)
            dal = xp.expand_dims(d_alpha[li], axis=-1)
            tabs = (idx.dmn[li], idx.dmx[li], idx.back[li])
            Y_new, Y_mn, Y_mx = _mix_t(Y, al, *tabs, ax, xp=xp)
            # compare_t's α-part: (a, b) rows get (+dα (Y_min - Y_max), -dα (Y_min - Y_max)),
            # pass-through rows 0
            d = dal * (Y_mn - Y_mx)
            extra = _take(xp.concat([xp.zeros_like(Y), d, -d], axis=ax), idx.back[li], axis=ax)
            dY = _mix_t(dY, al, *tabs, ax, xp=xp)[0] + extra
            Y = Y_new
        return dY
