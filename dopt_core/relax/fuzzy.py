r"""T-norms and T-conorms: relaxed AND / OR of probabilities (Petersen's thesis §4.3).

A T-norm :math:`\top` is a commutative, associative map :math:`[0,1]^2 \to [0,1]`,
monotone in each argument, with :math:`\top(x, 1) = x`; its dual T-conorm
:math:`\bot(a, b) = 1 - \top(1 - a, 1 - b)` has :math:`\bot(a, 0) = a` and
:math:`\bot(a, 1) = 1`. GenDR (Petersen et al., CVPR 2022) aggregates the coverage of
a pixel by the triangles with a T-conorm, :math:`\alpha = \bot_t A_t`, and AlgoVision
(NeurIPS 2021) accumulates a shortest path's mask with one. The nine families, with
:math:`x = 1 - a`, :math:`y = 1 - b` and their parameter ranges:

=================== ======================================================= ==============
name                :math:`\bot(a, b)`                                       ``p``
=================== ======================================================= ==============
``max``             :math:`\max(a, b)`                                       —
``probabilistic``   :math:`a + b - ab`                                       —
``einstein``        :math:`(a + b)/(1 + ab)`                                 —
``hamacher``        :math:`1 - xy/(p + (1-p)(x + y - xy))`                   ``p >= 0`` (5)
``frank``           :math:`1 - \log_p(1 + (p^x - 1)(p^y - 1)/(p - 1))`       ``p > 0, != 1`` (2)
``yager``           :math:`\min(1, (a^p + b^p)^{1/p})`                       ``p > 0`` (2)
``aczel_alsina``    :math:`1 - \exp(-((-\ln x)^p + (-\ln y)^p)^{1/p})`       ``p > 0`` (2)
``dombi``           :math:`1 - 1/(1 + (((1-x)/x)^p + ((1-y)/y)^p)^{1/p})`    ``p > 0`` (2)
``schweizer_sklar`` :math:`1 - (x^p + y^p - 1)^{1/p}`                        ``p < 0`` (-2)
=================== ======================================================= ==============

(defaults in brackets; Hamacher's 5 is AlgoVision's shortest-path demo). All but
``max`` and ``yager`` are *strict Archimedean*: :math:`\top(x_1, \dots, x_n) =
g^{-1}(\sum_i g(x_i))` for a decreasing generator :math:`g` with :math:`g(0) = \infty`
(Yager's generator :math:`(1-x)^p` is finite at 0: nilpotent, clipped at 0). The
reduction over an axis, :func:`tconorm_reduce`, is evaluated that way in one pass, and
its VJP is GenDR's closed form in the result and the entry alone — no per-entry state:

.. math::

    \frac{\partial \top}{\partial x_i} = \frac{g'(x_i)}{g'(\top)}
    \quad\text{(probabilistic: } \partial\alpha/\partial A_i = (1-\alpha)/(1-A_i)\text{)}

with, for entries equal to 1 (``x_i = 0``, where the ratio is 0/0), the exact one-sided
derivative :math:`\partial_x \top(0, R_i)` at the leave-one-out reduction
:math:`R_i = g^{-1}(\sum_{j \ne i} g(x_j))` (0 when two entries are 1). ``max`` splits
its gradient equally among tied maximisers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import (
    check_broadcastable,
    check_choice,
    check_int,
    check_positive,
    check_real,
    check_same_device,
    check_scores,
)
from .._lib._compat import device
from ..backend import backend_for
from ..op import Bound, Op, op_function

__all__ = ["DEFAULT_P", "NAMES", "tconorm", "tconorm_reduce", "tnorm", "tnorm_reduce"]

#: The nine families of GenDR (Petersen et al., CVPR 2022), in its order.
NAMES: tuple[str, ...] = (
    "max",
    "probabilistic",
    "einstein",
    "hamacher",
    "frank",
    "yager",
    "aczel_alsina",
    "dombi",
    "schweizer_sklar",
)

#: The parameter used when ``p=None`` (``None``: the family has no parameter).
DEFAULT_P: dict[str, float | None] = {
    "max": None,
    "probabilistic": None,
    "einstein": None,
    "hamacher": 5.0,
    "frank": 2.0,
    "yager": 2.0,
    "aczel_alsina": 2.0,
    "dombi": 2.0,
    "schweizer_sklar": -2.0,
}


def check_family(name: Any, p: Any) -> tuple[str, float | None]:
    """``(name, p)`` validated against the family's range (``p=None``: its default)."""
    name = check_choice(name, name="name", choices=NAMES)
    default = DEFAULT_P[name]
    if default is None:
        if p is not None:
            raise ValueError(f"the {name!r} T-norm has no parameter: pass p=None, got {p!r}")
        return name, None
    p = default if p is None else check_real(p, name="p")
    if name == "hamacher" and p < 0:
        raise ValueError(f"p must be >= 0 for 'hamacher', got {p}")
    if name == "frank" and (p <= 0 or p == 1):
        raise ValueError(f"p must be > 0 and != 1 for 'frank', got {p}")
    if name in ("yager", "aczel_alsina", "dombi"):
        p = check_positive(p, name="p")
    if name == "schweizer_sklar" and p >= 0:
        raise ValueError(f"p must be < 0 for 'schweizer_sklar' (the strict range), got {p}")
    return name, p


# ---------------------------------------------------------------------------------
# strict Archimedean families: generator g, its inverse, the ratio g'(x)/g'(T), and the
# one-sided derivative d/dx T(x, R) at x = 0
# ---------------------------------------------------------------------------------
def _ind(c: Any, like: Any, xp: Any) -> Any:
    return xp.astype(c, like.dtype)


def _safe(q: Any, ok: Any, xp: Any) -> Any:
    return xp.where(ok, q, xp.ones_like(q))


def _frank_gen(p: float, x: Any, xp: Any) -> Any:
    """Frank's ``g(x) = -log r``, ``r = (p^x - 1)/(p - 1)`` in (0, 1].

    Near ``x = 1`` (``r >= ½``) as ``-log1p(r - 1)`` with ``r - 1`` in closed form,
    ``p (p^{x-1} - 1)/(p - 1)``: ``-log r`` of the rounded ``r`` lost the small ``g``
    that small ``p`` then amplifies (``dT/dS ~ 1/((S + p) |log p|)``)."""
    L = math.log(p)
    r = xp.expm1(x * L) / math.expm1(L)
    y = (x - 1) * L  # >= 0 for p < 1, <= 0 for p > 1
    if p < 1:  # only r >= ½ is used, where p e^y <= 1: the clip only avoids overflow
        y = xp.minimum(y, xp.full_like(y, math.log1p(1 / p)))
        rm1 = (p / math.expm1(L)) * xp.expm1(y)
    else:
        rm1 = xp.expm1(y) / -math.expm1(-L)
    near = r >= 0.5
    return xp.where(near, -xp.log1p(xp.where(near, rm1, xp.zeros_like(rm1))), -xp.log(r))


def _frank_gen_inv(p: float, s: Any, xp: Any) -> Any:
    """Frank's ``g^{-1}(s) = log(1 + (p - 1) e^{-s}) / log p``.

    For ``p < 1`` and ``(p - 1) e^{-s} < -½`` the argument is ``-expm1(-s) + p e^{-s}``
    (two positive terms), not ``1 +`` a number near -1 (the cancellation cost float32
    1e-4 at ``p = 1e-4``)."""
    L = math.log(p)
    u = math.expm1(L) * xp.exp(-s)
    if p >= 1:
        return xp.log1p(u) / L
    far = u > -0.5
    delta = -xp.expm1(-s) + xp.exp(L - s)
    return xp.where(far, xp.log1p(xp.where(far, u, xp.zeros_like(u))), xp.log(delta)) / L


def _gen(name: str, p: Any, x: Any, xp: Any) -> Any:
    if name == "probabilistic":
        return -xp.log(x)
    if name == "einstein":
        return xp.log((2 - x) / x)
    if name == "hamacher":
        return (1 - x) / x if p == 0 else xp.log((p + (1 - p) * x) / x)
    if name == "frank":
        return _frank_gen(p, x, xp)
    if name == "aczel_alsina":
        return (-xp.log(x)) ** p
    if name == "dombi":
        return ((1 - x) / x) ** p
    if name == "schweizer_sklar":
        return x**p - 1
    raise AssertionError(name)


def _gen_inv(name: str, p: Any, s: Any, xp: Any) -> Any:
    if name == "probabilistic":
        return xp.exp(-s)
    if name == "einstein":
        return 2 / (xp.exp(s) + 1)
    if name == "hamacher":
        return 1 / (1 + s) if p == 0 else p / (xp.expm1(s) + p)
    if name == "frank":
        return _frank_gen_inv(p, s, xp)
    if name == "aczel_alsina":
        return xp.exp(-(s ** (1 / p)))
    if name == "dombi":
        return 1 / (1 + s ** (1 / p))
    if name == "schweizer_sklar":
        return (1 + s) ** (1 / p)
    raise AssertionError(name)


def _ratio(name: str, p: Any, x: Any, T: Any, xp: Any) -> Any:
    """``∂T/∂x_i = g'(x_i)/g'(T)`` for ``x_i > 0`` (``T`` the whole reduction)."""
    if name == "probabilistic":
        return T / x
    if name == "einstein":
        return T * (2 - T) / (x * (2 - x))
    if name == "hamacher":
        return T * (p + (1 - p) * T) / (x * (p + (1 - p) * x))
    if name == "frank":
        L = math.log(p)
        return xp.expm1(-T * L) / xp.expm1(-x * L)
    one = T >= 1  # then every x_i = 1 as well: T(x, 1) = x has slope 1
    if name == "aczel_alsina":
        tpos = T > 0
        lt = -xp.log(xp.where(tpos & ~one, T, xp.full_like(T, 0.5)))
        q = _safe(-xp.log(x) / lt, ~one & tpos, xp)  # T = 0: masked below
        out = (T / x) * q ** (p - 1)
        return xp.where(tpos, out, xp.zeros_like(out))
    if name == "dombi":
        tpos = T > 0
        t_lt1 = xp.where(one, xp.zeros_like(T), T)
        q = _safe((1 - x) * T / (x * (1 - t_lt1)), ~one, xp)
        out = (T / x) ** 2 * _safe(q, tpos, xp) ** (p - 1)
        return xp.where(tpos, out, xp.zeros_like(out))
    if name == "schweizer_sklar":
        return (T / x) ** (1 - p)
    raise AssertionError(name)


def _slope_at_zero(name: str, p: Any, R: Any, xp: Any) -> Any:
    """``d/dx T(x, R)`` at ``x = 0⁺`` (``R`` the leave-one-out reduction, ``R >= 0``)."""
    if name == "probabilistic":
        return R
    if name == "einstein":
        return R / (2 - R)
    if name == "hamacher" and p > 0:
        return R / (p + (1 - p) * R)
    if name == "frank":
        return xp.expm1(R * math.log(p)) / math.expm1(math.log(p))
    if name == "aczel_alsina" and p == 1:
        return R
    if name == "aczel_alsina" and p < 1:
        # T(x, R) = o(x) for R < 1, but T(x, 1) = x (1 is the identity): slope 1 there
        return _ind(R >= 1, R, xp)
    # hamacher p = 0, aczel_alsina p > 1, dombi, schweizer_sklar: T(x, R) ~ x
    return _ind(R > 0, R, xp)


def _power_root(h: Any, p: float, xp: Any) -> Any:
    """``(Σ_i h_i^p)^{1/p}`` over the last axis (kept), ``h >= 0``, scaled by the largest
    ``h``: for large ``p`` the powers under- or overflow long before the root does."""
    m = xp.max(h, axis=-1, keepdims=True)
    ms = xp.where(m > 0, m, xp.ones_like(m))
    return m * xp.sum((h / ms) ** p, axis=-1, keepdims=True) ** (1 / p)


def _reduce_nonzero(name: str, p: Any, xs: Any, zero: Any, xp: Any) -> Any:
    """``g^{-1}(Σ_{x_i > 0} g(x_i))`` over the last axis (kept; ``zero`` entries left out).

    Aczél–Alsina, Dombi (``g = h^p``) and Schweizer–Sklar (``g = x^p - 1``) are power
    means, evaluated scaled (:func:`_power_root`; Schweizer–Sklar as
    ``m (Σ (x_i/m)^p - (n-1) m^{-p})^{1/p}`` with ``m = min x``); the others through
    their generator."""
    if name == "aczel_alsina":
        h = xp.where(zero, xp.zeros_like(xs), -xp.log(xs))
        return xp.exp(-_power_root(h, p, xp))
    if name == "dombi":
        h = xp.where(zero, xp.zeros_like(xs), (1 - xs) / xs)
        return 1 / (1 + _power_root(h, p, xp))
    if name == "schweizer_sklar":  # p < 0; a left-out entry counts as x = 1 (g = 0)
        xo = xp.where(zero, xp.ones_like(xs), xs)
        m = xp.min(xo, axis=-1, keepdims=True)
        inner = xp.sum((xo / m) ** p, axis=-1, keepdims=True) - (xs.shape[-1] - 1) * m ** (-p)
        return m * inner ** (1 / p)
    G = xp.where(zero, xp.zeros_like(xs), _gen(name, p, xs, xp))
    return _gen_inv(name, p, xp.sum(G, axis=-1, keepdims=True), xp)


def _strict(name: str, p: Any, x: Any, xp: Any, grad: bool) -> Any:
    zero = x <= 0
    xs = xp.where(zero, xp.full_like(x, 0.5), x)  # placeholder: masked below
    V = _reduce_nonzero(name, p, xs, zero, xp)
    n0 = xp.sum(_ind(zero, x, xp), axis=-1, keepdims=True)
    T = xp.where(n0 > 0, xp.zeros_like(V), V)
    if not grad:
        return T[..., 0]
    inner = _ratio(name, p, xs, xp.broadcast_to(T, x.shape), xp)
    inner = xp.where(n0 > 0, xp.zeros_like(inner), inner)
    R = xp.where(n0 == 1, V, xp.zeros_like(V))
    at_zero = xp.broadcast_to(_slope_at_zero(name, p, R, xp), x.shape)
    return xp.where(zero, at_zero, inner)


def _yager(p: float, x: Any, xp: Any, grad: bool) -> Any:
    # g(x) = (1 - x)^p = a^p: T = max(0, 1 - S^{1/p}); ∂T/∂x_i = ((1-x_i)/(1-T))^{p-1}
    top = _power_root(1 - x, p, xp)  # S^{1/p} (= 1 - T where unclipped), scaled
    T = xp.clip(1 - top, 0.0, 1.0)
    if not grad:
        return T[..., 0]
    ok = top > 0
    # saturated (T = 0): no slope; at S = 1 exactly (e.g. ⊥(1, 0, ..., 0)) the entries at
    # x_i = 1 can only decrease, which keeps S >= 1: one-sided slope 0 there as well
    flat = (top > 1) | ((top >= 1) & (x >= 1))
    q = xp.where(ok & ~flat, (1 - x) / xp.where(ok, top, xp.ones_like(top)), xp.ones_like(x))
    d = q ** (p - 1)
    return xp.where(flat, xp.zeros_like(d), d)


def _min(x: Any, xp: Any, grad: bool) -> Any:
    T = xp.min(x, axis=-1, keepdims=True)
    if not grad:
        return T[..., 0]
    hit = _ind(x == T, x, xp)
    return hit / xp.sum(hit, axis=-1, keepdims=True)


def _product(x: Any, xp: Any, grad: bool) -> Any:
    # the product T-norm directly (exact, fewer passes than its generator -log x)
    if not grad:
        return xp.prod(x, axis=-1, keepdims=True)[..., 0]  # a 0-d array, not a scalar
    zero = x <= 0
    xs = xp.where(zero, xp.asarray(1.0, dtype=x.dtype, device=device(x)), x)
    P = xp.prod(xs, axis=-1, keepdims=True)  # the product of the non-zero entries
    n0 = xp.sum(_ind(zero, x, xp), axis=-1, keepdims=True)
    zero_c = xp.asarray(0.0, dtype=x.dtype, device=device(x))
    at_zero = xp.where(n0 == 1, P, zero_c)  # ∂/∂x_i with x_i = 0: Π_{j≠i} x_j
    inner = xp.where(n0 == 0, P / xs, zero_c)
    return xp.where(zero, at_zero, inner)


def tnorm_last_axis(name: str, p: Any, x: Any, xp: Any, grad: bool = False) -> Any:
    """The T-norm reduction of ``x`` over its last axis (or its gradient, shaped like x)."""
    x = xp.clip(x, 0.0, 1.0)
    if name == "probabilistic":
        return _product(x, xp, grad)
    if name == "max":
        return _min(x, xp, grad)
    if name == "yager":
        return _yager(p, x, xp, grad)
    T = _strict(name, p, x, xp, grad)
    # the generators' rounding (Frank's log1p near -1 in float32) may leave [0, 1] by a
    # few ulps; the range is part of the definition (chained calls check it)
    return T if grad else xp.clip(T, 0.0, 1.0)


@dataclass(frozen=True)
class TNormReduceOp(Op):
    """The T-norm (``conorm=False``) or T-conorm reduction over ``axis``."""

    family: str
    p: float | None
    axis: int
    conorm: bool
    name: ClassVar[str] = "tnorm_reduce"

    def _x(self, A: Any, xp: Any) -> Any:
        A = xp.moveaxis(A, self.axis, -1)
        return 1 - A if self.conorm else A

    def forward(self, A: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        T = tnorm_last_axis(self.family, self.p, self._x(A, xp), xp)
        return (1 - T if self.conorm else T), (A,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (A,) = residuals
        # ⊥ = 1 - T(1 - A): ∂⊥/∂A_i = ∂T/∂x_i (the two minus signs cancel)
        d = tnorm_last_axis(self.family, self.p, self._x(A, xp), xp, grad=True)
        # d moved back to ``axis`` rather than the product (torch.func's vmap over the
        # cotangent, as in jacrev, has no batching rule for moveaxis)
        return (xp.expand_dims(g, axis=self.axis) * xp.moveaxis(d, -1, self.axis),)

    #: the residual is the input itself and the VJP is array code: Hessians a.e.
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the same partials as the VJP: dy = Σ_i ∂T/∂x_i · u_i over the reduced axis
        (A,), (u,) = residuals, tangents
        if u is None:
            return None
        d = tnorm_last_axis(self.family, self.p, self._x(A, xp), xp, grad=True)
        # the partials back on ``axis`` (torch.func's vmap has no batching rule for moveaxis
        # of a tangent), then the sum over it
        return xp.sum(xp.moveaxis(d, -1, self.axis) * u, axis=self.axis)


@dataclass(frozen=True)
class TNormPairOp(Op):
    """``T(a, b)`` or ``⊥(a, b)`` elementwise: the reduction over a stacked pair."""

    family: str
    p: float | None
    conorm: bool
    name: ClassVar[str] = "tnorm_pair"

    def forward(self, a: Any, b: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        x = xp.stack([a, b], axis=-1)
        x = 1 - x if self.conorm else x
        T = tnorm_last_axis(self.family, self.p, x, xp)
        return (1 - T if self.conorm else T), (a, b)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        a, b = residuals
        x = xp.stack([a, b], axis=-1)
        x = 1 - x if self.conorm else x
        d = tnorm_last_axis(self.family, self.p, x, xp, grad=True)
        return (g * d[..., 0], g * d[..., 1])

    #: the residuals are the inputs themselves and the VJP is array code: Hessians a.e.
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # dy = ∂T/∂a · u_a + ∂T/∂b · u_b, the partials of the VJP
        (a, b), (ua, ub) = residuals, tangents
        if ua is None and ub is None:
            return None
        x = xp.stack([a, b], axis=-1)
        x = 1 - x if self.conorm else x
        d = tnorm_last_axis(self.family, self.p, x, xp, grad=True)
        out = None if ua is None else d[..., 0] * ua
        if ub is not None:
            out = d[..., 1] * ub if out is None else out + d[..., 1] * ub
        return out


def _check_unit(A: Any, name: str, check_finite: bool) -> tuple[Any, Any, Any]:
    A, xp, out_dtype = check_scores(A, name=name, min_ndim=0, check_finite=check_finite)
    be = backend_for(A)
    if check_finite and not be.is_traced(A):
        inside = xp.all((A >= 0) & (A <= 1))  # a tracer for a constant used inside jax.jit
        if not be.is_traced(inside) and not bool(inside):
            raise ValueError(f"{name} must lie in [0, 1] (probabilities)")
    return A, xp, out_dtype


def _pair(name: Any, a: Any, b: Any, p: Any, check_finite: bool, conorm: bool) -> Bound:
    family, p = check_family(name, p)
    a, xp, out_dtype = _check_unit(a, "a", check_finite)
    if isinstance(b, int | float) and not isinstance(b, bool):
        b = xp.asarray(float(b), dtype=a.dtype, device=device(a))
    b, _, _ = _check_unit(b, "b", check_finite)
    check_same_device({"a": a, "b": b})
    b = xp.astype(b, a.dtype)
    check_broadcastable({"a": a, "b": b})
    a, b = xp.broadcast_arrays(a, b)
    return Bound(TNormPairOp(family, p, conorm), (a, b), out_dtype)


def _reduce(name: Any, A: Any, axis: Any, p: Any, check_finite: bool, conorm: bool) -> Bound:
    family, p = check_family(name, p)
    A, xp, out_dtype = _check_unit(A, "A", check_finite)
    if A.ndim == 0:
        raise ValueError("A must have at least one dimension (the axis reduced over)")
    # negative: counted from the end, so that batch axes prepended by vmap keep it right
    axis = check_int(axis, name="axis", low=-A.ndim, high=A.ndim - 1) % A.ndim - A.ndim
    if A.shape[axis] == 0:
        raise ValueError(f"A must be non-empty along axis {axis}, got shape {tuple(A.shape)}")
    return Bound(TNormReduceOp(family, p, axis, conorm), (A,), out_dtype)


_PARAMS = """
    Parameters
    ----------
    name : str
        One of :data:`NAMES` (``"max"``, ``"probabilistic"``, ``"einstein"``,
        ``"hamacher"``, ``"frank"``, ``"yager"``, ``"aczel_alsina"``, ``"dombi"``,
        ``"schweizer_sklar"``).
"""


@op_function
def tconorm(
    name: str, a: Any, b: Any, /, p: float | None = None, *, check_finite: bool = True
) -> Bound:
    r"""The T-conorm (relaxed OR) :math:`\bot(a, b) = 1 - \top(1 - a, 1 - b)`, elementwise.

    See the module docstring for the nine families (GenDR, Petersen et al., CVPR 2022,
    §3.3). ``a`` and ``b`` are probabilities in [0, 1] and broadcast together;
    ``b`` may be a Python number. Gradients flow to both.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    a : array
        Probabilities in [0, 1].
    b : array or float
        Probabilities in [0, 1], broadcast against ``a``.
    p : float, optional
        The family's parameter (``None``: :data:`DEFAULT_P`; must be ``None`` for
        ``max``, ``probabilistic``, ``einstein``).
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs (skipped when traced).

    Returns
    -------
    array
        The broadcast shape of ``a`` and ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.fuzzy import tconorm
    >>> tconorm("probabilistic", np.array([0.5, 0.2]), 0.5)   # a + b - ab
    array([0.75, 0.6 ])
    >>> float(tconorm("yager", np.array(0.6), 0.8, p=1.0))     # min(1, a + b)
    1.0
    """
    return _pair(name, a, b, p, check_finite, True)


@op_function
def tnorm(
    name: str, a: Any, b: Any, /, p: float | None = None, *, check_finite: bool = True
) -> Bound:
    r"""The T-norm (relaxed AND) :math:`\top(a, b)`, elementwise (the dual of :func:`tconorm`).

    ``max``'s T-norm is the minimum, ``probabilistic``'s the product :math:`ab`,
    ``einstein``'s :math:`ab/(2 - a - b + ab)` (GenDR, Petersen et al., CVPR 2022).

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    a : array
        Probabilities in [0, 1].
    b : array or float
        Probabilities in [0, 1], broadcast against ``a``.
    p : float, optional
        The family's parameter (``None``: :data:`DEFAULT_P`).
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs (skipped when traced).

    Returns
    -------
    array
        The broadcast shape of ``a`` and ``b``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.fuzzy import tnorm
    >>> tnorm("probabilistic", np.array([0.5, 0.2]), 0.5)
    array([0.25, 0.1 ])
    >>> tnorm("max", np.array([0.5, 0.2]), 0.3)
    array([0.3, 0.2])
    """
    return _pair(name, a, b, p, check_finite, False)


@op_function
def tconorm_reduce(
    name: str, A: Any, /, axis: int = -1, p: float | None = None, *, check_finite: bool = True
) -> Bound:
    r"""The T-conorm of all entries of ``A`` along ``axis``: :math:`\bot_i A_i`.

    GenDR's silhouette aggregation :math:`\alpha = \bot_t A_t` (Petersen et al.,
    CVPR 2022). Evaluated through the generator in one pass (associativity makes
    it equal to the sequential fold); the VJP is the closed form
    :math:`\partial \alpha / \partial A_i = g'(1 - A_i)/g'(1 - \alpha)` (module
    docstring), e.g. :math:`(1 - \alpha)/(1 - A_i)` for ``probabilistic``, with the
    exact one-sided derivative for entries equal to 1.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    A : array
        Probabilities in [0, 1].
    axis : int
        The axis reduced over (removed from the result).
    p : float, optional
        The family's parameter (``None``: :data:`DEFAULT_P`).
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs (skipped when traced).

    Returns
    -------
    array
        ``A``'s shape without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.fuzzy import tconorm_reduce
    >>> A = np.array([[0.5, 0.5, 0.5], [0.1, 0.0, 1.0]])
    >>> tconorm_reduce("probabilistic", A)        # 1 - Π(1 - A)
    array([0.875, 1.   ])
    >>> tconorm_reduce("max", A, axis=0)
    array([0.5, 0.5, 1. ])
    """
    return _reduce(name, A, axis, p, check_finite, True)


@op_function
def tnorm_reduce(
    name: str, A: Any, /, axis: int = -1, p: float | None = None, *, check_finite: bool = True
) -> Bound:
    r"""The T-norm of all entries of ``A`` along ``axis``: :math:`\top_i A_i` (see
    :func:`tconorm_reduce`; GenDR, Petersen et al., CVPR 2022).

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    A : array
        Probabilities in [0, 1].
    axis : int
        The axis reduced over (removed from the result).
    p : float, optional
        The family's parameter (``None``: :data:`DEFAULT_P`).
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs (skipped when traced).

    Returns
    -------
    array
        ``A``'s shape without ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.fuzzy import tnorm_reduce
    >>> tnorm_reduce("probabilistic", np.array([0.5, 0.5, 0.8]))   # Π A
    array(0.2)
    """
    return _reduce(name, A, axis, p, check_finite, False)
