"""Ranking-supervision loss for relaxed permutation matrices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import check_choice, check_dtype_kind, check_nonempty_mean, check_same_device, check_scores
from .._lib._compat import device, index_dtype
from ..backend import backend_for
from ..op import Bound, Op, op_function

__all__ = ["permutation_loss"]

REDUCTIONS = ("mean", "sum", "none")
_LOG_FLOOR = -100.0  # torch.nn.BCELoss clamps log at -100


def _target(ranks: Any, n: int, dtype: Any, *, xp: Any) -> Any:
    slots = xp.astype(ranks, index_dtype(xp)) - 1
    cols = xp.arange(n, device=device(ranks))
    return xp.astype(xp.expand_dims(slots, axis=-1) == cols, dtype)


def _clamped_log(p: Any, *, xp: Any) -> Any:
    return xp.maximum(xp.log(xp.maximum(p, xp.full_like(p, 1e-45))), xp.full_like(p, _LOG_FLOOR))


def _bce_slope(P: Any, T: Any, *, xp: Any) -> Any:
    """``d BCE / dP = (P - T) / (P (1 - P))``, with torch's floor 1e-12 on the denominator."""
    return (P - T) / xp.maximum(P * (1 - P), xp.full_like(P, 1e-12))


@dataclass(frozen=True)
class PermutationLossOp(Op):
    reduction: str
    name: ClassVar[str] = "permutation_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1,)
    #: the VJP is array code of P: differentiating it again gives the BCE's curvature
    #: (for Newton losses through a relaxed sort)
    second_order: ClassVar[bool] = True

    def forward(self, P: Any, ranks: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        T = _target(ranks, P.shape[-1], P.dtype, xp=xp)
        bce = -(T * _clamped_log(P, xp=xp) + (1 - T) * _clamped_log(1 - P, xp=xp))
        if self.reduction == "mean":
            out = xp.mean(bce)
        elif self.reduction == "sum":
            out = xp.sum(bce)
        else:
            out = xp.mean(bce, axis=(-2, -1))
        return out, (P, T)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        P, T = residuals
        n = P.shape[-1]
        d = _bce_slope(P, T, xp=xp)
        if self.reduction == "mean":
            count = 1
            for s in P.shape:
                count *= int(s)
            return (d * (g / count), None)
        if self.reduction == "sum":
            return (d * g, None)
        return (d * xp.expand_dims(xp.expand_dims(g, axis=-1), axis=-1) / (n * n), None)

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        P, T = residuals
        u = tangents[0]
        if u is None:
            return None
        du = _bce_slope(P, T, xp=xp) * u
        if self.reduction == "mean":
            return xp.mean(du)
        if self.reduction == "sum":
            return xp.sum(du)
        return xp.mean(du, axis=(-2, -1))


@op_function
def permutation_loss(
    P: Any, target_ranks: Any, /, *, reduction: str = "mean", check_finite: bool = True
) -> Bound:
    r"""Binary cross-entropy between a relaxed permutation matrix and the true one.

    The ranking-supervision loss of the differentiable sorting network papers
    (Petersen et al., ICML 2021; ``diffsort``'s training recipe uses
    ``BCELoss(P_hat, P_true)``):

    .. math::

        \ell(\hat P, r) = -\frac{1}{n^2} \sum_{i,j} \Bigl[P^*_{ij} \log \hat P_{ij}
        + (1 - P^*_{ij}) \log(1 - \hat P_{ij})\Bigr], \qquad P^*_{ij} = 1[j = r_i - 1],

    where ``target_ranks`` :math:`r` holds the 1-based ascending rank of each input (the
    slot it must reach), so ``P*`` follows the convention of :func:`sorting_network`
    (``P[i, j]``: weight of input ``i`` in slot ``j``). Logs are floored at -100 and the
    gradient's denominator at 1e-12, as in ``torch.nn.BCELoss``.

    Parameters
    ----------
    P : array ``(..., n, n)``
        Relaxed permutation matrices with entries in [0, 1].
    target_ranks : array ``(..., n)``, integer or float
        A permutation of ``1..n`` per instance, e.g. ``dopt_core.solvers.rank(values)``.
    reduction : {"mean", "sum", "none"}
        Mean over all entries (``BCELoss``'s default, a 0-d array; ``ValueError`` for
        an empty batch), their sum, or the per-instance mean (shape ``(...)``).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import permutation_loss
    >>> P = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> bool(np.isclose(permutation_loss(P, np.array([1, 2])), -np.log(0.9)))
    True
    """
    P, xp, out_dtype = check_scores(P, name="P", min_ndim=2, check_finite=check_finite)
    n = int(P.shape[-1])
    if P.shape[-2] != n:
        raise ValueError(f"P must have shape (..., n, n), got {tuple(P.shape)}")
    reduction = check_choice(reduction, name="reduction", choices=REDUCTIONS)
    check_nonempty_mean(tuple(P.shape[:-2]), reduction, name="P")
    backend_for(target_ranks, name="target_ranks")
    check_same_device({"P": P, "target_ranks": target_ranks})
    if tuple(target_ranks.shape) != tuple(P.shape[:-1]):
        raise ValueError(
            f"target_ranks must have shape {tuple(P.shape[:-1])} (P's batch shape + (n,)), got "
            f"{tuple(target_ranks.shape)}"
        )
    if not (
        check_dtype_kind(xp, target_ranks.dtype, "integral", name="target_ranks")
        or check_dtype_kind(xp, target_ranks.dtype, "real floating", name="target_ranks")
    ):
        raise TypeError(f"target_ranks must hold integers (1..n), got dtype {target_ranks.dtype}")
    ranks = xp.astype(target_ranks, P.dtype)
    if not backend_for(P).is_traced(P) and not backend_for(ranks).is_traced(ranks):
        ok = bool(
            xp.all(xp.sort(ranks, axis=-1) == xp.arange(1, n + 1, dtype=P.dtype, device=device(P)))
        )
        if not ok:
            raise ValueError("target_ranks must be a permutation of 1..n along the last axis")
        if check_finite and not bool(xp.all((P >= 0) & (P <= 1))):
            raise ValueError("P must have entries in [0, 1]")
    return Bound(PermutationLossOp(reduction), (P, ranks), out_dtype)
