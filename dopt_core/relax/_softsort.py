r"""Soft sort and soft rank by projection onto the permutahedron (Blondel et al., ICML 2020).

With :math:`\rho = (n, n-1, \dots, 1)` and the permutahedron
:math:`\mathcal P(w) = \operatorname{conv}\{w_\pi\}`, the regularised projections are

.. math::

    P_Q(z, w) = \operatorname*{argmin}_{\mu \in \mathcal P(w)} \tfrac12 \|\mu - z\|^2
              = z - v_Q(z_\sigma, w_{\downarrow})_{\sigma^{-1}}, \qquad
    P_E(z, w) = \operatorname*{argmin}_{\mu \in \mathcal P(w)} \operatorname{KL}(\mu, e^{z})
              = e^{\,z - v_E(z_\sigma, \log w_{\downarrow})_{\sigma^{-1}}},

where :math:`\sigma` sorts :math:`z` in descending order, :math:`w_\downarrow` is
:math:`w` sorted descending, and :math:`v` solves an isotonic regression with
non-increasing constraints,

.. math::

    v_Q(y, w) = \operatorname*{argmin}_{v_1 \ge \dots \ge v_n} \tfrac12\|v - (y - w)\|^2, \qquad
    v_E(y, w) = \operatorname*{argmin}_{v_1 \ge \dots \ge v_n}
                \langle e^{y - v}, 1\rangle + \langle e^{w}, v\rangle ,

solved exactly by pool-adjacent-violators (PAV) in O(n): on each pooled block
:math:`B`, :math:`v_B` is the mean of :math:`y - w` (L2) or
:math:`\operatorname{LSE}(y_B) - \operatorname{LSE}(w_B)` (KL). The Jacobian of
:math:`v` is block-diagonal — :math:`\frac1{|B|}\mathbf 1\mathbf 1^\top` (L2),
:math:`\mathbf 1\,\operatorname{softmax}(\cdot_B)^\top` (KL) — so the VJPs are block sums,
computed on the device with cumulative sums. The forward PAV runs on the host
(:func:`dopt_core.backend.host_call`; SciPy's ``isotonic_regression`` for L2, on
chunks of rows chained with separating offsets so that a whole batch costs a few
calls; a pure-Python PAV for KL, O(n) per row but slow for long rows), everything else
on the arrays' device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_scores
from .._lib._compat import device, index_dtype
from ..backend import host_call
from ..op import Bound, Op, op_function
from ._common import check_choice, check_positive

__all__ = ["isotonic_kl", "isotonic_l2", "soft_rank", "soft_sort"]

REGULARIZATIONS = ("l2", "kl")


# ---------------------------------------------------------------------------------
# host PAV
# ---------------------------------------------------------------------------------
def _blocks_l2(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.optimize import isotonic_regression

    res = isotonic_regression(y, increasing=False)
    return np.asarray(res.x), np.asarray(res.blocks)


def _blocks_kl(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PAV for v_E: the solution and the blocks (start indices, then n).

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
    blocks = np.asarray([*starts, len(yl)])
    return np.repeat(np.asarray(val), np.diff(blocks)), blocks


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


def _softmax_in_blocks(a: np.ndarray, blocks: np.ndarray) -> np.ndarray:
    """Softmax of ``a`` within each block ``[blocks[j], blocks[j+1])`` (vectorised)."""
    starts, sizes = blocks[:-1], np.diff(blocks)
    z = a - np.repeat(np.maximum.reduceat(a, starts), sizes)
    ez = np.exp(z)
    return ez / np.repeat(np.add.reduceat(ez, starts), sizes)


_ROWS_PER_CALL = 64


def _pav_l2_rows(y: np.ndarray) -> np.ndarray:
    """L2 PAV of every row of the 2-D ``y`` with few SciPy calls: ``(rows, 4, n)``.

    Rows are chained into one sequence with a decreasing offset per row, larger than
    the spread of the values, so that no block can straddle two rows (the constraint
    between rows is slack) — one ``isotonic_regression`` call per chunk of rows. The
    offsets cost precision: absolute error about ``64 · spread of the chunk · eps``
    (float64 on the host), ~1e-12 relative to the batch's spread.
    """
    from scipy.optimize import isotonic_regression

    rows, n = y.shape
    out = np.empty((rows, 4, n))
    for lo in range(0, rows, _ROWS_PER_CALL):
        chunk = y[lo : lo + _ROWS_PER_CALL]
        k = chunk.shape[0]
        spread = float(chunk.max() - chunk.min()) if chunk.size else 0.0
        big = 2.0 * spread + 1.0
        shift = (np.arange(k) * big)[:, None]
        res = isotonic_regression((chunk - shift).ravel(), increasing=False)
        blocks = np.asarray(res.blocks)
        sizes = np.diff(blocks)
        start = np.repeat(blocks[:-1], sizes)
        row = np.arange(k * n) // n
        out[lo : lo + k, 0] = np.asarray(res.x).reshape(k, n) + shift
        out[lo : lo + k, 1] = (start - row * n).reshape(k, n)
        out[lo : lo + k, 2] = (start + np.repeat(sizes, sizes) - row * n).reshape(k, n)
        out[lo : lo + k, 3] = (1.0 / np.repeat(sizes, sizes)).reshape(k, n)
    return out


def _pav_host(y: np.ndarray, w: np.ndarray, *, reg: str, aux_of: str) -> np.ndarray:
    """Row-wise PAV: ``(..., 4, n)`` = solution v, block start, block end, VJP weights.

    The weights are ``1/|B|`` (L2) or the in-block softmax of ``y`` (``aux_of="y"``) or of
    ``w`` (``aux_of="w"``) for KL.
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.broadcast_to(np.asarray(w, dtype=np.float64), y.shape)
    n = y.shape[-1]
    if reg == "l2":
        return _pav_l2_rows((y - w).reshape(-1, n)).reshape(*y.shape[:-1], 4, n)
    out = np.empty((*y.shape[:-1], 4, n))
    for idx in np.ndindex(*y.shape[:-1]):
        v, blocks = _blocks_kl(y[idx], w[idx])
        sizes = np.diff(blocks)
        start = np.repeat(blocks[:-1], sizes)
        out[idx][0] = v
        out[idx][1] = start
        out[idx][2] = start + np.repeat(sizes, sizes)
        out[idx][3] = _softmax_in_blocks(y[idx] if aux_of == "y" else w[idx], blocks)
    return out


# ---------------------------------------------------------------------------------
# device-side pieces
# ---------------------------------------------------------------------------------
def _rho(like: Any, *, xp: Any) -> Any:
    n = like.shape[-1]
    return xp.arange(n, 0, -1, dtype=like.dtype, device=device(like))


def _block_sum(u: Any, start: Any, end: Any, *, xp: Any) -> Any:
    """``out_j = Σ_{i ∈ block(j)} u_i`` with blocks ``[start_j, end_j)`` (cumulative sums)."""
    c = xp.cumulative_sum(u, axis=-1, include_initial=True)
    return xp.take_along_axis(c, end, axis=-1) - xp.take_along_axis(c, start, axis=-1)


def _run_pav(y: Any, w: Any, *, reg: str, aux_of: str, xp: Any) -> tuple[Any, Any, Any, Any]:
    n = y.shape[-1]

    def func(y_np: np.ndarray, w_np: np.ndarray) -> np.ndarray:
        return _pav_host(y_np, w_np, reg=reg, aux_of=aux_of)

    y, w = xp.broadcast_arrays(y, w)
    out = host_call(func, y, w, shape=(*y.shape[:-1], 4, n), dtype=y.dtype)
    v = out[..., 0, :]
    start = xp.astype(out[..., 1, :], index_dtype(xp))
    end = xp.astype(out[..., 2, :], index_dtype(xp))
    return v, start, end, out[..., 3, :]


@dataclass(frozen=True)
class SoftRankOp(Op):
    strength: float
    reg: str
    descending: bool
    name: ClassVar[str] = "soft_rank"
    host: ClassVar[bool] = True

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        theta = (-x if self.descending else x) / self.strength
        order = xp.argsort(theta, axis=-1, descending=True, stable=True)
        inv = xp.argsort(order, axis=-1, stable=True)
        s = xp.take_along_axis(theta, order, axis=-1)
        rho = _rho(x, xp=xp)
        if self.reg == "l2":
            v, start, end, aux = _run_pav(s, rho, reg="l2", aux_of="y", xp=xp)
            r_sorted = s - v
        else:
            v, start, end, aux = _run_pav(s, xp.log(rho), reg="kl", aux_of="y", xp=xp)
            r_sorted = xp.exp(s - v)
        return xp.take_along_axis(r_sorted, inv, axis=-1), (order, inv, start, end, aux, r_sorted)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        order, inv, start, end, aux, r_sorted = residuals
        gs = xp.take_along_axis(cotangent, order, axis=-1)
        if self.reg == "kl":
            gs = gs * r_sorted  # r = exp(s - v(s))
        gs = gs - aux * _block_sum(gs, start, end, xp=xp)
        g = xp.take_along_axis(gs, inv, axis=-1) / self.strength
        return (-g if self.descending else g,)


@dataclass(frozen=True)
class SoftSortOp(Op):
    strength: float
    reg: str
    descending: bool
    name: ClassVar[str] = "soft_sort"
    host: ClassVar[bool] = True

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        u = -x if self.descending else x
        order = xp.argsort(u, axis=-1, stable=True)  # ascending u = descending -u
        inv = xp.argsort(order, axis=-1, stable=True)
        s = -xp.take_along_axis(u, order, axis=-1)
        z = _rho(x, xp=xp) / self.strength
        if self.reg == "l2":
            v, start, end, aux = _run_pav(z, s, reg="l2", aux_of="w", xp=xp)
        else:
            v, start, end, aux = _run_pav(z, s, reg="kl", aux_of="w", xp=xp)
        y = v - z
        return (-y if self.descending else y), (inv, start, end, aux)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        inv, start, end, aux = residuals
        g = -cotangent if self.descending else cotangent
        gu = aux * _block_sum(g, start, end, xp=xp)
        gu = xp.take_along_axis(gu, inv, axis=-1)
        return (-gu if self.descending else gu,)


def _validate(
    x: Any, strength: Any, reg: Any, descending: Any, check_finite: bool
) -> tuple[Any, Any, float, str, bool]:
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    strength = check_positive(strength, name="regularization_strength")
    reg = check_choice(reg, name="regularization", choices=REGULARIZATIONS)
    descending = check_flag(descending, name="descending")
    return x, out_dtype, strength, reg, descending


@op_function
def soft_sort(
    x: Any,
    /,
    *,
    regularization_strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Soft sort along the last axis (Blondel et al. 2020), ascending by default.

    With :math:`\varepsilon` = ``regularization_strength``,

    .. math::

        \text{L2:}\ \ s_\varepsilon(x) = -P_Q(\rho/\varepsilon, -x), \qquad
        \text{KL:}\ \ s_\varepsilon(x) = -\log P_E(\rho/\varepsilon, e^{-x})

    (see the module docstring), the conventions of torchsort (weights
    :math:`(n, \dots, 1)/\varepsilon`): the numbers equal ``torchsort.soft_sort``. As
    :math:`\varepsilon \to 0` the output is the exact ascending sort; as
    :math:`\varepsilon \to \infty`, L2 tends to the mean of ``x`` in every slot and KL to
    :math:`-\log \operatorname{mean}(e^{-x})`. L2 is piecewise linear in ``x``. Any batch
    shape; ``descending=True`` returns ``-soft_sort(-x)``.

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_sort
    >>> soft_sort(np.array([3.0, 1.0, 2.0]), regularization_strength=0.1)
    array([1., 2., 3.])
    >>> soft_sort(np.array([3.0, 1.0, 2.0]), regularization_strength=10.0)
    array([1.9, 2. , 2.1])

    References
    ----------
    Blondel, Teboul, Berthet, Djolonga, "Fast differentiable sorting and ranking",
    ICML 2020, arXiv:2002.08871.
    """
    x, out_dtype, eps, reg, desc = _validate(
        x, regularization_strength, regularization, descending, check_finite
    )
    return Bound(SoftSortOp(eps, reg, desc), (x,), out_dtype)


@op_function
def soft_rank(
    x: Any,
    /,
    *,
    regularization_strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Soft ranks along the last axis (Blondel et al. 2020), 1-based, ascending by default.

    .. math::

        \text{L2:}\ \ r_\varepsilon(x) = P_Q(x/\varepsilon, \rho), \qquad
        \text{KL:}\ \ r_\varepsilon(x) = P_E(x/\varepsilon, \rho)

    with :math:`\rho = (n, \dots, 1)`: the largest entry gets rank ``n`` (``descending=True``:
    rank 1), as :func:`dopt_core.solvers.rank` and ``torchsort.soft_rank``. As
    :math:`\varepsilon \to 0` the ranks are exact; as :math:`\varepsilon \to \infty` every
    rank tends to :math:`(n+1)/2`. Ranks always lie in the permutahedron (they sum to
    :math:`n(n+1)/2`).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_rank
    >>> soft_rank(np.array([[0.3, -1.0, 2.0]]), regularization_strength=0.01)
    array([[2., 1., 3.]])
    >>> np.round(soft_rank(np.array([0.3, -1.0, 2.0]), regularization_strength=1e4), 3)
    array([2., 2., 2.])

    References
    ----------
    Blondel, Teboul, Berthet, Djolonga, "Fast differentiable sorting and ranking",
    ICML 2020, arXiv:2002.08871.
    """
    x, out_dtype, eps, reg, desc = _validate(
        x, regularization_strength, regularization, descending, check_finite
    )
    return Bound(SoftRankOp(eps, reg, desc), (x,), out_dtype)
