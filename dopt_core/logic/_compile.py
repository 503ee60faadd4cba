"""The discrete logic network, bit-packed: 64 samples per uint64 word, one bitwise
operation per gate and a bit-sliced counter for GroupSum."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._lib._checks import check_int
from ..backend import backend_for
from ._gates import NUM_GATES

__all__ = ["CompiledLogicNet", "compile_logic_net", "gate_layers_hard", "pack_bits"]

_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def _gate(g: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # the 16 gates as bitwise word operations (difflogic's order, see GATE_NAMES)
    if g == 0:
        return np.zeros_like(a)
    if g == 1:
        return a & b
    if g == 2:
        return a & ~b
    if g == 3:
        return a.copy()
    if g == 4:
        return ~a & b
    if g == 5:
        return b.copy()
    if g == 6:
        return a ^ b
    if g == 7:
        return a | b
    if g == 8:
        return ~(a | b)
    if g == 9:
        return ~(a ^ b)
    if g == 10:
        return ~b
    if g == 11:
        return a | ~b
    if g == 12:
        return ~a
    if g == 13:
        return ~a | b
    if g == 14:
        return ~(a & b)
    return np.full_like(a, _ONES)


_C_EXPR = {
    0: "0", 1: "{a} & {b}", 2: "{a} & ~{b}", 3: "{a}", 4: "~{a} & {b}", 5: "{b}",
    6: "{a} ^ {b}", 7: "{a} | {b}", 8: "~({a} | {b})", 9: "~({a} ^ {b})", 10: "~{b}",
    11: "{a} | ~{b}", 12: "~{a}", 13: "~{a} | {b}", 14: "~({a} & {b})", 15: "~(uint64_t)0",
}


def gate_layers_hard(W: Any) -> np.ndarray:
    """The arg-max gate of every row of ``W`` (``(n, 16)`` logits) as int64 gate ids.

    Parameters
    ----------
    W : array, shape ``(n, 16)`` (any backend)

    Returns
    -------
    numpy.ndarray, shape ``(n,)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import gate_layers_hard
    >>> gate_layers_hard(np.eye(16)[[7, 1]]).tolist()
    [7, 1]
    """
    a = backend_for(W, name="W").to_numpy(W)
    if a.ndim != 2 or a.shape[1] != NUM_GATES:
        raise ValueError(f"W must have shape (n, {NUM_GATES}), got {a.shape}")
    return np.argmax(a, axis=-1).astype(np.int64)


def pack_bits(X: Any) -> tuple[np.ndarray, int]:
    """Pack binary samples ``X`` ``(N, d)`` into words ``(d, ceil(N/64))``, sample ``s``
    in bit ``s % 64`` of word ``s // 64``; returns ``(words, N)``.

    Parameters
    ----------
    X : array-like, shape ``(N, d)``, entries in {0, 1} (bool, integer or float)

    Returns
    -------
    words : numpy.ndarray, uint64
    N : int

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import pack_bits
    >>> w, n = pack_bits(np.array([[1], [0], [1]]))
    >>> int(w[0, 0]), n
    (5, 3)
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (samples, features), got {X.shape}")
    if X.dtype != np.bool_:
        if not (np.issubdtype(X.dtype, np.number)) or not np.all((X == 0) | (X == 1)):
            raise ValueError("X must be binary: every entry 0 or 1 (or bool); binarise it first (dopt_core.logic.thermometer)")
        X = X.astype(np.bool_)
    N, d = X.shape
    n_words = max((N + 63) // 64, 1)
    buf = np.zeros((d, n_words * 64), dtype=np.bool_)
    buf[:, :N] = X.T
    packed = np.packbits(buf, axis=1, bitorder="little")  # (d, 8·n_words) bytes
    words = packed.view("<u8")
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        words = words.astype(np.uint64)
    return np.ascontiguousarray(words), N


def _unpack(words: np.ndarray, N: int) -> np.ndarray:
    w = np.ascontiguousarray(words.astype("<u8", copy=False))
    bits = np.unpackbits(w.view(np.uint8), axis=-1, bitorder="little")
    return bits[..., :N]


def _count(bits: np.ndarray) -> np.ndarray:
    """Bit-sliced vertical counter: ``bits`` ``(k, m, words)`` → planes ``(L, k, words)``
    of the binary count over the ``m`` axis, by a tree of ripple-carry adders."""
    planes = bits[None]  # (L=1, k, m, words)
    while planes.shape[2] > 1:
        if planes.shape[2] % 2:
            planes = np.concatenate([planes, np.zeros_like(planes[:, :, :1])], axis=2)
        A, B = planes[:, :, 0::2], planes[:, :, 1::2]
        out = []
        carry = np.zeros_like(A[0])
        for i in range(planes.shape[0]):
            x = A[i] ^ B[i]
            out.append(x ^ carry)
            carry = (A[i] & B[i]) | (carry & x)
        out.append(carry)
        planes = np.stack(out)
    return planes[:, :, 0]


class CompiledLogicNet:
    """A hard logic network evaluated bit-parallel on the CPU (see :func:`compile_logic_net`)."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]],
                 in_dim: int, out_perm: np.ndarray, k: int | None, source: list) -> None:
        self._layers = layers
        self.in_dim = in_dim
        self._out_perm = out_perm
        self.k = k
        self._source = source
        self.num_gates = int(sum(len(a) for a, _, _ in layers))

    def _run(self, words: np.ndarray) -> np.ndarray:
        h = words
        for ia, ib, groups in self._layers:
            out = np.empty((len(ia), h.shape[1]), dtype=np.uint64)
            for g, s, e in groups:
                out[s:e] = _gate(g, h[ia[s:e]], h[ib[s:e]])
            h = out
        return h[self._out_perm]

    def output_bits(self, X: Any) -> np.ndarray:
        """The last layer's bits, ``(N, n_out)`` bool (no GroupSum)."""
        words, N = pack_bits(X)
        self._check_width(words)
        return _unpack(self._run(words), N).T.astype(bool)

    def _check_width(self, words: np.ndarray) -> None:
        if words.shape[0] != self.in_dim:
            raise ValueError(f"X must have {self.in_dim} features (columns), got {words.shape[0]}")

    def __call__(self, X: Any) -> np.ndarray:
        """Class counts ``(N, k)`` int64 (the hard GroupSum times τ), or the output bits
        when the net was compiled without ``k``."""
        if self.k is None:
            return self.output_bits(X)
        words, N = pack_bits(X)
        self._check_width(words)
        h = self._run(words)
        planes = _count(h.reshape(self.k, -1, h.shape[1]))  # (L, k, words)
        bits = _unpack(planes, N).astype(np.int64)  # (L, k, N)
        weights = (1 << np.arange(planes.shape[0], dtype=np.int64))[:, None, None]
        return np.sum(bits * weights, axis=0).T

    def c_source(self, name: str = "logic_net") -> str:
        """The same network as C source (a string; never compiled by dopt).

        ``void name(const uint64_t *in, uint64_t *out, size_t n_words)``: ``in`` holds
        ``in_dim × n_words`` words (feature-major, as :func:`pack_bits`), ``out`` the
        ``n_out × n_words`` output words, in order.
        """
        if not isinstance(name, str):
            raise TypeError(f"name must be a string (a C identifier), got {type(name).__name__}")
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is None:
            raise ValueError(f"name must be a C identifier ([A-Za-z_][A-Za-z0-9_]*), got {name!r}")
        n_out = len(self._out_perm)
        lines = [
            "#include <stddef.h>", "#include <stdint.h>", "",
            f"/* {self.num_gates} gates; generated by dopt_core.logic */",
            f"void {name}(const uint64_t *in, uint64_t *out, size_t n_words) {{",
            "  for (size_t w = 0; w < n_words; ++w) {",
        ]
        lines += [f"    uint64_t x{i} = in[{i} * n_words + w];" for i in range(self.in_dim)]
        lines += self._source
        lines += [f"    out[{j} * n_words + w] = {v};" for j, v in enumerate(self._final_names())]
        lines += ["  }", "}", ""]
        assert len(self._final_names()) == n_out
        return "\n".join(lines)

    def _final_names(self) -> list[str]:
        # the C variables carry the neurons' original indices (the NumPy evaluator's
        # gate-sorted order is undone by ``_out_perm``, which the C code never needs)
        last = len(self._layers)
        return [f"v{last}_{j}" for j in range(len(self._out_perm))]


def compile_logic_net(
    layers: Sequence[tuple[Any, Any, Any]], *, in_dim: int, k: int | None = None
) -> CompiledLogicNet:
    r"""Compile a hard logic network into a bit-packed NumPy evaluator.

    Each layer is ``(idx_a, idx_b, gates)``: neuron ``j`` outputs gate ``gates[j]``
    (an id in ``[0, 16)``, :data:`GATE_NAMES`) of bits ``idx_a[j]`` and ``idx_b[j]``
    of the previous layer (the input for the first). Samples are packed 64 to a
    ``uint64`` word (:func:`pack_bits`), so each gate is one bitwise operation on 64
    samples; neurons are grouped by gate at compile time. With ``k``, the evaluator
    returns the GroupSum counts :math:`\sum_{j \in \text{group } c} y_j` (the hard
    GroupSum times τ) computed by a bit-sliced adder tree, exactly the hard network's
    (Petersen et al., NeurIPS 2022, Sec. 4: "Efficient inference"; difflogic's
    ``PackBitsTensor`` and ``CompiledLogicNet``). :meth:`CompiledLogicNet.c_source`
    gives the same network as C source text.

    Parameters
    ----------
    layers : sequence of ``(idx_a, idx_b, gates)`` integer arrays of one length each
    in_dim : int ≥ 1
        Number of input bits.
    k : int, optional
        Number of GroupSum groups (must divide the last layer's width).

    Returns
    -------
    CompiledLogicNet
        ``net(X)`` for binary ``X`` ``(N, in_dim)``: counts ``(N, k)`` int64 (or the
        output bits ``(N, n_out)`` without ``k``); ``net.num_gates``; ``net.c_source()``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import compile_logic_net
    >>> net = compile_logic_net([(np.array([0, 0]), np.array([1, 1]), np.array([6, 1]))], in_dim=2, k=1)
    >>> net(np.array([[0, 1], [1, 1], [0, 0]])).ravel().tolist()   # xor + and
    [1, 1, 0]
    """
    in_dim = check_int(in_dim, name="in_dim", low=1)
    width = in_dim
    compiled = []
    source: list[str] = []
    inv_prev = np.arange(width)  # original index -> position in the reordered previous layer
    for li, layer in enumerate(layers, start=1):
        if len(layer) != 3:
            raise ValueError(f"layers[{li - 1}] must be (idx_a, idx_b, gates)")
        ia, ib, gates = (np.asarray(v) for v in layer)
        for nm, v in (("idx_a", ia), ("idx_b", ib), ("gates", gates)):
            if v.ndim != 1 or v.dtype.kind not in "iu":
                raise ValueError(f"layers[{li - 1}] {nm} must be a 1-D integer array, got {v.dtype} {v.shape}")
        if not (ia.shape == ib.shape == gates.shape) or ia.shape[0] == 0:
            raise ValueError(f"layers[{li - 1}]: idx_a, idx_b and gates must have one equal, non-zero length")
        for nm, v in (("idx_a", ia), ("idx_b", ib)):
            if v.min() < 0 or v.max() >= width:
                raise ValueError(f"layers[{li - 1}] {nm} must lie in [0, {width}) (the previous width)")
        if gates.min() < 0 or gates.max() >= NUM_GATES:
            raise ValueError(f"layers[{li - 1}] gates must be gate ids in [0, {NUM_GATES})")
        order = np.argsort(gates, kind="stable")
        g_sorted = gates[order]
        a_new = inv_prev[ia[order]].astype(np.intp)
        b_new = inv_prev[ib[order]].astype(np.intp)
        bounds = np.flatnonzero(np.diff(g_sorted)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(order)]])
        groups = [(int(g_sorted[s]), int(s), int(e)) for s, e in zip(starts, ends)]
        compiled.append((a_new, b_new, groups))
        def ref(i: int, li: int = li) -> str:
            return f"x{i}" if li == 1 else f"v{li - 1}_{i}"

        for src in order:
            expr = _C_EXPR[int(gates[src])].format(a=ref(int(ia[src])), b=ref(int(ib[src])))
            source.append(f"    uint64_t v{li}_{int(src)} = {expr};")
        inv = np.empty(len(order), dtype=np.int64)
        inv[order] = np.arange(len(order))
        inv_prev = inv
        width = len(order)
    if not compiled:
        raise ValueError("layers must hold at least one layer")
    if k is not None:
        k = check_int(k, name="k", low=1)
        if width % k:
            raise ValueError(f"k ({k}) must divide the last layer's width ({width})")
    return CompiledLogicNet(compiled, in_dim, inv_prev.astype(np.intp), k, source)

