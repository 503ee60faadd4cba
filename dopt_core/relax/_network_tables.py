"""Static comparator layouts of the sorting networks (pure NumPy, cached; private).

A network is a list of layers, each a list of disjoint comparators
``(a, b, wire_min, wire_max)`` on wires ``a < b``; :func:`layers` stacks them into
index arrays (:class:`Layers`) that the Ops of :mod:`dopt_core.relax._network_ops`
gather with, and :func:`merges` derives the bitonic merge schedule of
:mod:`dopt_core.relax._bitonic_merge`. Nothing here touches an array of the caller.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .._lib._constants import DeviceConstants, static_table
from ._bitonic_merge import MergeSchedule, live_schedule, merge_schedule, remember_schedule

__all__ = ["NETWORKS", "Layers", "comparators", "layers", "merges"]

NETWORKS = ("odd_even", "bitonic")


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



def comparators(network: str, n: int) -> list[list[tuple[int, int, int, int]]]:
    """The non-empty layers of ``network`` on ``n`` wires (arguments already validated)."""
    comps = _bitonic_comparators(n) if network == "bitonic" else _odd_even_comparators(n)
    return [c for c in comps if c]


@dataclass(frozen=True)
class Layers:
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
def layers(network: str, n: int) -> Layers:
    """The stacked index arrays of ``network`` on ``n`` wires (cached)."""
    comps = comparators(network, n)
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
    return Layers(n, ia, ib, dmn, dmx, src, back, tuple(len(c) for c in comps), partner, sel, asc)


def merges(n: int) -> MergeSchedule:
    """The merge schedule of the bitonic network on ``n`` wires (cached).

    Built by a static table (:func:`_ready_merges`) and read from the live schedules, so
    that a traced caller never traces the NumPy code that builds it."""
    return live_schedule(_ready_merges(n))


@functools.lru_cache(maxsize=64)
def _build_merges(n: int) -> MergeSchedule:
    lay = layers("bitonic", n)
    return merge_schedule(n, lay.ia, lay.ib, lay.counts)


@static_table
def _ready_merges(n: int) -> int:
    return remember_schedule(_build_merges(n))
