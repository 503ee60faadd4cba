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
:math:`\mathbf 1\,\operatorname{softmax}(\cdot_B)^\top` (KL) — so the VJPs are block sums:
a cumulative sum and two gathers (plus one into sorted order for soft rank), array-API
code on the arrays' device. The JVPs (forward mode) are the transposed block sums, the
same cumulative sum and gathers; soft sort's gathers ``w ⊙ u`` and the block bounds into
sorted order through the sort order, which the host returns for both ops. The forward runs on the host in one
:func:`dopt_core.backend.host_call` (one transfer each way): a stable sort, PAV (SciPy's
``isotonic_regression`` for L2, on chunks of rows chained with separating offsets so
that a whole batch costs a few calls; for KL a PAV vectorised over the batch — slack
split points, runs of violations pooled at once, a Python loop only on the few mixed
pieces — with the blocks of the sequential one) and its bookkeeping (written directly
where every block is a singleton), returned as one array holding the output and the
VJP's residuals — all of it pure NumPy in :mod:`dopt_core.relax._pav_host`; this module
holds the Ops, their device-side VJPs and the public functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_choice, check_exact_integers, check_flag, check_positive, check_scores
from .._lib._compat import device, index_dtype
from ..backend import backend_for, host_call, take_nonnegative
from ..op import Bound, Op, op_function
from ._pav_host import (
    RANK_ROWS,
    SORT_ROWS,
    flat_on_host,
    forward_host,
    isotonic_kl,
    isotonic_l2,
)

__all__ = ["isotonic_kl", "isotonic_l2", "soft_rank", "soft_sort"]

REGULARIZATIONS = ("l2", "kl")
_MAX_N_FLOAT32 = 2**24  # the host packs sort positions into float32: exact up to 2**24


# ---------------------------------------------------------------------------------
# device-side pieces
# ---------------------------------------------------------------------------------
def _host_forward(op: Any, x: Any, *, rank: bool, xp: Any) -> tuple[Any, Any, Any]:
    """Run :func:`dopt_core.relax._pav_host.forward_host`; return ``(y, flat indices
    (4, ..., n), weights)``: the index rows are the sort order, block last, block first
    and the block's first in the second half of the VJP's gather source (see
    :data:`dopt_core.relax._pav_host.RANK_ROWS`).

    Indices are flat (``row · n`` added, on the host where exact, else here): the VJPs
    gather with 1-D takes, which are cheaper than ``take_along_axis`` or integer-array
    indexing. Where the host sees the whole batch it packs the rows kind by kind
    (``(K, ..., n)``: each row contiguous, so that the index cast is one dense pass).
    """
    *batch, n = x.shape
    rows_k = RANK_ROWS if rank else SORT_ROWS
    size = math.prod(batch) * n
    # flat positions from the host where exact and where the host sees the whole batch
    # (not under a batching transform that splits the callback: per-row positions there)
    flat = (
        flat_on_host(2 * size, 4 if x.dtype == xp.float32 else 8)
        and backend_for(x).host_call_sees_whole_batch
    )

    def func(x_np: np.ndarray) -> np.ndarray:
        return forward_host(
            x_np,
            rank=rank,
            reg=op.reg,
            eps=op.strength,
            descending=op.descending,
            flat_positions=flat,
        )

    itype = index_dtype(xp)
    if flat:
        packed = host_call(func, x, shape=(rows_k, *batch, n), dtype=x.dtype)
        idx = xp.astype(packed[1 : rows_k - 1, ...], itype)
    else:
        packed = host_call(func, x, shape=(*batch, rows_k, n), dtype=x.dtype)
        nd = len(batch)
        packed = xp.permute_dims(packed, (nd, *range(nd), nd + 1))  # (K, ..., n)
        idx = xp.astype(packed[1 : rows_k - 1, ...], itype)
        dev = device(x)
        ones = (1,) * nd
        base = xp.reshape(xp.arange(0, size, n, dtype=itype, device=dev), (1, *batch, 1))
        second = xp.reshape(xp.asarray([0, 0, 0, size], dtype=itype, device=dev), (4, *ones, 1))
        idx = idx + (base + second)
    # a fresh array: torch forbids in-place edits of a custom Function's view outputs
    y = xp.asarray(packed[0, ...], copy=True)
    return y, idx, packed[rows_k - 1, ...]


def _gather(a: Any, idx: Any, *, xp: Any) -> Any:
    """``a`` flattened, gathered at the flat positions ``idx`` (any shape): one 1-D take."""
    got = take_nonnegative(xp.reshape(a, (-1,)), xp.reshape(idx, (-1,)), 0)
    return xp.reshape(got, tuple(idx.shape))


def _block_sums(u: Any, second: Any, ends: Any, *, xp: Any) -> Any:
    """``Σ_{i ∈ block} u_i``: ``u`` in sorted order, ``ends`` (3, ...) the flat sorted
    positions of each entry's block's last and first entry, then the position of the
    block's first entry in ``second`` (``u`` itself, or ``u``'s values in another order),
    offset by ``u.size``: a cumulative sum and one gather from ``[c, second]``.

    Written ``c[last] - c[first] + u[first]``: exact for a singleton block (``u``
    itself), which ``c[last] - (c - u)[first]`` is not — soft rank's VJP multiplies the
    rounding by 1/ε, and as ε → 0 every block is a singleton."""
    c = xp.cumulative_sum(u, axis=-1)
    t = _gather(xp.concat([xp.reshape(c, (-1,)), xp.reshape(second, (-1,))]), ends, xp=xp)
    return (t[0, ...] - t[1, ...]) + t[2, ...]


@dataclass(frozen=True)
class SoftRankOp(Op):
    strength: float
    reg: str
    descending: bool
    name: ClassVar[str] = "soft_rank"
    host: ClassVar[bool] = True
    # transposed, the JVP's cumulative block sums mix 1/ε-scaled cotangents across blocks
    # (residues ~1e-16/ε off the ties as ε → 0), while the VJP gives the exact zeros
    jvp_transposes_exactly: ClassVar[bool] = False

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        r, idx, weights = _host_forward(self, x, rank=True, xp=xp)
        return r, ((idx, weights, r) if self.reg == "kl" else (idx, weights))

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        # ±1/ε · (h - weight_B · Σ_B h) with h = g (L2, weight 1/|B|) or g·r (KL, weight
        # softmax_B(s)); the block sums run over the sorted order; 1/ε last, so that a
        # singleton block gives an exact 0 even where h/ε overflows
        idx, weights, *ranks = residuals  # KL also keeps the ranks r
        h = cotangent * ranks[0] if self.reg == "kl" else cotangent
        hs = _gather(h, idx[0, ...], xp=xp)  # h in sorted order
        scale = (-1.0 if self.descending else 1.0) / self.strength
        return ((h - weights * _block_sums(hs, h, idx[1:4, ...], xp=xp)) * scale,)

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the VJP is Jᵀ = ±1/ε (I - diag(w) M) diag(r) (r = 1 for L2), M the symmetric
        # same-block indicator (the PAV Jacobian's structure), so J u = ±1/ε r ⊙ (u - M(w ⊙ u))
        (u,) = tangents
        if u is None:
            return None
        idx, weights, *ranks = residuals
        wu = weights * u
        vs = _gather(wu, idx[0, ...], xp=xp)  # w ⊙ u in sorted order
        scale = (-1.0 if self.descending else 1.0) / self.strength
        t = (u - _block_sums(vs, wu, idx[1:4, ...], xp=xp)) * scale
        return t * ranks[0] if self.reg == "kl" else t


@dataclass(frozen=True)
class SoftSortOp(Op):
    strength: float
    reg: str
    descending: bool
    name: ClassVar[str] = "soft_sort"
    host: ClassVar[bool] = True

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        y, idx, weights = _host_forward(self, x, rank=False, xp=xp)
        return y, (idx, weights)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        # the output is in sorted order: entry i gets its block's cotangent sum, weighted
        idx, weights = residuals  # idx: sort order, block last, block first, block first
        return (weights * _block_sums(cotangent, cotangent, idx[1:4, ...], xp=xp),)

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the VJP is Jᵀ g = w ⊙ M g (M: same-block indicator from sorted slots to entries),
        # so J u = Mᵀ(w ⊙ u): in sorted slot j, the sum of w ⊙ u over the entries of j's
        # block; the sort order gathers w ⊙ u and the block bounds into sorted order
        (u,) = tangents
        if u is None:
            return None
        idx, weights = residuals
        order = xp.reshape(idx[0, ...], (-1,))  # flat position of the entry in each sorted slot
        vs = _gather(weights * u, order, xp=xp)
        # block last/first (twice) of each sorted slot
        ends = take_nonnegative(xp.reshape(idx[1:4, ...], (3, -1)), order, 1)
        return xp.reshape(_block_sums(xp.reshape(vs, tuple(u.shape)), vs, ends, xp=xp), tuple(u.shape))


def _validate(
    x: Any, strength: Any, reg: Any, descending: Any, check_finite: bool, *, rank: bool
) -> tuple[Any, Any, float, str, bool]:
    x, xp, out_dtype = check_scores(x, name="x", check_finite=check_finite, promote_integers=True)
    dtype = x.dtype if out_dtype is None else out_dtype
    if rank:  # ranks up to n in the output dtype (float16: 2048, bfloat16: 256)
        check_exact_integers(x.shape[-1], dtype, name="x", what="ranks", xp=xp)
    if x.dtype == xp.float32 and x.shape[-1] > _MAX_N_FLOAT32:
        # the host packs sort positions into the float32 result: exact up to 2**24
        raise ValueError(
            f"x: float32 rows longer than 2**24 are not supported (got {x.shape[-1]}); use float64"
        )
    strength = check_positive(strength, name="regularization_strength")
    tiny = float(xp.finfo(x.dtype).smallest_normal)
    if strength < tiny:
        # the VJP scales by 1/ε in x's dtype; at ε = tiny the result is already exact
        raise ValueError(
            f"regularization_strength must be >= {tiny:.6g} (the smallest normal {x.dtype}: "
            f"the gradient scales by 1/regularization_strength), got {strength!r}"
        )
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
    :math:`\varepsilon \to 0` the output is the exact ascending sort (reached in floating
    point too, batched or not: the outputs are formed from in-block differences, never
    as :math:`x/\varepsilon - \rho/\varepsilon`); ``regularization_strength`` below the
    smallest normal number of ``x``'s dtype (1.2e-38 in float32) raises ``ValueError``. As
    :math:`\varepsilon \to \infty`, L2 tends to the mean of ``x`` in every slot and KL to
    :math:`-\log \operatorname{mean}(e^{-x})`. L2 is piecewise linear in ``x``. Any batch
    shape; ``descending=True`` returns ``-soft_sort(-x)``.

    Parameters
    ----------
    x : array, shape ``(..., n)``
        Values; leading axes are batch axes. Integer arrays are promoted to the
        framework's default float dtype (NumPy float64, ``torch.get_default_dtype()``,
        JAX float32 or float64 per ``jax_enable_x64``), as torchsort does; bool raises.
    regularization_strength : float > 0
        ε: small values approach the exact operation, large ones flatten it.
    regularization : {"l2", "kl"}
        Quadratic (Euclidean projection) or entropic regularisation.
    descending : bool
        Reverse the order.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

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
        x, regularization_strength, regularization, descending, check_finite, rank=False
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
    :math:`\varepsilon \to 0` the ranks are exact (in floating point too, for every
    ``ε`` down to the smallest normal number of ``x``'s dtype; smaller raises
    ``ValueError``, as does ``n`` beyond the integers the output dtype holds exactly:
    2048 in float16, 256 in bfloat16); as :math:`\varepsilon \to \infty` every
    rank tends to :math:`(n+1)/2`. Ranks always lie in the permutahedron (they sum to
    :math:`n(n+1)/2`).

    Parameters
    ----------
    x : array, shape ``(..., n)``
        Values; leading axes are batch axes. Integer arrays are promoted to the
        framework's default float dtype (NumPy float64, ``torch.get_default_dtype()``,
        JAX float32 or float64 per ``jax_enable_x64``), as torchsort does; bool raises.
    regularization_strength : float > 0
        ε: small values approach the exact operation, large ones flatten it.
    regularization : {"l2", "kl"}
        Quadratic (Euclidean projection) or entropic regularisation.
    descending : bool
        Reverse the order.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

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
        x, regularization_strength, regularization, descending, check_finite, rank=True
    )
    return Bound(SoftRankOp(eps, reg, desc), (x,), out_dtype)
