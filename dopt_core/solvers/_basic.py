"""Exact oracles over one-hot vectors, k-hot vectors and permutations.

Each solver maximises a linear score, ``y*(θ) = argmax_{y ∈ Y} <θ, y>``, over the
last axis of ``theta`` (leading axes are batch axes), runs on the array's own
device through the array API, and returns ``theta``'s float dtype.

Ties are broken identically on every backend: by a stable sort, so that among equal
scores the lowest index comes first — first to be picked by ``argmax`` and
``top_k``, first (lowest slot) in the ascending order of ``sort``, ``rank`` and
``permutation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import check_exact_integers, check_flag, check_int, check_scores
from .._lib._compat import device
from ..op import Bound, Op, ZeroGradient, op_function

__all__ = ["argmax", "permutation", "rank", "sort", "top_k"]


# ---------------------------------------------------------------------------------
# array-API building blocks
# ---------------------------------------------------------------------------------
def _order(theta: Any, *, descending: bool, xp: Any) -> Any:
    """Stable argsort along the last axis (equal scores keep their index order)."""
    return xp.argsort(theta, axis=-1, descending=descending, stable=True)


def _slots(theta: Any, *, descending: bool, xp: Any) -> Any:
    """0-based slot of each entry in the stable sorted order (inverse permutation)."""
    return xp.argsort(_order(theta, descending=descending, xp=xp), axis=-1, stable=True)


def _indicator(index: Any, n: int, *, like: Any, xp: Any) -> Any:
    """``out[..., i, j] = (index[..., i] == j)`` (or ``out[..., j]`` for 0-d index rows)."""
    cols = xp.arange(n, device=device(like))
    return xp.astype(xp.expand_dims(index, axis=-1) == cols, like.dtype)


# ---------------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------------
class _PiecewiseConstant(ZeroGradient, Op):
    """A solver whose output is locally constant in θ: its a.e. derivative is zero."""


@dataclass(frozen=True)
class ArgmaxOp(_PiecewiseConstant):
    name: ClassVar[str] = "argmax"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return _indicator(xp.argmax(theta, axis=-1), theta.shape[-1], like=theta, xp=xp), ()


@dataclass(frozen=True)
class TopKOp(_PiecewiseConstant):
    k: int
    name: ClassVar[str] = "top_k"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        slots = _slots(theta, descending=True, xp=xp)
        return xp.astype(slots < self.k, theta.dtype), ()


@dataclass(frozen=True)
class RankOp(_PiecewiseConstant):
    name: ClassVar[str] = "rank"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        slots = _slots(theta, descending=False, xp=xp)
        return xp.astype(slots + 1, theta.dtype), ()


@dataclass(frozen=True)
class PermutationOp(_PiecewiseConstant):
    name: ClassVar[str] = "permutation"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        slots = _slots(theta, descending=False, xp=xp)
        return _indicator(slots, theta.shape[-1], like=theta, xp=xp), ()


@dataclass(frozen=True)
class SortOp(Op):
    descending: bool = False
    name: ClassVar[str] = "sort"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        order = _order(theta, descending=self.descending, xp=xp)
        slots = xp.argsort(order, axis=-1, stable=True)
        return xp.take_along_axis(theta, order, axis=-1), (slots,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (slots,) = residuals
        # y[..., j] = θ[..., order[j]]  =>  ∂L/∂θ[..., i] = g[..., slots[i]]
        return (xp.take_along_axis(cotangent, slots, axis=-1),)


# ---------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------
@op_function
def argmax(theta: Any, /, *, check_finite: bool = True) -> Bound:
    r"""One-hot encoding of the best entry along the last axis.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \{e_1, \dots, e_n\}} \langle \theta, y \rangle
        = e_{i^*}, \qquad i^* = \min \operatorname*{argmax}_i \theta_i

    (the lowest index among ties).

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Scores; leading axes are batch axes.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., n)``, ``theta``'s dtype and device
        One-hot rows. The derivative is zero almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.argmax(np.array([[0.5, 2.0, 2.0], [3.0, -1.0, 0.0]]))
    array([[0., 1., 0.],
           [1., 0., 0.]])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    return Bound(ArgmaxOp(), (theta,), out_dtype)


@op_function
def top_k(theta: Any, /, k: int, *, check_finite: bool = True) -> Bound:
    r"""k-hot indicator of the ``k`` largest entries along the last axis.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y \in \{0,1\}^n,\ \mathbf 1^\top y = k}
        \langle \theta, y \rangle

    Among equal scores, lower indices are selected first.

    Parameters
    ----------
    theta : array, shape ``(..., n)``
    k : int, ``1 <= k <= n``
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., n)``: rows with exactly ``k`` ones.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.top_k(np.array([0.1, 3.0, -2.0, 3.0, 1.0]), 3)
    array([0., 1., 0., 1., 1.])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    k = check_int(k, name="k", low=1, high=theta.shape[-1])
    return Bound(TopKOp(k), (theta,), out_dtype)


@op_function
def sort(theta: Any, /, *, descending: bool = False, check_finite: bool = True) -> Bound:
    r"""Sorted values along the last axis (ascending unless ``descending=True``).

    ``sort(θ) = θ P`` with ``P = permutation(θ)`` (ascending). Sorting is piecewise
    linear in θ; its vector-Jacobian product routes each cotangent entry back to
    the input that landed in that slot, ``(J^\top g)_i = g_{\text{slot}(i)}`` — the
    same gradient as ``torch.sort`` and ``jnp.sort`` away from ties (at ties, the
    stable order decides).

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Scores; leading axes are batch axes.
    descending : bool
        Sort in decreasing order.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.sort(np.array([2.0, -1.0, 5.0]), descending=True)
    array([ 5.,  2., -1.])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    return Bound(SortOp(check_flag(descending, name="descending")), (theta,), out_dtype)


@op_function
def rank(theta: Any, /, *, check_finite: bool = True) -> Bound:
    r"""1-based ascending ranks along the last axis.

    The largest score gets rank ``n``: ranks are the maximiser of the linear score over
    the permutations of ``(1, …, n)``,

    .. math::

        r^*(\theta) = \operatorname*{argmax}_{r \in \Pi(1, \dots, n)} \langle \theta, r \rangle .

    Among equal scores the lower index gets the lower rank (stable ascending order).
    The ranks are returned in ``theta``'s dtype, which must hold the integers up to
    ``n`` exactly (``ValueError`` otherwise: n <= 2048 in float16, 256 in bfloat16,
    2**24 in float32).

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Scores; leading axes are batch axes.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.rank(np.array([0.3, -1.0, 2.0, 0.3]))
    array([2., 1., 4., 3.])
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    dtype = theta.dtype if out_dtype is None else out_dtype
    check_exact_integers(theta.shape[-1], dtype, name="theta", what="ranks", xp=xp)
    return Bound(RankOp(), (theta,), out_dtype)


@op_function
def permutation(theta: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Permutation matrix of the ascending sort, shape ``(..., n, n)``.

    ``P[..., i, j] = 1`` iff input ``i`` lands in ascending slot ``j``; hence
    ``sort(x) = x @ P`` (for a row vector x) — diffsort's convention. As an oracle,
    ``P`` maximises ``<θ ⊗ (1, …, n), P> = Σ_{ij} θ_i · j · P_{ij}`` over permutation
    matrices. Ties: stable ascending order.

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Scores; leading axes are batch axes.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> x = np.array([2.0, 0.0, 1.0])
    >>> P = dc.solvers.permutation(x)
    >>> x @ P
    array([0., 1., 2.])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    return Bound(PermutationOp(), (theta,), out_dtype)
