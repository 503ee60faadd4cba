"""Convolutional logic: logic-tree kernels over receptive fields, and OR pooling.

Petersen, Kuehne, Borgelt, Welzel, Ermon, "Convolutional differentiable logic gate
networks", NeurIPS 2024. A kernel is a complete binary tree of logic gates of depth
``d``: its ``2^d`` leaves read fixed, randomly chosen entries ``(channel, dy, dx)`` of
a ``k × k`` receptive field, and the same gates are applied at every position (weight
sharing). Here every level of the tree is one :func:`logic_layer` call whose weight rows
are shared across positions, so no new gradient formula is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_choice, check_int, check_positive, check_scores
from .._lib._compat import device
from ..backend import numpy_generator
from ..op import Bound, Op, op_function
from ._gates import NUM_GATES
from ._layer import logic_layer

__all__ = [
    "OrPoolOp",
    "conv_tree_leaves",
    "conv_tree_wiring",
    "logic_conv2d",
    "or_pool2d",
]


def conv_tree_leaves(
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    depth: int = 3,
    channels: int | None = None,
    rng: Any = None,
) -> np.ndarray:
    r"""Random leaves of the logic-tree kernels: ``(channel, dy, dx)`` per leaf.

    Every output channel is one tree of depth ``depth`` (``2^depth`` leaves,
    ``2^depth - 1`` gates); each leaf reads a uniformly drawn channel and offset of the
    ``kernel_size × kernel_size`` receptive field, the two leaves of a first-level gate
    being distinct entries (Petersen et al., NeurIPS 2024, Sec. 3, draw the leaves at
    random within the receptive field). With ``channels = m`` every tree first draws
    ``m`` distinct input channels and its leaves read only those, a field of
    ``m · k²`` entries instead of ``C · k²`` (the paper restricts each tree to two input
    channels, ``channels=2``).

    Parameters
    ----------
    in_channels, out_channels : int ≥ 1
    kernel_size : int ≥ 1
    depth : int ≥ 1
    channels : int ≥ 1 or None
        Input channels per tree (at most ``in_channels``); None: the whole receptive
        field (the default).
    rng : numpy.random.Generator, int or None

    Returns
    -------
    numpy.ndarray, shape ``(out_channels, 2**depth, 3)``, int64

    Examples
    --------
    >>> from dopt_core.logic import conv_tree_leaves
    >>> conv_tree_leaves(2, 4, kernel_size=3, depth=2, rng=0).shape
    (4, 4, 3)
    >>> leaves = conv_tree_leaves(8, 5, kernel_size=3, depth=3, channels=2, rng=0)
    >>> [len(set(tree[:, 0])) <= 2 for tree in leaves]
    [True, True, True, True, True]
    """
    in_channels = check_int(in_channels, name="in_channels", low=1)
    out_channels = check_int(out_channels, name="out_channels", low=1)
    kernel_size = check_int(kernel_size, name="kernel_size", low=1)
    depth = check_int(depth, name="depth", low=1, high=12)
    if channels is not None:
        channels = check_int(channels, name="channels", low=1, high=in_channels)
    kk = kernel_size * kernel_size
    field = (in_channels if channels is None else channels) * kk
    if field < 2:
        raise ValueError("the receptive field (channels per tree)*kernel_size**2 must hold at least 2 entries")
    gen = numpy_generator(rng)
    n_leaves = 2**depth
    flat = np.empty((out_channels, n_leaves), dtype=np.int64)
    for c in range(out_channels):
        # the tree's channels: all of them, or `channels` distinct ones drawn for this tree
        chans = np.arange(in_channels) if channels is None else np.sort(gen.choice(in_channels, channels, replace=False))
        for g in range(n_leaves // 2):
            pick = gen.choice(field, size=2, replace=False)
            flat[c, 2 * g : 2 * g + 2] = chans[pick // kk] * kk + pick % kk
    ch, rest = np.divmod(flat, kk)
    dy, dx = np.divmod(rest, kernel_size)
    return np.stack([ch, dy, dx], axis=-1)


def _check_leaves(leaves: Any) -> np.ndarray:
    a = np.asarray(leaves)
    if a.dtype.kind not in "iu" or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"leaves must be an integer array of shape (out_channels, 2**depth, 3), got {a.dtype} {a.shape}")
    n = a.shape[1]
    if n < 2 or n & (n - 1):
        raise ValueError(f"leaves.shape[1] must be a power of two >= 2 (2**depth), got {n}")
    if a.min() < 0:
        raise ValueError("leaves must be non-negative (channel, dy, dx) entries")
    return a.astype(np.int64)


def conv_tree_wiring(
    leaves: Any, in_shape: tuple[int, int, int], *, kernel_size: int, padding: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[int, int, int]]:
    r"""The wiring of every tree level over the flattened padded image.

    The input of level 1 is the zero-padded image ``(C, H + 2p, W + 2p)`` flattened;
    level ``l`` has ``out_channels · 2^{d-l}`` weight rows, each applied at the
    ``P = H'·W'`` output positions, neuron ``(row, position)`` at flat index
    ``row·P + position``; its gate ``g`` of channel ``c`` reads gates ``2g`` and
    ``2g+1`` of level ``l-1`` at the same position. The last level is the output image
    ``(out_channels, H', W')`` flattened, with ``H' = H + 2p - k + 1``.

    Parameters
    ----------
    leaves : integer array ``(out_channels, 2**depth, 3)`` (see :func:`conv_tree_leaves`)
    in_shape : (C, H, W)
    kernel_size : int ≥ 1
        The receptive field is ``kernel_size × kernel_size`` (leaf offsets lie below it).
    padding : int ≥ 0

    Returns
    -------
    levels : list of ``(idx_a, idx_b)``, one per tree level
    out_shape : (out_channels, H', W')

    Examples
    --------
    >>> from dopt_core.logic import conv_tree_leaves, conv_tree_wiring
    >>> lv, out = conv_tree_wiring(conv_tree_leaves(1, 2, depth=2, rng=0), (1, 4, 4), kernel_size=3)
    >>> [a.shape for a, b in lv], out
    ([(16,), (8,)], (2, 2, 2))
    """
    leaves = _check_leaves(leaves)
    if len(in_shape) != 3:
        raise ValueError(f"in_shape must be (channels, height, width), got {in_shape}")
    C, H, W = (check_int(v, name="in_shape", low=1) for v in in_shape)
    padding = check_int(padding, name="padding", low=0)
    k = check_int(kernel_size, name="kernel_size", low=1)
    if int(leaves[..., 1:].max()) >= k:
        raise ValueError(f"leaf offsets must lie in [0, kernel_size={k}), got {int(leaves[..., 1:].max())}")
    if int(leaves[..., 0].max()) >= C:
        raise ValueError(f"leaves read channel {int(leaves[..., 0].max())} but the input has {C} channels")
    Hp, Wp = H + 2 * padding, W + 2 * padding
    Ho, Wo = Hp - k + 1, Wp - k + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"the receptive field ({k}x{k}) is larger than the padded input ({Hp}x{Wp})")
    out_ch, n_leaves, _ = leaves.shape
    P = Ho * Wo
    oy, ox = np.divmod(np.arange(P), Wo)
    # flat padded index of leaf (c, i) at position p: (ch·Hp + oy+dy)·Wp + ox+dx
    flat = (leaves[:, :, 0, None] * Hp + oy + leaves[:, :, 1, None]) * Wp + ox + leaves[:, :, 2, None]
    levels = [(flat[:, 0::2, :].reshape(-1), flat[:, 1::2, :].reshape(-1))]
    rows = n_leaves // 2
    while rows > 1:
        nxt = rows // 2
        c = np.arange(out_ch)[:, None, None]
        g = np.arange(nxt)[None, :, None]
        p = np.arange(P)[None, None, :]
        a = (c * rows + 2 * g) * P + p
        levels.append((a.reshape(-1), (a + P).reshape(-1)))
        rows = nxt
    return levels, (out_ch, Ho, Wo)


def _pad(x: Any, padding: int, *, xp: Any) -> Any:
    if padding == 0:
        return x
    *lead, H, W = x.shape
    zr = xp.zeros((*lead, padding, W), dtype=x.dtype, device=device(x))
    x = xp.concat([zr, x, zr], axis=-2)
    zc = xp.zeros((*lead, H + 2 * padding, padding), dtype=x.dtype, device=device(x))
    return xp.concat([zc, x, zc], axis=-1)


def logic_conv2d(
    x: Any,
    leaves: Any,
    weights: Any,
    *,
    kernel_size: int,
    padding: int = 0,
    mode: str = "soft",
    grad_factor: float = 1.0,
) -> Any:
    r"""Logic-tree convolution (Petersen et al., "Convolutional differentiable logic gate networks", NeurIPS 2024).

    Output channel ``c`` at position ``(i, j)`` is a depth-``d`` binary tree of relaxed
    gates, the same gates at every position: level 1 combines pairs of leaves
    :math:`x_{\,\mathrm{ch},\, i+dy,\, j+dx}` (``leaves[c]``), every further level
    combines pairs of the level below, each gate being
    :math:`c_0 + c_1 a + c_2 b + c_3 ab` with :math:`c = \mathrm{softmax}(W)\,C` as in
    :func:`logic_layer` (whose VJP is used level by level; the weight gradient of a
    shared gate sums over positions). Zero padding of ``padding`` pixels.

    Parameters
    ----------
    x : array, shape ``(..., C, H, W)``, values in ``[0, 1]``
    leaves : integer array ``(out_channels, 2**depth, 3)`` (:func:`conv_tree_leaves`)
    weights : sequence of ``depth`` arrays
        Level ``l`` (1-based) has shape ``(out_channels · 2**(depth-l), 16)``.
    kernel_size : int ≥ 1
    padding : int ≥ 0
    mode : {"soft", "hard"}
    grad_factor : float > 0
        Gradient scale applied at the input of every level.

    Returns
    -------
    array, shape ``(..., out_channels, H', W')``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import conv_tree_leaves, logic_conv2d
    >>> leaves = conv_tree_leaves(1, 3, kernel_size=2, depth=2, rng=0)
    >>> ws = [np.zeros((6, 16)), np.zeros((3, 16))]
    >>> logic_conv2d(np.ones((1, 4, 4)), leaves, ws, kernel_size=2, mode="hard").shape
    (3, 3, 3)
    """
    # validation only: every level is a logic_layer call on x's own dtype (half precision
    # is computed in float32 level by level and returned as x's dtype, as logic_layer does)
    _, xp, _ = check_scores(x, name="x", min_ndim=3)
    padding = check_int(padding, name="padding", low=0)
    mode = check_choice(mode, name="mode", choices=("soft", "hard"))
    grad_factor = check_positive(grad_factor, name="grad_factor")
    leaves = _check_leaves(leaves)
    levels, out_shape = conv_tree_wiring(leaves, tuple(x.shape[-3:]), kernel_size=kernel_size, padding=padding)
    weights = list(weights)
    if len(weights) != len(levels):
        raise ValueError(f"weights must hold one array per tree level ({len(levels)}), got {len(weights)}")
    lead = x.shape[:-3]
    h = _pad(x, padding, xp=xp)
    h = xp.reshape(h, (*lead, -1))
    for li, ((ia, ib), w) in enumerate(zip(levels, weights), start=1):
        rows = leaves.shape[0] * 2 ** (len(levels) - li)
        if tuple(w.shape) != (rows, NUM_GATES):
            raise ValueError(f"weights[{li - 1}] must have shape ({rows}, {NUM_GATES}), got {tuple(w.shape)}")
        h = logic_layer(h, ia, ib, w, mode=mode, grad_factor=grad_factor)
    return xp.reshape(h, (*lead, *out_shape))


@dataclass(frozen=True)
class OrPoolOp(Op):
    size: int = 2
    name: ClassVar[str] = "logic.or_pool2d"

    def _windows(self, x: Any, *, xp: Any) -> Any:
        *lead, H, W = x.shape
        s = self.size
        Ho, Wo = H // s, W // s
        v = xp.reshape(x[..., : Ho * s, : Wo * s], (*lead, Ho, s, Wo, s))
        n = len(lead)
        v = xp.permute_dims(v, (*range(n), n, n + 2, n + 1, n + 3))
        return xp.reshape(v, (*lead, Ho, Wo, s * s))

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return xp.max(self._windows(x, xp=xp), axis=-1), (x,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (x,) = residuals
        v = self._windows(x, xp=xp)
        s = self.size
        *lead, H, W = x.shape
        Ho, Wo = H // s, W // s
        cols = xp.arange(s * s, device=device(x))
        onehot = xp.astype(xp.argmax(v, axis=-1, keepdims=True) == cols, x.dtype)
        g = onehot * cotangent[..., None]
        n = len(lead)
        g = xp.reshape(g, (*lead, Ho, Wo, s, s))
        g = xp.reshape(xp.permute_dims(g, (*range(n), n, n + 2, n + 1, n + 3)), (*lead, Ho * s, Wo * s))
        if Wo * s < W:
            g = xp.concat([g, xp.zeros((*lead, Ho * s, W - Wo * s), dtype=g.dtype, device=device(g))], axis=-1)
        if Ho * s < H:
            g = xp.concat([g, xp.zeros((*lead, H - Ho * s, W), dtype=g.dtype, device=device(g))], axis=-2)
        return (g,)


@op_function
def or_pool2d(x: Any, /, *, size: int = 2) -> Bound:
    r"""OR pooling over ``size × size`` windows, relaxed as the maximum (Petersen et al., NeurIPS 2024).

    .. math::

        y_{c,i,j} = \max_{0 \le u, v < s} x_{c,\, s i + u,\, s j + v},

    which on binary inputs is the OR of the window. Windows do not overlap; trailing
    rows or columns that do not fill a window are dropped (as ``max_pool2d``). VJP: the
    cotangent goes to the first maximiser of each window.

    Parameters
    ----------
    x : array, shape ``(..., H, W)`` (``H, W ≥ size``), float32 or float64
    size : int ≥ 1

    Returns
    -------
    array, shape ``(..., H // size, W // size)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import or_pool2d
    >>> or_pool2d(np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    array([[1., 0.]])
    """
    x, xp, out_dtype = check_scores(x, name="x", min_ndim=2)
    size = check_int(size, name="size", low=1)
    if x.shape[-1] < size or x.shape[-2] < size:
        raise ValueError(f"x's last two dimensions {tuple(x.shape[-2:])} must be at least size={size}")
    return Bound(OrPoolOp(size), (x,), out_dtype)
