"""GroupSum: class scores as scaled counts of a logic network's output bits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import check_int, check_positive, check_scores
from ..op import Bound, Op, op_function

__all__ = ["GroupSumOp", "group_sum"]


@dataclass(frozen=True)
class GroupSumOp(Op):
    k: int = 1
    tau: float = 1.0
    n: int = 1
    name: ClassVar[str] = "logic.group_sum"

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        y = xp.sum(xp.reshape(x, (*x.shape[:-1], self.k, self.n // self.k)), axis=-1) / self.tau
        return y, ()

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        m = self.n // self.k
        g = xp.broadcast_to(cotangent[..., None], (*cotangent.shape, m)) / self.tau
        return (xp.reshape(g, (*cotangent.shape[:-1], self.n)),)


@op_function
def group_sum(x: Any, /, k: int, *, tau: float = 1.0) -> Bound:
    r"""Sum the last axis in ``k`` contiguous groups and divide by ``tau`` (difflogic's GroupSum).

    .. math::

        y_c = \frac{1}{\tau} \sum_{j = c\,m}^{(c+1)\,m - 1} x_j, \qquad m = n / k,

    so that with binary outputs the score of class ``c`` is the number of its ``m``
    output neurons that fire, over ``τ`` (Petersen et al., NeurIPS 2022, Sec. 3.3); the
    scores lie in ``[0, m/τ]`` and are trained with cross-entropy. VJP:
    :math:`\bar x_j = \bar y_{\lfloor j/m \rfloor}/\tau`.

    Parameters
    ----------
    x : array, shape ``(..., n)``, float32 or float64
    k : int ≥ 1 dividing ``n``
        Number of groups (classes).
    tau : float > 0
        Temperature (difflogic's experiments use 10 to 100).

    Returns
    -------
    array, shape ``(..., k)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import group_sum
    >>> group_sum(np.array([1.0, 1.0, 1.0, 0.0, 0.0, 1.0]), 2, tau=2.0)
    array([1.5, 0.5])
    """
    x, xp, out_dtype = check_scores(x, name="x")
    k = check_int(k, name="k", low=1)
    tau = check_positive(tau, name="tau")
    n = x.shape[-1]
    if n % k:
        raise ValueError(f"k ({k}) must divide the last dimension of x ({n})")
    return Bound(GroupSumOp(k, tau, n), (x,), out_dtype)
