r"""NeuralSort (Grover, Wang, Zweig and Ermon, ICLR 2019): a unimodal row-stochastic
relaxation of the descending sort permutation matrix, with its explicit VJP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import check_flag, check_in_dtype_range, check_positive, check_scores
from .._lib._compat import device
from ..op import Bound, Op, op_function
from ._common import softmax_last, softmax_vjp

__all__ = ["neural_sort"]


def _coefficients(s: Any, *, xp: Any) -> Any:
    """``c_i = n + 1 - 2i`` for rows ``i = 1..n``, shaped ``(n, 1)``."""
    n = s.shape[-1]
    i = xp.arange(1, n + 1, dtype=s.dtype, device=device(s))
    return xp.expand_dims((n + 1) - 2 * i, axis=-1)


def _logits(s: Any, *, xp: Any) -> tuple[Any, Any]:
    """``L[..., i, m] = c_i s_m - (A_s 1)_m`` (before dividing by τ) and the sign matrix
    ``D[..., l, m] = sign(s_l - s_m)``."""
    diff = xp.expand_dims(s, axis=-1) - xp.expand_dims(s, axis=-2)  # s_l - s_m
    b = xp.sum(xp.abs(diff), axis=-1)  # (A_s 1)_m = Σ_j |s_m - s_j|
    c = _coefficients(s, xp=xp)
    logits = c * xp.expand_dims(s, axis=-2) - xp.expand_dims(b, axis=-2)
    return logits, xp.sign(diff)


def _hard_sort(s: Any, *, xp: Any) -> Any:
    order = xp.argsort(s, axis=-1, descending=True, stable=True)
    cols = xp.arange(s.shape[-1], device=device(s))
    return xp.astype(xp.expand_dims(order, axis=-1) == cols, s.dtype)


@dataclass(frozen=True)
class NeuralSortOp(Op):
    tau: float = 1.0
    hard: bool = False
    name: ClassVar[str] = "neural_sort"

    def forward(self, s: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        if self.hard:
            return _hard_sort(s, xp=xp), (s,)
        logits, _ = _logits(s, xp=xp)
        return softmax_last(logits, self.tau, xp=xp, divide=True), (s,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (s,) = residuals
        logits, sign = _logits(s, xp=xp)
        p = softmax_last(logits, self.tau, xp=xp, divide=True)
        # adjoint of the logits (row-wise softmax VJP)
        lbar = softmax_vjp(p, cotangent, self.tau, xp=xp)
        c = _coefficients(s, xp=xp)
        from_scale = xp.sum(c * lbar, axis=-2)  # Σ_i c_i L̄[i, m]
        u = xp.sum(lbar, axis=-2)  # adjoint of b
        # ∂b_m/∂s_l = δ_lm Σ_j sign(s_m - s_j) - sign(s_m - s_l)
        from_b = u * xp.sum(sign, axis=-1) + xp.sum(sign * xp.expand_dims(u, axis=-2), axis=-1)
        return (from_scale - from_b,)

    # the forward is softmax of array operations of s (|·| and sign: differentiable a.e.)
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # dL[i, m] = c_i u_m - db_m with db_m = u_m Σ_j sign(s_m - s_j) - Σ_j sign(s_m - s_j) u_j,
        # then the row-wise softmax JVP; hard=True carries the relaxed tangent, like its VJP
        (s,), (u,) = residuals, tangents
        if u is None:
            return None
        logits, sign = _logits(s, xp=xp)
        p = softmax_last(logits, self.tau, xp=xp, divide=True)
        db = u * xp.sum(sign, axis=-1) - xp.sum(sign * xp.expand_dims(u, axis=-2), axis=-1)
        dl = _coefficients(s, xp=xp) * xp.expand_dims(u, axis=-2) - xp.expand_dims(db, axis=-2)
        return softmax_vjp(p, dl, self.tau, xp=xp)  # the row softmax's J is symmetric


@op_function
def neural_sort(
    s: Any, /, *, tau: float = 1.0, hard: bool = False, check_finite: bool = True
) -> Bound:
    r"""NeuralSort relaxed permutation matrix of the descending sort (Grover et al. 2019).

    .. math::

        \hat P[i, :] = \operatorname{softmax}\Bigl(\frac{(n + 1 - 2i)\, s - A_s \mathbf 1}
        {\tau}\Bigr), \qquad (A_s)_{jm} = |s_j - s_m|, \quad i = 1, \dots, n.

    Row ``i`` (0-based ``i - 1``) is a distribution over the items that concentrates on
    the ``i``-th **largest** entry of ``s`` (descending order, as in Grover et al.):
    :math:`\hat P s` is a relaxed ``sort(s, descending=True)``. Every row sums to 1
    (columns need not), each row is unimodal, and as ``tau → 0`` :math:`\hat P` tends to
    the exact permutation matrix (for distinct scores). ``hard=True`` returns that exact
    permutation matrix forward and the relaxed gradient (straight-through). The VJP and
    the JVP (forward mode; the soft version is second order) are closed form, O(n²) per
    instance.

    Parameters
    ----------
    s : array, shape ``(..., n)``, float32 or float64
        Scores; leading axes are batch axes.
    tau : float > 0
        Temperature.
    hard : bool
        Straight-through: exact permutation matrix forward, relaxed gradient backward.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., n, n)``
        :math:`\hat P`, row-stochastic, in ``s``'s dtype.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> s = np.array([0.0, 3.0, 1.0])
    >>> np.round(dc.relax.neural_sort(s, tau=0.1), 3)
    array([[0., 1., 0.],
           [0., 0., 1.],
           [1., 0., 0.]])
    >>> dc.relax.neural_sort(s, hard=True) @ s
    array([3., 1., 0.])

    References
    ----------
    Grover, Wang, Zweig and Ermon, "Stochastic optimization of sorting networks via
    continuous relaxations", ICLR 2019, arXiv:1903.08850.
    """
    s, xp, out_dtype = check_scores(s, name="s", check_finite=check_finite)
    tau = check_positive(tau, name="tau")
    tau = check_in_dtype_range(tau, name="tau", dtype=s.dtype, xp=xp)
    hard = check_flag(hard, name="hard")
    return Bound(NeuralSortOp(tau, hard), (s,), out_dtype)
