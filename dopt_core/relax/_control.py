r"""Relaxed control flow: comparisons, conditionals, min/max/argmin (Petersen's thesis, ch. 3).

The closed-form perturbation method of AlgoVision (Petersen et al., NeurIPS 2021):
perturb the compared quantity with noise of CDF ``F`` and inverse temperature
:math:`\beta`, and replace each discrete decision by its probability —

.. math::

    \Pr[a > b] = \Pr[b + \varepsilon/\beta < a] = F(\beta(a - b))

(the comparator of the sorting networks, :mod:`dopt_core.relax._comparator`; for
symmetric ``F`` also :math:`\Pr[a - b + \varepsilon/\beta > 0]`),

a conditional by the expectation over its branches, ``p·then + (1-p)·else``, and
argmin/min over a vector by the softmin weights :math:`\operatorname{softmax}(-\beta x)`
and their expectation :math:`\sum_i \operatorname{softmax}(-\beta x)_i x_i`. All tend to
their exact counterparts as ``beta → ∞``. Arguments broadcast against each other; the
result and the gradients have the broadcast shape (frameworks reduce the gradients of
broadcast inputs themselves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import (
    check_broadcastable,
    check_in_dtype_range,
    check_positive,
    check_same_device,
    check_scores,
)
from .._lib._compat import device
from ..backend import backend_for
from ..op import Bound, Op, op_function
from . import cdfs
from ._common import softmax_last
from ._comparator import comparator_alpha, compare, compare_vjp

__all__ = ["soft_argmax", "soft_argmin", "soft_compare", "soft_if", "soft_max", "soft_min"]


def _as_array(v: Any, like: Any, *, name: str, xp: Any, check_finite: bool) -> Any:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an array or a real number, got bool")
    if isinstance(v, int | float):
        return xp.asarray(float(v), dtype=like.dtype, device=device(like))
    v, _, _ = check_scores(v, name=name, min_ndim=0, check_finite=check_finite)
    check_same_device({"first argument": like, name: v})
    return xp.astype(v, like.dtype)


def _broadcast(arrays: dict[str, Any], *, xp: Any) -> tuple[Any, ...]:
    """The named arguments broadcast together (``ValueError`` naming them if they do not)."""
    check_broadcastable(arrays)
    return tuple(xp.broadcast_arrays(*arrays.values()))


def _prob_greater(v: Any, beta: float, dist: str, *, xp: Any) -> tuple[Any, Any]:
    """``F(βv) = Pr[ε/β < v]`` and its derivative: the comparator's α
    (:func:`dopt_core.relax._comparator.comparator_alpha`) for ``v = b - a``."""
    d = cdfs.resolve(dist)  # a cdfs.Distribution (a plain name from older callers)
    return comparator_alpha(v, beta, d.entry, d.param_dict, xp=xp)


def _beta(beta: float, like: Any, *, xp: Any) -> float:
    """β usable in ``like``'s dtype (:func:`dopt_core._lib._checks.check_in_dtype_range`)."""
    return check_in_dtype_range(beta, name="beta", dtype=like.dtype, xp=xp)


def _dist(distribution: Any) -> Any:
    """``distribution`` as a hashable :class:`cdfs.Distribution` (a name, a pair
    ``("name", parameter)`` or a :mod:`~dopt_core.relax.cdfs` object)."""
    d = cdfs.resolve(distribution, name="distribution")
    if d.entry.raw:
        raise ValueError(
            f"distribution {d.name!r} is not a CDF of the difference alone; use another name"
        )
    return d


@dataclass(frozen=True)
class SoftCompareOp(Op):
    beta: float
    dist: str
    name: ClassVar[str] = "soft_compare"

    def forward(self, a: Any, b: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p, dp = _prob_greater(a - b, self.beta, self.dist, xp=xp)
        return p, (dp,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (dp,) = residuals
        return (g * dp, -g * dp)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # p = F(β(a - b)): dp = F'·β (u_a - u_b)
        (dp,), (ua, ub) = residuals, tangents
        if ua is None and ub is None:
            return None
        du = ua if ub is None else (-ub if ua is None else ua - ub)
        return dp * du


@dataclass(frozen=True)
class SoftIfOp(Op):
    name: ClassVar[str] = "soft_if"

    def forward(self, p: Any, then_v: Any, else_v: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return p * then_v + (1 - p) * else_v, (p, then_v - else_v)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        p, diff = residuals
        return (g * diff, g * p, g * (1 - p))

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # y = p t + (1 - p) e: dy = u_p (t - e) + p u_t + (1 - p) u_e
        p, diff = residuals
        terms = [
            t for t in (
                None if tangents[0] is None else tangents[0] * diff,
                None if tangents[1] is None else p * tangents[1],
                None if tangents[2] is None else (1 - p) * tangents[2],
            ) if t is not None
        ]
        if not terms:
            return None
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out


@dataclass(frozen=True)
class SoftPairOp(Op):
    """Relaxed min (``sign=-1``) or max (``sign=+1``) of two arrays."""

    beta: float
    dist: str
    sign: int
    name: ClassVar[str] = "soft_pair_extremum"

    def forward(self, a: Any, b: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        # the networks' comparator: α = F(βΔ), Δ = b - a; min = b - αΔ, max = a + αΔ
        delta = b - a
        alpha, dalpha = _prob_greater(delta, self.beta, self.dist, xp=xp)
        mn, mx = compare(a, b, alpha, delta)
        return (mn if self.sign < 0 else mx), (alpha, dalpha, delta)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        alpha, dalpha, delta = residuals
        zero = xp.zeros_like(g)
        g_mn, g_mx = (g, zero) if self.sign < 0 else (zero, g)
        return compare_vjp(g_mn, g_mx, alpha, dalpha, delta)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # min = b - αΔ, max = a + αΔ, Δ = b - a, α = F(βΔ): d(αΔ) = (α'Δ + α) dΔ
        alpha, dalpha, delta = residuals
        ua, ub = tangents
        if ua is None and ub is None:
            return None
        ua = xp.zeros_like(delta) if ua is None else ua
        ub = xp.zeros_like(delta) if ub is None else ub
        d_ad = (dalpha * delta + alpha) * (ub - ua)
        return ub - d_ad if self.sign < 0 else ua + d_ad


@dataclass(frozen=True)
class SoftExtremumOp(Op):
    """softmax(±βx) weights (``value=False``) or their expectation of x (``value=True``)."""

    beta: float
    sign: int
    value: bool
    name: ClassVar[str] = "soft_extremum"

    def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        # softmax(±β x) as exp(±β (x - x*)): ±β x overflows for large finite x
        w = softmax_last(x, self.sign * self.beta, xp=xp)
        if not self.value:
            return w, (x,)
        return xp.sum(w * x, axis=-1), (x,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (x,) = residuals
        sb = self.sign * self.beta
        w = softmax_last(x, sb, xp=xp)
        if not self.value:
            return (sb * w * (g - xp.sum(g * w, axis=-1, keepdims=True)),)
        y = xp.sum(w * x, axis=-1, keepdims=True)
        # w (1 + sb (x - y)) as w + sb (w (x - y)): where w = 0, sb (x - y) may overflow
        return (xp.expand_dims(g, axis=-1) * (w + sb * (w * (x - y))),)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the weights' Jacobian sb (diag(w) - w wᵀ) is symmetric; the value's row is the VJP's
        (x,), (u,) = residuals, tangents
        if u is None:
            return None
        sb = self.sign * self.beta
        w = softmax_last(x, sb, xp=xp)
        if not self.value:
            return sb * w * (u - xp.sum(u * w, axis=-1, keepdims=True))
        y = xp.sum(w * x, axis=-1, keepdims=True)
        return xp.sum(u * (w + sb * (w * (x - y))), axis=-1)


@op_function
def soft_compare(
    a: Any,
    b: Any,
    /,
    *,
    beta: float = 10.0,
    distribution: str = "logistic",
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed ``a > b``: :math:`F(\beta(a - b)) = \Pr[b + \varepsilon/\beta < a]`.

    ``distribution`` names a CDF of :mod:`dopt_core.relax.cdfs` (``"logistic"``, AlgoVision's
    choice, ``"cauchy"``, ``"gaussian"``...), the law of the noise ``ε``; for symmetric
    ones the result is also :math:`\Pr[a - b + \varepsilon/\beta > 0]`. The sorting
    networks' comparator uses the same α (``soft_compare(b, a)`` is the weight of ``a``
    in the relaxed ``min(a, b)``). ``b`` may be a Python number. Tends to ``1[a > b]`` as
    ``beta → ∞``; equals ½ at ``a == b`` for symmetric distributions.

    Parameters
    ----------
    a : array
        Left-hand side.
    b : array or float
        Right-hand side, broadcast against ``a``.
    beta : float > 0
        Inverse temperature: the relaxation tends to the exact operation as ``beta → ∞``.
    distribution : str, ("name", parameter) or cdfs.Distribution
        A CDF of :mod:`dopt_core.relax.cdfs` (``"logistic"``, ``"cauchy"``, ``"gaussian"``...).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_compare
    >>> soft_compare(np.array([1.0, 0.0, -1.0]), 0.0, beta=np.log(3.0))
    array([0.75, 0.5 , 0.25])
    """
    a, xp, out_dtype = check_scores(a, name="a", min_ndim=0, check_finite=check_finite)
    b = _as_array(b, a, name="b", xp=xp, check_finite=check_finite)
    beta = _beta(check_positive(beta, name="beta"), a, xp=xp)
    op = SoftCompareOp(beta, _dist(distribution))
    return Bound(op, _broadcast({"a": a, "b": b}, xp=xp), out_dtype)


@op_function
def soft_if(p: Any, then_value: Any, else_value: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Relaxed conditional: ``p * then_value + (1 - p) * else_value``.

    The expectation of ``then_value if cond else else_value`` when ``cond`` holds with
    probability ``p`` (e.g. from :func:`soft_compare`) — AlgoVision's ``If`` with merged
    branches. ``p`` must lie in [0, 1] (checked unless traced); the values may be Python
    numbers. Gradients flow to all three.

    Parameters
    ----------
    p : array
        Probability of the condition, in [0, 1].
    then_value, else_value : array or float
        The two branches, broadcast against ``p``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_if
    >>> soft_if(np.array([0.25, 1.0]), np.array([4.0, 4.0]), 0.0)
    array([1., 4.])
    """
    p, xp, out_dtype = check_scores(p, name="p", min_ndim=0, check_finite=check_finite)
    if check_finite and not backend_for(p).is_traced(p):
        if not bool(xp.all((p >= 0) & (p <= 1))):
            raise ValueError("p must lie in [0, 1] (a probability)")
    t = _as_array(then_value, p, name="then_value", xp=xp, check_finite=check_finite)
    e = _as_array(else_value, p, name="else_value", xp=xp, check_finite=check_finite)
    return Bound(
        SoftIfOp(), _broadcast({"p": p, "then_value": t, "else_value": e}, xp=xp), out_dtype
    )


def _extremum(x: Any, y: Any, beta: Any, distribution: Any, check_finite: bool, sign: int) -> Bound:
    beta = check_positive(beta, name="beta")
    if y is None:
        x, xp, out_dtype = check_scores(x, name="x", check_finite=check_finite)
        beta = _beta(beta, x, xp=xp)
        if _dist(distribution) != cdfs.resolve("logistic"):  # a name or a cdfs object
            raise ValueError(
                "distribution must be 'logistic' for the min/max of a vector (softmin weights); "
                f"got {distribution!r}"
            )
        return Bound(SoftExtremumOp(beta, sign, True), (x,), out_dtype)
    x, xp, out_dtype = check_scores(x, name="x", min_ndim=0, check_finite=check_finite)
    beta = _beta(beta, x, xp=xp)
    y = _as_array(y, x, name="y", xp=xp, check_finite=check_finite)
    pair = _broadcast({"x": x, "y": y}, xp=xp)
    return Bound(SoftPairOp(beta, _dist(distribution), sign), pair, out_dtype)


@op_function
def soft_min(
    x: Any,
    y: Any = None,
    /,
    *,
    beta: float = 10.0,
    distribution: str = "logistic",
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed minimum of a pair ``(x, y)`` or of a vector ``x`` along its last axis.

    Pair: with :math:`\alpha = F(\beta(y - x)) = \Pr[x + \varepsilon/\beta < y]`
    (``soft_compare(y, x)``),
    :math:`\alpha x + (1 - \alpha) y` — the relaxed comparator of the sorting networks.
    Vector: :math:`\sum_i \operatorname{softmax}(-\beta x)_i\, x_i` (logistic only; for a
    pair the two definitions coincide). Tends to the exact minimum as ``beta → ∞``.

    Parameters
    ----------
    x : array
        A vector (``y`` omitted: the extremum along the last axis) or the first of a pair.
    y : array or float, optional
        The second of the pair, broadcast against ``x``.
    beta : float > 0
        Inverse temperature: the relaxation tends to the exact operation as ``beta → ∞``.
    distribution : str, ("name", parameter) or cdfs.Distribution
        A CDF of :mod:`dopt_core.relax.cdfs` (``"logistic"``, ``"cauchy"``, ``"gaussian"``...);
        pairs only (vectors use the logistic: softmax weights).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_min
    >>> float(soft_min(np.array(1.0), np.array(3.0), beta=100.0))
    1.0
    >>> float(np.round(soft_min(np.array([2.0, 0.5, 4.0]), beta=50.0), 6))
    0.5
    """
    return _extremum(x, y, beta, distribution, check_finite, -1)


@op_function
def soft_max(
    x: Any,
    y: Any = None,
    /,
    *,
    beta: float = 10.0,
    distribution: str = "logistic",
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed maximum of a pair or of a vector (see :func:`soft_min`): for a pair
    :math:`(1-\alpha) x + \alpha y` with :math:`\alpha = F(\beta(y - x))`, for a vector
    :math:`\sum_i \operatorname{softmax}(\beta x)_i\, x_i`.

    Parameters
    ----------
    x : array
        A vector (``y`` omitted: the extremum along the last axis) or the first of a pair.
    y : array or float, optional
        The second of the pair, broadcast against ``x``.
    beta : float > 0
        Inverse temperature: the relaxation tends to the exact operation as ``beta → ∞``.
    distribution : str, ("name", parameter) or cdfs.Distribution
        A CDF of :mod:`dopt_core.relax.cdfs` (``"logistic"``, ``"cauchy"``, ``"gaussian"``...);
        pairs only (vectors use the logistic: softmax weights).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_max
    >>> float(soft_max(np.array(1.0), np.array(3.0), beta=100.0))
    3.0
    """
    return _extremum(x, y, beta, distribution, check_finite, +1)


@op_function
def soft_argmin(x: Any, /, *, beta: float = 10.0, check_finite: bool = True) -> Bound:
    r"""Relaxed one-hot argmin along the last axis: :math:`\operatorname{softmax}(-\beta x)`.

    The probability of each entry being the minimum when ``x`` is perturbed with Gumbel
    noise of scale :math:`1/\beta`; tends to the one-hot argmin as ``beta → ∞``.

    Parameters
    ----------
    x : array, shape ``(..., n)``
        Scores; leading axes are batch axes.
    beta : float > 0
        Inverse temperature: the relaxation tends to the exact operation as ``beta → ∞``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_argmin
    >>> soft_argmin(np.array([0.0, np.log(3.0)]), beta=1.0)
    array([0.75, 0.25])
    """
    x, xp, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    beta = _beta(check_positive(beta, name="beta"), x, xp=xp)
    return Bound(SoftExtremumOp(beta, -1, False), (x,), out_dtype)


@op_function
def soft_argmax(x: Any, /, *, beta: float = 10.0, check_finite: bool = True) -> Bound:
    r"""Relaxed one-hot argmax along the last axis: :math:`\operatorname{softmax}(\beta x)`.

    Parameters
    ----------
    x : array, shape ``(..., n)``
        Scores; leading axes are batch axes.
    beta : float > 0
        Inverse temperature: the relaxation tends to the exact operation as ``beta → ∞``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_argmax
    >>> soft_argmax(np.array([0.0, np.log(3.0)]), beta=1.0)
    array([0.25, 0.75])
    """
    x, xp, out_dtype = check_scores(x, name="x", check_finite=check_finite)
    beta = _beta(check_positive(beta, name="beta"), x, xp=xp)
    return Bound(SoftExtremumOp(beta, +1, False), (x,), out_dtype)
