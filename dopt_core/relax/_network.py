"""Differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022) and soft top-k.

A sorting network is a fixed sequence of layers; each layer is a set of disjoint
comparators ``(a, b)`` on wires ``a < b``. The relaxed comparator with
``α = F(β (x_b - x_a))`` (``F`` a CDF of :mod:`dopt_core.relax.cdfs`, ``β`` the
steepness) writes

.. math::

    \\min{}_\\alpha(x_a, x_b) = \\alpha x_a + (1 - \\alpha) x_b, \\qquad
    \\max{}_\\alpha(x_a, x_b) = (1 - \\alpha) x_a + \\alpha x_b

to the wire that receives the minimum (``a``, or ``b`` in a descending block of the
bitonic network) and to the other one. Layers are applied with gathers over static
index arrays (values: O(n) work per layer). The permutation matrix is built without a
dense n×n layer matrix: for odd-even by row gathers (O(n²) per layer); for bitonic one
merge matrix and one batched matrix product per merge block
(:mod:`dopt_core.relax._bitonic_merge`: ⅔n³ multiply-adds in BLAS and about 2n² entries
written per block, instead of several elementwise passes over the n² entries in every
layer). The explicit VJPs run the layers (or blocks) backwards with the same maps.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import (
    check_choice,
    check_flag,
    check_int,
    check_positive,
    check_real,
    check_scores,
)
from .._lib._compat import device
from .._lib._constants import DeviceConstants
from ..backend import backend_for
from ..backend import take_nonnegative as _take
from ..op import Bound, Op, op_function
from . import cdfs
from ._bitonic_merge import MergeSchedule, merge_schedule, merges_forward, merges_vjp

__all__ = [
    "network_permutation",
    "network_sort",
    "soft_top_k",
    "sorting_network",
    "sorting_network_layers",
]

NETWORKS = ("odd_even", "bitonic")


# ---------------------------------------------------------------------------------
# network construction (host, cached; static index arrays)
# ---------------------------------------------------------------------------------
def _bitonic_comparators(n: int) -> list[list[tuple[int, int, int, int]]]:
    """Bitonic network for any n; comparators are ``(a, b, wire_min, wire_max)``.

    For n a power of two this is diffsort's layout (ascending and descending blocks),
    so results equal diffsort's. For other n, diffsort builds the network on
    ``N = 2^ceil(log2 n)`` wires and drops the comparators touching the ``N - n``
    discarded wires; with descending blocks that is not a sorting network (the hard
    network fails some inputs at n = 22, 38, 42–46, 54, …). Here, for such n, the
    all-ascending form is used instead — each merge starts by comparing wire i with
    its mirror in the block, then half-cleaners — with the discarded wires on top
    holding +∞ conceptually: a comparator with a discarded wire never moves the real
    value, so dropping it is exact and the result is a sorting network for every n.
    """
    if n <= 1:
        return []
    blocks = math.ceil(math.log2(n))
    big = 2**blocks
    layers = []
    if big == n:  # diffsort's layout
        for block in range(blocks):
            for layer in range(block + 1):
                m = 2 ** (block - layer)
                comps = []
                for i in range(0, big, 2 * m):
                    for j in range(m):
                        a, b = i + j, i + j + m
                        descending = (a // 2 ** (block + 1)) % 2 == 1
                        comps.append((a, b, b, a) if descending else (a, b, a, b))
                layers.append(comps)
        return layers
    for block in range(blocks):
        g = 2 ** (block + 1)
        mirror = [(s + j, s + g - 1 - j) for s in range(0, big, g) for j in range(g // 2)]
        layers.append([(a, b, a, b) for a, b in mirror if b < n])
        for layer in range(1, block + 1):
            m = 2 ** (block - layer)
            half = [(i + j, i + j + m) for i in range(0, big, 2 * m) for j in range(m)]
            layers.append([(a, b, a, b) for a, b in half if b < n])
    return [comps for comps in layers if comps]


def _odd_even_comparators(n: int) -> list[list[tuple[int, int, int, int]]]:
    """Odd-even transposition network: n layers of neighbours (i, i+1), i even then odd."""
    return [[(i, i + 1, i, i + 1) for i in range(t % 2, n - 1, 2)] for t in range(n)]


@dataclass(frozen=True)
class _Layers:
    """Stacked static index arrays of a network (L layers, C comparator slots each).

    ``ia``/``ib``: the compared wires; ``dmn``/``dmx``: the wires receiving min/max;
    ``src[w]``: where wire w reads from in ``concat([x, mins, maxs])``; ``back[w]``:
    where its cotangent comes from in ``concat([g, g_a, g_b])``. Layers with fewer
    than C comparators are padded with dummies on wire 0 that nothing reads.
    """

    n: int
    ia: np.ndarray
    ib: np.ndarray
    dmn: np.ndarray
    dmx: np.ndarray
    src: np.ndarray
    back: np.ndarray
    counts: tuple[int, ...]
    partner: np.ndarray = None  # type: ignore[assignment]
    sel: np.ndarray = None  # type: ignore[assignment]
    asc: np.ndarray = None  # type: ignore[assignment]
    consts: DeviceConstants = field(
        default_factory=DeviceConstants, init=False, compare=False, repr=False
    )

    @property
    def num_layers(self) -> int:
        return len(self.counts)

    @property
    def width(self) -> int:
        return int(self.ia.shape[1]) if self.ia.ndim == 2 else 0


@functools.lru_cache(maxsize=64)
def _layers(network: str, n: int) -> _Layers:
    comps = _bitonic_comparators(n) if network == "bitonic" else _odd_even_comparators(n)
    comps = [c for c in comps if c]
    L = len(comps)
    C = max((len(c) for c in comps), default=0)
    ia = np.zeros((L, C), np.int64)
    ib, dmn, dmx = ia.copy(), ia.copy(), ia.copy()
    src = np.tile(np.arange(n, dtype=np.int64), (L, 1))
    back = src.copy()
    partner = src.copy()
    sel = np.zeros((L, n), np.int64)
    asc = np.zeros((L, C))
    for li, layer in enumerate(comps):
        for c, (a, b, wmin, wmax) in enumerate(layer):
            ia[li, c], ib[li, c], dmn[li, c], dmx[li, c] = a, b, wmin, wmax
            src[li, wmin], src[li, wmax] = n + c, n + C + c
            back[li, a], back[li, b] = n + c, n + C + c
            partner[li, a], partner[li, b] = b, a
            sel[li, a] = sel[li, b] = 1 + c
            asc[li, c] = float(wmin == a)
    return _Layers(n, ia, ib, dmn, dmx, src, back, tuple(len(c) for c in comps), partner, sel, asc)


@functools.lru_cache(maxsize=64)
def _merges(n: int) -> MergeSchedule:
    lay = _layers("bitonic", n)
    return merge_schedule(n, lay.ia, lay.ib, lay.counts)


def sorting_network_layers(network: str, n: int) -> list[list[tuple[int, int, int, int]]]:
    """The comparators of a network, layer by layer: ``(a, b, wire_min, wire_max)``.

    ``a < b`` are the compared wires (``α = F(β (x_b - x_a))``); ``wire_min`` receives
    the relaxed minimum. Every layer's comparators touch disjoint wires; wires in no
    comparator pass through. Layers without comparators are omitted.

    >>> from dopt_core.relax import sorting_network_layers
    >>> sorting_network_layers("odd_even", 3)
    [[(0, 1, 0, 1)], [(1, 2, 1, 2)], [(0, 1, 0, 1)]]
    """
    check_choice(network, name="network", choices=NETWORKS)
    n = check_int(n, name="n", low=1)
    comps = _bitonic_comparators(n) if network == "bitonic" else _odd_even_comparators(n)
    return [c for c in comps if c]


class _Idx:
    """The static index arrays of one network on the arrays' device."""

    def __init__(self, lay: _Layers, like: Any, xp: Any) -> None:
        dev = device(like)

        def conv(name: str) -> Any:
            return lay.consts.rows(name, getattr(lay, name), xp, dev)

        self.ia, self.ib = conv("ia"), conv("ib")
        self.dmn, self.dmx = conv("dmn"), conv("dmx")
        self.src, self.back = conv("src"), conv("back")
        self.partner, self.sel = conv("partner"), conv("sel")
        self.asc = lay.consts.rows("asc", lay.asc, xp, dev, like.dtype)
        self.L, self.C, self.n = lay.num_layers, lay.width, lay.n


# ---------------------------------------------------------------------------------
# the layer maps, on any axis (values: last; P: last = columns; top-k: rows)
# ---------------------------------------------------------------------------------
def _compare(a: Any, b: Any, alpha: Any, delta: Any = None) -> tuple[Any, Any]:
    """The relaxed comparator: ``(min, max) = (α a + (1-α) b, (1-α) a + α b)``, written
    as ``b - αΔ`` and ``a + αΔ`` with ``Δ = b - a`` (passed when already computed)."""
    ad = alpha * (b - a if delta is None else delta)
    return b - ad, a + ad


def _compare_t(h_mn: Any, h_max: Any, alpha: Any) -> tuple[Any, Any]:
    """The transpose of :func:`_compare` for fixed ``α``: the cotangents of ``(a, b)``,
    ``(α h_min + (1-α) h_max, (1-α) h_min + α h_max)``."""
    t = alpha * (h_mn - h_max)
    return h_max + t, h_mn - t


def _mix(v: Any, alpha: Any, ia: Any, ib: Any, src: Any, axis: int, *, xp: Any) -> Any:
    """One relaxed layer: compared entries along ``axis`` mixed by ``alpha``."""
    mn, mx = _compare(_take(v, ia, axis=axis), _take(v, ib, axis=axis), alpha)
    return _take(xp.concat([v, mn, mx], axis=axis), src, axis=axis)


def _mix_t(
    h: Any, alpha: Any, dmn: Any, dmx: Any, back: Any, axis: int, *, xp: Any
) -> tuple[Any, Any, Any]:
    """The transpose of :func:`_mix` (fixed ``alpha``); also returns ``(h_min, h_max)``."""
    h_mn = _take(h, dmn, axis=axis)
    h_mx = _take(h, dmx, axis=axis)
    h_a, h_b = _compare_t(h_mn, h_mx, alpha)
    return _take(xp.concat([h, h_a, h_b], axis=axis), back, axis=axis), h_mn, h_mx


@dataclass(frozen=True)
class _Spec:
    network: str
    steepness: float
    sigmoid: str
    art_lambda: float

    def alpha(self, delta: Any, *, xp: Any) -> tuple[Any, Any]:
        entry = cdfs.get(self.sigmoid)
        p = {"art_lambda": self.art_lambda}
        return (
            entry.cdf_steep(delta, self.steepness, p, xp=xp),
            entry.pdf_steep(delta, self.steepness, p, xp=xp),
        )


def _values_forward(
    x: Any, spec: _Spec, idx: _Idx, *, xp: Any
) -> tuple[Any, list[Any], list[Any], list[Any]]:
    ax = x.ndim - 1
    alphas, dalphas, deltas = [], [], []
    for li in range(idx.L):
        a = _take(x, idx.ia[li], axis=ax)
        b = _take(x, idx.ib[li], axis=ax)
        delta = b - a
        alpha, dalpha = spec.alpha(delta, xp=xp)
        mn, mx = _compare(a, b, alpha, delta)
        x = _take(xp.concat([x, mn, mx], axis=ax), idx.src[li], axis=ax)
        alphas.append(alpha)
        dalphas.append(dalpha)
        deltas.append(delta)
    return x, alphas, dalphas, deltas


def _values_backward_step(
    g: Any, li: int, alpha: Any, dalpha: Any, delta: Any, g_alpha_extra: Any, idx: _Idx, *, xp: Any
) -> Any:
    """Cotangent of layer l's input from its output's cotangent ``g`` (+ a cotangent on α)."""
    ax = g.ndim - 1
    g_mn = _take(g, idx.dmn[li], axis=ax)
    g_mx = _take(g, idx.dmx[li], axis=ax)
    d_alpha = (g_mx - g_mn) * delta  # ∂/∂α of <g_min, min> + <g_max, max>
    g_alpha = d_alpha if g_alpha_extra is None else d_alpha + g_alpha_extra
    g_delta = g_alpha * dalpha  # α = F(βΔ): through Δ = b - a
    g_a, g_b = _compare_t(g_mn, g_mx, alpha)
    g_a, g_b = g_a - g_delta, g_b + g_delta
    return _take(xp.concat([g, g_a, g_b], axis=ax), idx.back[li], axis=ax)


def _stack(items: list[Any], like: Any, C: int, *, xp: Any) -> Any:
    if items:
        return xp.stack(items, axis=-2)
    return xp.zeros((*like.shape[:-1], 0, C), dtype=like.dtype, device=device(like))


def _unstack(a: Any, L: int) -> list[Any]:
    return [a[..., li, :] for li in range(L)]


def _values_vjp(
    residuals: tuple[Any, ...], g: Any, idx: _Idx, g_alpha: list[Any] | None, *, xp: Any
) -> Any:
    alpha, dalpha, delta = (_unstack(r, idx.L) for r in residuals[:3])
    for li in range(idx.L - 1, -1, -1):
        extra = None if g_alpha is None else g_alpha[li]
        g = _values_backward_step(g, li, alpha[li], dalpha[li], delta[li], extra, idx, xp=xp)
    return g


@dataclass(frozen=True)
class NetworkSortOp(Op):
    spec: _Spec
    n: int
    name: ClassVar[str] = "network_sort"

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        idx = _Idx(_layers(self.spec.network, self.n), x, xp)
        y, alphas, dalphas, deltas = _values_forward(x, self.spec, idx, xp=xp)
        res = tuple(_stack(r, x, idx.C, xp=xp) for r in (alphas, dalphas, deltas))
        if idx.L == 0:
            y = y * 1  # a fresh array, not the input
        return y, res

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        idx = _Idx(_layers(self.spec.network, self.n), cotangent, xp)
        return (_values_vjp(residuals, cotangent, idx, None, xp=xp),)


def _eye_batch(x: Any, n: int, *, xp: Any) -> Any:
    eye = xp.eye(n, dtype=x.dtype, device=device(x))
    return xp.broadcast_to(eye, (*x.shape[:-1], n, n))


def _partner_coef(alpha: Any, li: int, idx: _Idx, *, xp: Any) -> Any:
    """Per-wire weight of the partner wire in layer l: ``1-α`` (ascending comparator), ``α``
    (descending comparator) or 0 (pass-through); shape ``(..., n)``."""
    cp = alpha + idx.asc[li] * (1 - 2 * alpha)
    zero = xp.zeros((*alpha.shape[:-1], 1), dtype=alpha.dtype, device=device(alpha))
    return _take(xp.concat([zero, cp], axis=alpha.ndim - 1), idx.sel[li], axis=alpha.ndim - 1)


@dataclass(frozen=True)
class NetworkPermutationOp(Op):
    """P is built transposed, ``Q = Pᵀ`` (rows = wires), so that every layer is one gather of
    whole rows: ``Q ← Q + c ⊙ (Q[partner] - Q)`` with ``c`` the partner weight per wire."""

    spec: _Spec
    n: int
    name: ClassVar[str] = "network_permutation"

    def _blocked(self) -> bool:
        """The merge-matrix path (bitonic networks, n >= 2)."""
        return self.spec.network == "bitonic" and self.n > 1

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        if self._blocked():
            return self._forward_blocks(x, xp=xp)
        idx = _Idx(_layers(self.spec.network, self.n), x, xp)
        _, alphas, dalphas, deltas = _values_forward(x, self.spec, idx, xp=xp)
        Q = _eye_batch(x, self.n, xp=xp)
        ax = Q.ndim - 2
        diffs = []
        for li in range(idx.L):
            E = _take(Q, idx.partner[li], axis=ax) - Q
            diffs.append(_take(E, idx.ia[li], axis=ax))  # Q[b] - Q[a] per comparator
            Q = Q + xp.expand_dims(_partner_coef(alphas[li], li, idx, xp=xp), axis=-1) * E
        res = tuple(_stack(r, x, idx.C, xp=xp) for r in (alphas, dalphas, deltas))
        # one residual per layer (no stacking copy): Q[b] - Q[a] for each comparator
        return xp.matrix_transpose(Q), (*res, *diffs)

    def _forward_blocks(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        """Bitonic: one merge matrix and one batched matrix product per block
        (:mod:`dopt_core.relax._bitonic_merge`)."""
        idx = _Idx(_layers("bitonic", self.n), x, xp)
        _, alphas, dalphas, deltas = _values_forward(x, self.spec, idx, xp=xp)
        res = tuple(_stack(r, x, idx.C, xp=xp) for r in (alphas, dalphas, deltas))
        lay = _layers("bitonic", self.n)  # cached: the tables idx was made from
        asc = lay.consts.array("asc2d", lay.asc, xp, device(x), x.dtype)
        c_all = res[0] + asc * (1 - 2 * res[0])  # partner weights: c = α + asc (1 - 2α)
        c = _unstack(c_all, idx.L)
        P, saved = merges_forward(c, _merges(self.n), x, xp=xp)
        return P, (*res, *saved)

    def _vjp_blocks(
        self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any
    ) -> tuple[Any | None, ...]:
        idx = _Idx(_layers("bitonic", self.n), cotangent, xp)
        g_c = merges_vjp(idx.L, list(residuals[3:]), cotangent, _merges(self.n), xp=xp)
        g_alpha = [g_c[li] * (1 - 2 * idx.asc[li]) for li in range(idx.L)]  # c = α + asc (1 - 2α)
        g = xp.zeros(cotangent.shape[:-1], dtype=cotangent.dtype, device=device(cotangent))
        return (_values_vjp(residuals, g, idx, g_alpha, xp=xp),)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        if self._blocked():
            return self._vjp_blocks(residuals, cotangent, xp=xp)
        idx = _Idx(_layers(self.spec.network, self.n), cotangent, xp)
        alpha, dalpha, delta = (_unstack(r, idx.L) for r in residuals[:3])
        D = residuals[3:]
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


@dataclass(frozen=True)
class SoftTopKOp(Op):
    spec: _Spec
    n: int
    k: int
    name: ClassVar[str] = "soft_top_k"

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        idx = _Idx(_layers(self.spec.network, self.n), x, xp)
        _, alphas, dalphas, deltas = _values_forward(x, self.spec, idx, xp=xp)
        # Y_L = last k columns of I;  Y_{l-1} = M_l Y_l  (rows mixed by the transposed layer)
        Y = _eye_batch(x, self.n, xp=xp)[..., self.n - self.k :]
        ax = Y.ndim - 2
        diffs: list[Any] = [None] * idx.L
        for li in range(idx.L - 1, -1, -1):
            al = xp.expand_dims(alphas[li], axis=-1)
            Y, Y_mn, Y_mx = _mix_t(Y, al, idx.dmn[li], idx.dmx[li], idx.back[li], ax, xp=xp)
            diffs[li] = Y_mn - Y_mx
        res = tuple(_stack(r, x, idx.C, xp=xp) for r in (alphas, dalphas, deltas))
        E = (
            xp.stack(diffs, axis=-3)
            if diffs
            else xp.zeros((*x.shape[:-1], 0, 0, self.k), dtype=x.dtype, device=device(x))
        )
        return Y * 1 if idx.L == 0 else Y, (*res, E)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        idx = _Idx(_layers(self.spec.network, self.n), cotangent, xp)
        alpha, dalpha, delta = (_unstack(r, idx.L) for r in residuals[:3])
        E = residuals[3]
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


# ---------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------
def _spec(network: Any, steepness: Any, sigmoid: Any, art_lambda: Any) -> _Spec:
    network = check_choice(network, name="network", choices=NETWORKS)
    steepness = check_positive(steepness, name="steepness")
    sigmoid = check_choice(sigmoid, name="sigmoid", choices=cdfs.NAMES)
    art_lambda = check_real(art_lambda, name="art_lambda")
    if not 0 <= art_lambda < 1:
        raise ValueError(f"art_lambda must be in [0, 1), got {art_lambda}")
    return _Spec(network, steepness, sigmoid, art_lambda)


_PARAMS_DOC = """
    Parameters
    ----------
    x : array, shape ``(..., n)``, float32 or float64
        Values to sort along the last axis (leading axes are batch axes); any ``n >= 1``.
    network : {"odd_even", "bitonic"}
        ``odd_even``: n layers of neighbour comparators; ``bitonic``: ⌈log₂n⌉(⌈log₂n⌉+1)/2
        layers, built on the next power of two with the lowest surplus wires dropped
        (as diffsort does).
    steepness : float > 0
        Inverse temperature β (``α = F(β Δ)``).
    sigmoid : str
        Any name of :mod:`dopt_core.relax.cdfs` (default ``"cauchy"``, monotone);
        diffsort's six (``logistic``, ``logistic_phi``, ``gaussian``, ``reciprocal``,
        ``cauchy``, ``optimal``) use diffsort's formulas. GenDR entries use their
        default parameters (``shift=0``, ``shape=2``).
    art_lambda : float in [0, 1)
        Exponent λ of the activation replacement trick (``logistic_phi`` only).
"""


@op_function
def network_sort(
    x: Any,
    /,
    *,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    check_finite: bool = True,
) -> Bound:
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    return Bound(
        NetworkSortOp(_spec(network, steepness, sigmoid, art_lambda), int(x.shape[-1])),
        (x,),
        out_dtype,
    )


@op_function
def network_permutation(
    x: Any,
    /,
    *,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    check_finite: bool = True,
) -> Bound:
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    return Bound(
        NetworkPermutationOp(_spec(network, steepness, sigmoid, art_lambda), int(x.shape[-1])),
        (x,),
        out_dtype,
    )


network_sort.__doc__ = (
    """Sorted values of a differentiable sorting network (ascending).

    The first output of :func:`sorting_network`, as its own op: O(n) work per layer,
    residuals ``α``, ``F'`` and ``Δ`` per comparator (O(n · layers) memory).
    """
    + _PARAMS_DOC
)
network_permutation.__doc__ = (
    """Relaxed permutation matrix of a differentiable sorting network.

    The second output of :func:`sorting_network`, as its own op: ``P[..., i, j]`` is the
    weight of input ``i`` in ascending slot ``j`` (``network_sort(x) = x @ P`` up to
    rounding; rows and columns sum to 1). The matrix is built transposed, one layer at a
    time: O(n²) work per layer for odd-even; for bitonic one merge matrix ``M_b`` per
    block and ``P_b = blockdiag(P_{b-1}) M_bᵀ`` as one batched matrix product
    (:mod:`dopt_core.relax._bitonic_merge`). The VJP keeps each block's input product
    and the merges' partial products (about 3n² entries) and runs the blocks backwards,
    feeding ∂/∂α into the values network's VJP.
    """
    + _PARAMS_DOC
)


def sorting_network(
    x: Any,
    /,
    *,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    return_permutation: bool = True,
    check_finite: bool = True,
) -> Any:
    (
        r"""Differentiable sorting network: relaxed ascending sort and permutation matrix.

    Runs ``x`` through the layers of an odd-even transposition or bitonic network whose
    comparators are relaxed with a CDF ``F``: for compared wires ``a < b`` and
    :math:`\Delta = x_b - x_a`, :math:`\alpha = F(\beta\Delta)`, the minimum slot
    receives :math:`\alpha x_a + (1-\alpha) x_b` and the maximum slot
    :math:`(1-\alpha) x_a + \alpha x_b`. The relaxed permutation is the product of the
    layers' doubly-stochastic matrices, :math:`P = M_1 M_2 \cdots M_L`.

    Conventions: ascending; ``P[..., i, j]`` is the weight of input ``i`` in sorted slot
    ``j``, so ``sorted = x @ P`` — the convention of diffsort's code (its README calls
    this the transpose of the paper's P) and of :func:`dopt_core.solvers.permutation`.
    The numbers equal diffsort's ``DiffSortNet`` for the same network, steepness,
    sigmoid and ``art_lambda``. As ``steepness → ∞`` the outputs tend to the exact sort
    and permutation matrix (distinct inputs; odd-even and bitonic networks sort). With
    ``sigmoid`` in ``{"cauchy", "reciprocal", "optimal"}`` the network is monotonic: every
    sorted output is non-decreasing in every input (ICLR 2022), ``logistic`` is not.

    Two outputs, one op: ``P`` comes from :func:`network_permutation` (its own explicit
    VJP, which also carries ``∂α/∂x``) and the sorted values are ``x @ P`` — equal to
    :func:`network_sort` up to rounding because each layer is linear in the values for
    fixed ``α`` — so one network pass and one VJP serve both outputs (the product is
    differentiated by the framework). With ``return_permutation=False`` the values come
    from :func:`network_sort` alone: O(n) work per layer, no n×n matrix.
    """
        + _PARAMS_DOC.replace("    Parameters\n    ----------\n", "")
        + r"""
    return_permutation : bool
        Return ``(sorted, P)`` (default) or only ``sorted``.

    Returns
    -------
    sorted : array ``(..., n)``, and ``P`` : array ``(..., n, n)`` (if requested)

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import sorting_network
    >>> y, P = sorting_network(np.array([3.0, 1.0, 2.0]), steepness=1e9)
    >>> np.round(y, 6), np.round(P, 6)
    (array([1., 2., 3.]), array([[0., 0., 1.],
           [1., 0., 0.],
           [0., 1., 0.]]))

    References
    ----------
    Petersen, Borgelt, Kuehne, Deussen, "Differentiable sorting networks for scalable
    sorting and ranking supervision", ICML 2021 (arXiv:2105.04019); "Monotonic
    differentiable sorting networks", ICLR 2022 (arXiv:2203.09630).
    """
    )
    kwargs = dict(
        network=network,
        steepness=steepness,
        sigmoid=sigmoid,
        art_lambda=art_lambda,
        check_finite=check_finite,
    )
    if not check_flag(return_permutation, name="return_permutation"):
        return network_sort(x, **kwargs)
    P = network_permutation(x, **kwargs)
    # sorted = x @ P: the values network is linear in x for fixed α, so this equals
    # network_sort(x) up to rounding, and one network pass (and one VJP, through P's)
    # serves both outputs; the framework differentiates the product natively
    xp = backend_for(P).namespace(P)
    xc = xp.astype(x, P.dtype) if x.dtype != P.dtype else x
    y = xp.matmul(xp.expand_dims(xc, axis=-2), P)[..., 0, :]
    return y, P


@op_function
def soft_top_k(
    x: Any,
    /,
    k: int,
    *,
    network: str = "bitonic",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed top-k matrix of a sorting network, without forming the n×n permutation.

    Returns the last ``k`` columns of the relaxed permutation
    :math:`P = M_1 \cdots M_L` of :func:`sorting_network`, computed as in difftopk by
    back-multiplying :math:`P_{:, n-k:} = M_1(M_2(\cdots(M_L E_k)))` from
    :math:`E_k = I_{:, n-k:}`: O(n k) work per layer and O(n k · layers) memory.
    ``out[..., i, j]`` is the weight of input ``i`` in the ``j``-th of the top ``k``
    ascending slots (``j = k - 1`` is the maximum); ``out.sum(-1)`` is a relaxed
    top-k indicator summing to ``k`` and tends to :func:`dopt_core.solvers.top_k` as
    ``steepness → ∞``.

    Parameters
    ----------
    x : array ``(..., n)``
    k : int, ``1 <= k <= n``
    network, steepness, sigmoid, art_lambda
        As in :func:`sorting_network` (default network ``"bitonic"``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_top_k
    >>> np.round(soft_top_k(np.array([0.5, 3.0, -1.0, 2.0]), 2, steepness=1e9).sum(-1), 6)
    array([0., 1., 0., 1.])

    References
    ----------
    Petersen, Kuehne, Borgelt, Deussen, "Differentiable top-k classification learning",
    ICML 2022 (arXiv:2206.07290).
    """
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    n = int(x.shape[-1])
    k = check_int(k, name="k", low=1, high=n)
    return Bound(SoftTopKOp(_spec(network, steepness, sigmoid, art_lambda), n, k), (x,), out_dtype)
