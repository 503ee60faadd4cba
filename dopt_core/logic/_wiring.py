"""Fixed random wiring of logic layers (difflogic's ``'random'`` and ``'unique'``).

Connections are drawn once, on the host, and never trained: every neuron ``j`` of a
layer reads inputs ``idx_a[j]`` and ``idx_b[j]`` (Petersen et al., NeurIPS 2022, Sec. 3).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .._lib._checks import check_choice, check_int
from ..backend import numpy_generator

__all__ = ["logic_connections", "scatter_plan"]


def logic_connections(
    in_dim: int, out_dim: int, *, kind: str = "random", rng: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Draw the two input indices of every neuron of a logic layer.

    ``kind="random"`` (difflogic's ``LogicLayer`` default): the ``2·out_dim`` input
    slots get the values ``π₂(π₁(s) mod in_dim)`` for ``s = 0, …, 2·out_dim-1`` with
    random permutations ``π₁`` of ``2·out_dim`` and ``π₂`` of ``in_dim``; the first
    ``out_dim`` slots are ``idx_a``, the rest ``idx_b``. Every input is used
    :math:`\lfloor 2\,\mathrm{out}/\mathrm{in}\rfloor` or
    :math:`\lceil 2\,\mathrm{out}/\mathrm{in}\rceil` times; a neuron may read the same
    input twice.

    ``kind="unique"`` (difflogic's experiment default): distinct unordered pairs, taken
    in the order (0,1), (2,3), … then (1,2), (3,4), … then pairs at offsets 2, 3, …,
    truncated to ``out_dim`` and randomly permuted. It needs
    ``out_dim ≤ in_dim·(in_dim-1)/2``. It reads every input when ``in_dim`` is even or
    ``out_dim ≥ in_dim - 1``; for odd ``in_dim`` and smaller ``out_dim`` the last input
    (``in_dim - 1``, left out of the first round of pairs) is never read, as in difflogic.

    Both kinds need ``2·out_dim ≥ in_dim`` (with fewer neurons some inputs could not be
    read; difflogic asserts it). Petersen et al., "Deep differentiable logic gate networks",
    NeurIPS 2022.

    Parameters
    ----------
    in_dim, out_dim : int ≥ 1
    kind : {"random", "unique"}
    rng : numpy.random.Generator, int or None
        The connections are drawn with NumPy whatever the training framework.

    Returns
    -------
    idx_a, idx_b : numpy.ndarray, shape ``(out_dim,)``, int64

    Examples
    --------
    >>> from dopt_core.logic import logic_connections
    >>> a, b = logic_connections(4, 3, kind="unique", rng=0)
    >>> sorted(zip(a.tolist(), b.tolist()))
    [(0, 1), (1, 2), (2, 3)]
    >>> a, b = logic_connections(6, 3, rng=0)
    >>> sorted(a.tolist() + b.tolist())
    [0, 1, 2, 3, 4, 5]
    """
    in_dim = check_int(in_dim, name="in_dim", low=1)
    out_dim = check_int(out_dim, name="out_dim", low=1)
    kind = check_choice(kind, name="kind", choices=("random", "unique"))
    if 2 * out_dim < in_dim:
        raise ValueError(
            f"out_dim ({out_dim}) must be at least half of in_dim ({in_dim}): with fewer "
            "neurons some inputs could not be connected"
        )
    gen = numpy_generator(rng)
    if kind == "random":
        c = gen.permutation(2 * out_dim) % in_dim
        c = gen.permutation(in_dim)[c]
        return c[:out_dim].astype(np.int64), c[out_dim:].astype(np.int64)
    n_pairs = in_dim * (in_dim - 1) // 2
    if out_dim > n_pairs:
        raise ValueError(
            f"kind='unique' needs out_dim <= in_dim*(in_dim-1)/2 = {n_pairs} distinct pairs, "
            f"got out_dim={out_dim} for in_dim={in_dim}"
        )
    r = np.arange(in_dim)
    parts_a = [r[0:-1:2], r[1:-1:2]]  # (0,1),(2,3),... then (1,2),(3,4),...
    parts_b = [r[1::2], r[2::2]]
    parts_a = [pa[: len(pb)] for pa, pb in zip(parts_a, parts_b)]
    parts_b = [pb[: len(pa)] for pa, pb in zip(parts_a, parts_b)]
    total = sum(len(p) for p in parts_a)
    offset = 2
    while total < out_dim:
        parts_a.append(r[:-offset])
        parts_b.append(r[offset:])
        total += in_dim - offset
        offset += 1
    a = np.concatenate(parts_a)[:out_dim]
    b = np.concatenate(parts_b)[:out_dim]
    perm = gen.permutation(out_dim)
    return a[perm].astype(np.int64), b[perm].astype(np.int64)


@functools.lru_cache(maxsize=64)
def _plan(in_dim: int, idx_bytes: bytes) -> np.ndarray:
    idx = np.frombuffer(idx_bytes, dtype=np.int64)
    n = idx.shape[0]
    counts = np.bincount(idx, minlength=in_dim)
    width = max(int(counts.max()) if n else 1, 1)
    order = np.argsort(idx, kind="stable")
    ends = np.cumsum(counts)
    starts = ends - counts
    srt = idx[order]
    rank = np.arange(n) - starts[srt]
    pos = np.full((in_dim, width), n, dtype=np.int64)
    pos[srt, rank] = order
    pos.setflags(write=False)
    return pos


def scatter_plan(in_dim: int, idx: np.ndarray) -> np.ndarray:
    """The gather table that turns a scatter-add into a sum of gathers.

    For ``idx`` of length ``n`` with values in ``[0, in_dim)``, returns ``pos`` of shape
    ``(in_dim, m)`` (``m`` the largest multiplicity): row ``i`` lists the positions
    ``p`` with ``idx[p] == i``, padded with ``n``. Then for ``v`` of length ``n`` and
    ``v_ext = [v, 0]``, ``sum(v_ext[pos], axis=1)`` is the scatter-add of ``v`` at
    ``idx`` — array-API code without an in-place add, exact (no cumulative sums).
    """
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    return _plan(int(in_dim), idx.tobytes())
