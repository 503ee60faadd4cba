r"""The registry of perturbation CDFs (and their densities) used by every relaxation.

A relaxed comparison replaces the step :math:`1[x > 0]` by :math:`F(x/s)`, the
probability :math:`\Pr[s\varepsilon < x]` that a noise :math:`\varepsilon` with CDF
:math:`F` stays below :math:`x/s` (for symmetric :math:`F` also
:math:`\Pr[x + s\varepsilon > 0]`) (Petersen, "Learning with differentiable
algorithms", 2022, ch. 3; GenDR, CVPR 2022). This module holds one registry of such
CDFs, each with its density :math:`f = F'`; the one relaxed comparator built on them,
shared by the sorting networks and :func:`dopt_core.relax.soft_compare` /
``soft_min`` / ``soft_max``, is :mod:`dopt_core.relax._comparator` (:math:`F` in the
forward pass, :math:`f` in the explicit VJP).

Names, with :math:`v = x/s` (``s`` = ``scale``; the sorting networks use
``s = 1/steepness``), :math:`c` = ``shift``, :math:`k` = ``shape``:

===================== ====================================================== ==========
name                  :math:`F(v)`                                           from
===================== ====================================================== ==========
``logistic``          :math:`\sigma(v)`                                      both
``logistic_phi``      :math:`\sigma\bigl(v / (|x| + 10^{-10})^{\lambda}\bigr)` (ART)  diffsort
``gaussian``          :math:`\Phi(v) = \tfrac12 \operatorname{erfc}(-v/\sqrt2)`  both
``cauchy``            :math:`\arctan(v)/\pi + \tfrac12`                      both
``reciprocal``        :math:`\tfrac12\bigl(v/(2 + |v|) + 1\bigr)`            diffsort
``optimal``           :math:`\operatorname{clamp}(v, \pm\tfrac14) + \tfrac12 + \operatorname{sign}(v) 1[|v| > \tfrac14](\tfrac14 - \tfrac{1}{16(|v| + 10^{-10})})` diffsort
``uniform``           :math:`\operatorname{clamp}(v/2 + \tfrac12, 0, 1)`     GenDR
``cubic_hermite``     :math:`3y^2 - 2y^3`, :math:`y` = uniform's :math:`F`   GenDR
``wigner_semicircle`` :math:`\tfrac12 + (v\sqrt{1 - v^2} + \arcsin v)/\pi` on :math:`|v| < 1` GenDR
``laplace``           :math:`\tfrac12 e^{v}` (:math:`v < 0`), :math:`1 - \tfrac12 e^{-v}` GenDR
``hyperbolic_secant`` :math:`\tfrac2\pi \arctan(\tanh(v/2)) + \tfrac12`      GenDR
``reciprocal_gendr``  :math:`\tfrac12 + \tfrac12 v/(1 + |v|)`                GenDR
``gumbel_max``        :math:`\exp(-e^{-v})`                                  GenDR
``gumbel_min``        :math:`1 - \exp(-e^{v})`                               GenDR
``exponential``       :math:`1 - e^{-(v + c)}` for :math:`v + c \ge 0`       GenDR
``exponential_rev``   :math:`e^{v - c}` for :math:`v \le c`, else 1          GenDR
``gamma``             :math:`P(k, v + c)` (regularised lower incomplete gamma) GenDR
``gamma_rev``         :math:`1 - P(k, c - v)`                                GenDR
``levy``              :math:`\operatorname{erfc}\sqrt{1/(2(v + c))}` for :math:`v + c > 0` GenDR
``levy_rev``          :math:`1 - F_{\text{levy}}(-v)`                        GenDR
===================== ====================================================== ==========

The two reciprocals differ: diffsort's ``reciprocal`` is
:math:`\tfrac12(v/(2+|v|) + 1)` (density :math:`1/(2+|v|)^2`, slope ¼ at 0), GenDR's is
:math:`\tfrac12 + \tfrac12 v/(1+|v|)` (density :math:`\tfrac12/(1+|v|)^2`, slope ½ at
0); diffsort's equals GenDR's at twice the scale. Here ``"reciprocal"`` keeps diffsort's
formula so that
``sorting_network(sigmoid="reciprocal")`` reproduces diffsort, and GenDR's is
``"reciprocal_gendr"``. The diffsort names (``logistic``, ``logistic_phi``,
``gaussian``, ``reciprocal``, ``cauchy``, ``optimal``) follow diffsort's formulas
exactly; ``gaussian`` is evaluated through erfc for accuracy in the tails (it equals
diffsort's :math:`\tfrac12 + \tfrac12\operatorname{erf}` up to rounding). ``logistic_phi`` is
not a CDF of :math:`v` alone: the activation replacement trick (ICLR 2022) divides by
:math:`(|x| + 10^{-10})^\lambda` of the *unscaled* difference (``art_lambda``).
GenDR's Heaviside ("hard") is left out: it has no density.

``symmetric`` entries satisfy :math:`F(-v) = 1 - F(v)` (relaxed swaps built from them
do not depend on which wire is called ``a``). The functions below are plain array-API
code (differentiable by any framework's autodiff); :func:`cdf` and :func:`pdf` add
``scale``, ``shift``, ``shape`` and GenDR's ``squared`` option
(:math:`F(\operatorname{sign}(x) x^2/s)`).

Example
-------
>>> import numpy as np
>>> from dopt_core.relax import cdfs
>>> cdfs.cdf("cauchy", np.array([-1.0, 0.0, 1.0]))
array([0.25, 0.5 , 0.75])
>>> float(cdfs.pdf("gaussian", np.array(0.0)) * np.sqrt(2 * np.pi))
1.0
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._lib._checks import check_choice, check_dtype_kind, check_positive, check_real
from .._lib._compat import array_namespace

__all__ = [
    "CDF",
    "NAMES",
    "PRIMARY_PARAM",
    "Distribution",
    "cdf",
    "distribution",
    "erf",
    "erfc",
    "get",
    "pdf",
    "register",
    "resolve",
]

_SQRT2 = math.sqrt(2.0)
_SQRTPI = math.sqrt(math.pi)


# ---------------------------------------------------------------------------------
# special functions in the array API (the standard has no erf / incomplete gamma)
# ---------------------------------------------------------------------------------
def _erf_series(x: Any, *, xp: Any) -> Any:
    """erf for |x| <= 2 by the all-positive series (no cancellation).

    erf(x) = 2/√π e^{-x²} Σ_n 2^n x^{2n+1} / (1·3·…·(2n+1)).
    """
    x2 = 2 * x * x
    term = x
    total = x
    for n in range(1, 60):
        term = term * x2 / (2 * n + 1)
        total = total + term
    return (2 / _SQRTPI) * xp.exp(-x * x) * total


def _erfc_cf(x: Any, *, xp: Any) -> Any:
    """erfc for x >= 2 by the Laplace continued fraction (evaluated bottom-up).

    erfc(x) = e^{-x²}/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))).
    """
    acc = x
    for n in range(60, 0, -1):
        acc = x + (n / 2) / acc
    return xp.exp(-x * x) / (_SQRTPI * acc)


def erfc(x: Any, *, xp: Any = None) -> Any:
    """Complementary error function, in the array API (relative error below 3e-13 in float64).

    Parameters
    ----------
    x : array
        Real array-API array (float32 or float64).
    xp : namespace, optional
        ``x``'s namespace (found from ``x`` by default).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.cdfs import erfc
    >>> erfc(np.array([0.0, 1.0])).round(6)
    array([1.      , 0.157299])
    """
    xp = array_namespace(x) if xp is None else xp
    ax = xp.abs(x)
    small = xp.minimum(ax, xp.full_like(ax, 2.0))
    large = xp.maximum(ax, xp.full_like(ax, 2.0))
    pos = xp.where(ax < 2.0, 1 - _erf_series(small, xp=xp), _erfc_cf(large, xp=xp))
    return xp.where(x < 0, 2 - pos, pos)


def erf(x: Any, *, xp: Any = None) -> Any:
    """Error function, in the array API.

    Parameters
    ----------
    x : array
        Real array-API array (float32 or float64).
    xp : namespace, optional
        ``x``'s namespace (found from ``x`` by default).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax.cdfs import erf
    >>> erf(np.array([0.0, 1.0])).round(6)
    array([0.      , 0.842701])
    """
    xp = array_namespace(x) if xp is None else xp
    ax = xp.abs(x)
    small = xp.minimum(ax, xp.full_like(ax, 2.0))
    large = xp.maximum(ax, xp.full_like(ax, 2.0))
    pos = xp.where(ax < 2.0, _erf_series(small, xp=xp), 1 - _erfc_cf(large, xp=xp))
    return xp.where(x < 0, -pos, pos)


_GAMMA_TERMS = 120
_GAMMA_CF_DEPTH = 100


def _gammainc(k: float, u: Any, *, xp: Any) -> Any:
    """Regularised lower incomplete gamma P(k, u), 0 for u <= 0.

    Series P = u^k e^{-u} Σ_n u^n/Γ(k+n+1) for u < k + 1; above, 1 - Q with Legendre's
    continued fraction for Q (evaluated bottom-up at a fixed depth), as in Numerical
    Recipes §6.2. Accurate to ~1e-14 in float64 for 0 < k <= 20.
    """
    pos = u > 0
    us = xp.where(pos, u, xp.ones_like(u))
    lo = xp.minimum(us, xp.full_like(us, k + 1.0))
    term = xp.ones_like(lo)
    total = xp.ones_like(lo)
    for n in range(1, _GAMMA_TERMS):
        term = term * lo / (k + n)
        total = total + term
    series = xp.exp(k * xp.log(lo) - lo - math.lgamma(k + 1)) * total
    hi = xp.maximum(us, xp.full_like(us, k + 1.0))
    acc = hi + (2 * _GAMMA_CF_DEPTH + 1) - k
    for n in range(_GAMMA_CF_DEPTH, 0, -1):
        acc = hi + (2 * n - 1) - k - n * (n - k) / acc
    upper = 1 - xp.exp(k * xp.log(hi) - hi - math.lgamma(k)) / acc
    out = xp.where(us < k + 1.0, series, upper)
    return xp.where(pos, out, xp.zeros_like(out))


def _gamma_density(k: float, u: Any, *, xp: Any) -> Any:
    pos = u > 0
    us = xp.where(pos, u, xp.ones_like(u))
    d = xp.exp((k - 1) * xp.log(us) - us - math.lgamma(k))
    return xp.where(pos, d, xp.zeros_like(d))


# ---------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CDF:
    """One perturbation distribution: standardised ``F(v)`` and density ``f(v)``.

    ``F(v, p, xp)`` and ``f(v, p, xp)`` take the standardised argument ``v = x/s`` and a
    dict ``p`` of parameters (``shift``, ``shape``); :meth:`cdf` and :meth:`pdf` apply
    the scale. ``raw`` entries (``logistic_phi``) receive the unscaled ``x`` and the
    steepness ``1/s`` themselves.
    """

    name: str
    F: Callable[..., Any]
    f: Callable[..., Any]
    symmetric: bool
    source: str
    params: tuple[str, ...] = ()
    raw: bool = field(default=False)

    def cdf(self, x: Any, scale: float, p: dict[str, Any], *, xp: Any) -> Any:
        return self.cdf_steep(x, 1.0 / scale, p, xp=xp)

    def pdf(self, x: Any, scale: float, p: dict[str, Any], *, xp: Any) -> Any:
        """dF/dx at ``x`` (the density of ``s·ε``)."""
        return self.pdf_steep(x, 1.0 / scale, p, xp=xp)

    def cdf_steep(self, x: Any, steepness: float, p: dict[str, Any], *, xp: Any) -> Any:
        """``F(steepness · x)`` — diffsort's parametrisation, same rounding as diffsort.

        ``steepness · x`` is clipped to ``±V_MAX`` (:func:`clip_standardised`: no value
        with ``|steepness · x| < V_MAX`` changes), so that infinite or overflowing
        arguments give the limits 0 and 1 instead of NaN (inf/inf, inf - inf)."""
        if self.raw:
            return self.F(xp.clip(x, min=-V_MAX, max=V_MAX), steepness, p, xp)
        return self.F(clip_standardised(x, xp=xp, scale=steepness), p, xp)

    def pdf_steep(self, x: Any, steepness: float, p: dict[str, Any], *, xp: Any) -> Any:
        """``d/dx F(steepness · x)`` (argument clipped as in :meth:`cdf_steep`)."""
        if self.raw:
            return self.f(xp.clip(x, min=-V_MAX, max=V_MAX), steepness, p, xp)
        return self.f(clip_standardised(x, xp=xp, scale=steepness), p, xp) * steepness


_REGISTRY: dict[str, CDF] = {}


def register(entry: CDF) -> CDF:
    """Add a CDF to the registry (its name must be new).

    Parameters
    ----------
    entry : CDF
        The new entry, with its density ``f = F'``.

    Examples
    --------
    >>> from dopt_core.relax import cdfs
    >>> cdfs.register(cdfs.get("logistic"))
    Traceback (most recent call last):
    ValueError: a CDF named 'logistic' is already registered
    """
    if not isinstance(entry, CDF):
        raise TypeError(f"entry must be a dopt_core.relax.cdfs.CDF, got {type(entry).__name__}")
    if entry.name in _REGISTRY:
        raise ValueError(f"a CDF named {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get(name: str) -> CDF:
    """The registry entry ``name`` (``ValueError`` listing the known names otherwise).

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.

    Examples
    --------
    >>> from dopt_core.relax import cdfs
    >>> cdfs.get("gaussian").symmetric, cdfs.get("gumbel_max").symmetric
    (True, False)
    """
    return _REGISTRY[check_choice(name, name="distribution", choices=tuple(_REGISTRY))]


def _zero(v: Any, xp: Any) -> Any:
    return xp.zeros_like(v)


def _one(v: Any, xp: Any) -> Any:
    return xp.ones_like(v)


def _sigmoid(v: Any, xp: Any) -> Any:
    # stable for both signs: e^{-|v|} never overflows
    e = xp.exp(-xp.abs(v))
    return xp.where(v >= 0, 1 / (1 + e), e / (1 + e))


def _sigmoid_pdf(v: Any, xp: Any) -> Any:
    e = xp.exp(-xp.abs(v))
    return e / ((1 + e) * (1 + e))


def _uniform_y(v: Any, xp: Any) -> Any:
    return xp.clip(v / 2 + 0.5, 0.0, 1.0)


def _inside(v: Any, xp: Any) -> Any:
    return xp.astype(xp.abs(v) < 1, v.dtype)


def _wigner_root(v: Any, xp: Any) -> tuple[Any, Any, Any]:
    """``(|v| < 1, v clipped to [-1, 1], sqrt(1 - v²) or 0)``, the root taken only inside.

    ``sqrt`` and ``asin`` have infinite derivatives at ``±1``: evaluated on the clipped
    value, a forward-mode tangent would be ``0 · inf = NaN`` outside the support (JAX's
    ``jvp`` of the rule, as in ``jax.hessian``), so the outside takes them at 0 instead.
    """
    inside = xp.abs(v) < 1
    vi = xp.where(inside, v, xp.zeros_like(v))
    root = xp.where(inside, xp.sqrt(1 - vi * vi), xp.zeros_like(v))
    return inside, vi, root


def _wigner(v: Any, xp: Any) -> Any:
    inside, vi, root = _wigner_root(v, xp)
    # outside: asin(±1) = ±π/2, so F = 0 or 1
    edge = xp.where(v > 0, xp.ones_like(v), xp.zeros_like(v))
    return xp.where(inside, 0.5 + (vi * root + xp.asin(vi)) / math.pi, edge)


def _wigner_pdf(v: Any, xp: Any) -> Any:
    return (2 / math.pi) * _wigner_root(v, xp)[2]


def _laplace(v: Any, xp: Any) -> Any:
    e = 0.5 * xp.exp(-xp.abs(v))
    return xp.where(v < 0, e, 1 - e)


def _optimal(v: Any, xp: Any) -> Any:
    out = xp.clip(v, -0.25, 0.25) + 0.5
    tail = 0.25 - 1 / (16 * (xp.abs(v) + 1e-10))
    sgn = xp.astype(v > 0.25, v.dtype) - xp.astype(v < -0.25, v.dtype)
    return out + sgn * tail


def _optimal_pdf(v: Any, xp: Any) -> Any:
    a = xp.abs(v) + 1e-10
    return xp.where(xp.abs(v) > 0.25, 1 / (16 * a * a), xp.ones_like(v))


def _lo30(v: Any, xp: Any) -> Any:
    # exp(-e^{30}) is 0 in every float dtype: clipping keeps exp from overflowing
    return xp.maximum(v, xp.full_like(v, -30.0))


def _shift(p: dict[str, Any]) -> float:
    return float(p.get("shift", 0.0))


def _shape(p: dict[str, Any]) -> float:
    k = p.get("shape")
    return 2.0 if k is None else float(k)


def _exp_cdf(u: Any, xp: Any) -> Any:  # 1 - e^{-u} on u >= 0
    return xp.where(u >= 0, 1 - xp.exp(-xp.maximum(u, xp.zeros_like(u))), xp.zeros_like(u))


def _exp_pdf(u: Any, xp: Any) -> Any:
    return xp.where(u >= 0, xp.exp(-xp.maximum(u, xp.zeros_like(u))), xp.zeros_like(u))


def _levy_support(u: Any, xp: Any) -> tuple[Any, Any]:
    """``u > 0`` and ``u`` there (1 elsewhere). Below the smallest normal number both F and
    f are 0 to the dtype's precision, and ``1/(2u)`` would overflow: treated as outside."""
    pos = u > float(xp.finfo(u.dtype).smallest_normal)
    return pos, xp.where(pos, u, xp.ones_like(u))


def _levy_cdf(u: Any, xp: Any) -> Any:
    pos, us = _levy_support(u, xp)
    return xp.where(pos, erfc(xp.sqrt(1 / (2 * us)), xp=xp), xp.zeros_like(u))


def _levy_pdf(u: Any, xp: Any) -> Any:
    # exp(-1/(2u)) / (√(2π) u^{3/2}) in log form: u^{3/2} underflows long before the
    # exponential does, which gave 0/0
    pos, us = _levy_support(u, xp)
    d = xp.exp(-1 / (2 * us) - 1.5 * xp.log(us)) / math.sqrt(2 * math.pi)
    return xp.where(pos, d, xp.zeros_like(u))


#: Standardised arguments are clipped to ±V_MAX before F and f (every F is 0 or 1
#: there to float64 precision but Lévy's, within 1e-9; ``V_MAX²`` is finite in float32):
#: ``x · steepness`` may overflow to inf for finite inputs, and inf/inf or inf - inf
#: inside a formula gives NaN
V_MAX = 1e18


def clip_standardised(v: Any, *, xp: Any, scale: float = 1.0) -> Any:
    """``v · scale`` clipped to ``[-V_MAX, V_MAX]``; ``v`` is clipped first (to
    ``±V_MAX/scale``), so that the product never overflows."""
    if scale == 1.0:
        return xp.clip(v, min=-V_MAX, max=V_MAX)
    bound = V_MAX / scale
    return xp.clip(v, min=-bound, max=bound) * scale


def _art_cdf(x: Any, steep: float, p: dict[str, Any], xp: Any) -> Any:
    lam = float(p.get("art_lambda", 0.25))
    return _sigmoid(clip_standardised(x / (xp.abs(x) + 1e-10) ** lam, xp=xp, scale=steep), xp)


def _art_pdf(x: Any, steep: float, p: dict[str, Any], xp: Any) -> Any:
    # u = β x/(|x|+ε)^λ;  du/dx = β (|x| + ε - λ|x|) / (|x|+ε)^{λ+1}
    #                            = β (1 - λ|x|/a) / a^λ   (no overflow for large |x|)
    lam = float(p.get("art_lambda", 0.25))
    a = xp.abs(x) + 1e-10
    al = a**lam
    u = clip_standardised(x / al, xp=xp, scale=steep)
    du = steep * (1 - lam * xp.abs(x) / a) / al
    return _sigmoid_pdf(u, xp) * du


def _add(
    name: str,
    F: Callable[..., Any],
    f: Callable[..., Any],
    *,
    symmetric: bool,
    source: str,
    params: tuple[str, ...] = (),
) -> None:
    register(CDF(name, F, f, symmetric=symmetric, source=source, params=params))


_add(
    "logistic",
    lambda v, p, xp: _sigmoid(v, xp),
    lambda v, p, xp: _sigmoid_pdf(v, xp),
    symmetric=True,
    source="diffsort, GenDR",
)
register(
    CDF(
        "logistic_phi",
        _art_cdf,
        _art_pdf,
        symmetric=True,
        source="diffsort",
        params=("art_lambda",),
        raw=True,
    )
)
_add(
    "gaussian",
    lambda v, p, xp: 0.5 * erfc(-v / _SQRT2, xp=xp),
    lambda v, p, xp: xp.exp(-0.5 * v * v) / math.sqrt(2 * math.pi),
    symmetric=True,
    source="diffsort, GenDR",
)
_add(
    "cauchy",
    lambda v, p, xp: xp.atan(v) / math.pi + 0.5,
    lambda v, p, xp: 1 / (math.pi * (1 + v * v)),
    symmetric=True,
    source="diffsort, GenDR",
)
_add(
    "reciprocal",
    lambda v, p, xp: 0.5 * (v / (2 + xp.abs(v)) + 1),
    lambda v, p, xp: 1 / ((2 + xp.abs(v)) * (2 + xp.abs(v))),
    symmetric=True,
    source="diffsort",
)
_add(
    "optimal",
    lambda v, p, xp: _optimal(v, xp),
    lambda v, p, xp: _optimal_pdf(v, xp),
    symmetric=True,
    source="diffsort",
)
_add(
    "uniform",
    lambda v, p, xp: _uniform_y(v, xp),
    lambda v, p, xp: 0.5 * _inside(v, xp),
    symmetric=True,
    source="GenDR",
)
_add(
    "cubic_hermite",
    # y²(3 - 2y), not 3y² - 2y³: the latter rounds to 1 + 1.2e-7 in float32 near y = 1
    lambda v, p, xp: _uniform_y(v, xp) ** 2 * (3 - 2 * _uniform_y(v, xp)),
    lambda v, p, xp: 3 * _uniform_y(v, xp) * (1 - _uniform_y(v, xp)) * _inside(v, xp),
    symmetric=True,
    source="GenDR",
)
_add(
    "wigner_semicircle",
    lambda v, p, xp: _wigner(v, xp),
    lambda v, p, xp: _wigner_pdf(v, xp),
    symmetric=True,
    source="GenDR",
)
_add(
    "laplace",
    lambda v, p, xp: _laplace(v, xp),
    lambda v, p, xp: 0.5 * xp.exp(-xp.abs(v)),
    symmetric=True,
    source="GenDR",
)
_add(
    "hyperbolic_secant",
    lambda v, p, xp: (2 / math.pi) * xp.atan(xp.tanh(v / 2)) + 0.5,
    lambda v, p, xp: 1 / (math.pi * xp.cosh(xp.clip(v, -80.0, 80.0))),
    symmetric=True,
    source="GenDR",
)
_add(
    "reciprocal_gendr",
    lambda v, p, xp: 0.5 + 0.5 * v / (1 + xp.abs(v)),
    lambda v, p, xp: 0.5 / ((1 + xp.abs(v)) * (1 + xp.abs(v))),
    symmetric=True,
    source="GenDR",
)
_add(
    "gumbel_max",
    lambda v, p, xp: xp.exp(-xp.exp(-_lo30(v, xp))),
    lambda v, p, xp: xp.exp(-_lo30(v, xp) - xp.exp(-_lo30(v, xp))),
    symmetric=False,
    source="GenDR",
)
_add(
    "gumbel_min",
    lambda v, p, xp: -xp.expm1(-xp.exp(-_lo30(-v, xp))),
    lambda v, p, xp: xp.exp(-_lo30(-v, xp) - xp.exp(-_lo30(-v, xp))),
    symmetric=False,
    source="GenDR",
)
def _add_with_reverse(
    name: str, F: Callable[..., Any], f: Callable[..., Any], params: tuple[str, ...]
) -> None:
    """A GenDR law on u = v + shift and its reverse on u = shift - v:
    ``F_rev(v) = 1 - F(shift - v)``, ``f_rev(v) = f(shift - v)``."""
    _add(
        name,
        lambda v, p, xp: F(v + _shift(p), p, xp),
        lambda v, p, xp: f(v + _shift(p), p, xp),
        symmetric=False,
        source="GenDR",
        params=params,
    )
    _add(
        f"{name}_rev",
        lambda v, p, xp: 1 - F(_shift(p) - v, p, xp),
        lambda v, p, xp: f(_shift(p) - v, p, xp),
        symmetric=False,
        source="GenDR",
        params=params,
    )


_add_with_reverse(
    "exponential", lambda u, p, xp: _exp_cdf(u, xp), lambda u, p, xp: _exp_pdf(u, xp), ("shift",)
)
_add_with_reverse(
    "gamma",
    lambda u, p, xp: _gammainc(_shape(p), u, xp=xp),
    lambda u, p, xp: _gamma_density(_shape(p), u, xp=xp),
    ("shape", "shift"),
)
_add_with_reverse(
    "levy", lambda u, p, xp: _levy_cdf(u, xp), lambda u, p, xp: _levy_pdf(u, xp), ("shift",)
)

#: Every registered name, in registration order.
NAMES: tuple[str, ...] = tuple(_REGISTRY)

#: The six sigmoids of the ``diffsort`` package, with its formulas.
DIFFSORT_NAMES: tuple[str, ...] = (
    "logistic",
    "logistic_phi",
    "gaussian",
    "reciprocal",
    "cauchy",
    "optimal",
)


def make_params(
    name: str, *, shape: Any = None, shift: Any = 0.0, art_lambda: Any = 0.25
) -> dict[str, Any]:
    """Validated parameter dict for entry ``name`` (used by the public functions)."""
    entry = get(name)
    p: dict[str, Any] = {}
    if "shift" in entry.params:
        p["shift"] = check_real(shift, name="shift")
    elif check_real(shift, name="shift") != 0.0:
        raise ValueError(
            f"shift only applies to {[n for n in NAMES if 'shift' in get(n).params]}, "
            f"not to {name!r}"
        )
    if "shape" in entry.params:
        k = 2.0 if shape is None else check_positive(shape, name="shape")
        if k > 20:
            raise ValueError(f"shape must be in (0, 20] (series accuracy), got {k}")
        p["shape"] = k
    elif shape is not None:
        raise ValueError(f"shape only applies to 'gamma' and 'gamma_rev', not to {name!r}")
    if "art_lambda" in entry.params:
        lam = check_real(art_lambda, name="art_lambda")
        if not 0 <= lam < 1:
            raise ValueError(f"art_lambda must be in [0, 1), got {lam}")
        p["art_lambda"] = lam
    return p


def _floating(x: Any) -> Any:
    """``x``'s namespace, after checking its dtype is real floating (``TypeError`` otherwise:
    integer and bool arrays gave a backend-dependent dtype, or an unrelated error)."""
    xp = array_namespace(x)
    if not check_dtype_kind(xp, x.dtype, "real floating", name="x"):
        raise TypeError(f"x must have a real floating dtype (float32 or float64), got {x.dtype}")
    return xp


def _squared(x: Any, xp: Any) -> Any:
    # |x| clipped to V_MAX first: V_MAX² is finite in float32, and x² beyond it would be
    # clipped to V_MAX by the standardisation anyway (for scale <= V_MAX)
    x = xp.clip(x, min=-V_MAX, max=V_MAX)
    return xp.sign(x) * x * x


def cdf(
    name: str,
    x: Any,
    /,
    *,
    scale: float = 1.0,
    shape: float | None = None,
    shift: float = 0.0,
    art_lambda: float = 0.25,
    squared: bool = False,
) -> Any:
    r"""``F(x / scale)`` for the registry entry ``name`` (see the module docstring).

    ``squared=True`` evaluates :math:`F(\operatorname{sign}(x)\,x^2/s)` (GenDR's squared
    distances). ``x`` is any array-API array; the result has its dtype and device.

    Parameters
    ----------
    name : str
        A registry entry (:data:`NAMES`).
    x : array
        Any array-API array; the result has its dtype and device.
    scale : float > 0
        ``s``: the argument is ``x / s`` (the sorting networks use ``s = 1/steepness``).
    shape : float, optional
        ``k`` of ``gamma`` and ``gamma_rev`` (default 2; ``ValueError`` for other entries).
    shift : float
        ``c`` of the shifted entries (``exponential``, ``gamma``, ``levy`` and their
        reverses; must be 0 for the others).
    art_lambda : float in [0, 1)
        λ of ``logistic_phi`` (the activation replacement trick).
    squared : bool
        Evaluate at ``sign(x) x² / s`` (GenDR's squared distances).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import cdfs
    >>> cdfs.cdf("cauchy", np.array([-1.0, 0.0, 1.0]))   # arctan(v)/π + 1/2
    array([0.25, 0.5 , 0.75])
    """
    xp = _floating(x)
    entry = get(name)
    scale = check_positive(scale, name="scale")
    p = make_params(name, shape=shape, shift=shift, art_lambda=art_lambda)
    if not isinstance(squared, bool):
        raise TypeError(f"squared must be True or False, got {squared!r}")
    return entry.cdf(_squared(x, xp) if squared else x, scale, p, xp=xp)


def pdf(
    name: str,
    x: Any,
    /,
    *,
    scale: float = 1.0,
    shape: float | None = None,
    shift: float = 0.0,
    art_lambda: float = 0.25,
    squared: bool = False,
) -> Any:
    """The density ``d cdf(name, x, ...) / dx`` (same arguments as :func:`cdf`).

    Parameters
    ----------
    name : str
        A registry entry (:data:`NAMES`).
    x : array
        Any array-API array; the result has its dtype and device.
    scale : float > 0
        ``s``: the argument is ``x / s`` (the sorting networks use ``s = 1/steepness``).
    shape : float, optional
        ``k`` of ``gamma`` and ``gamma_rev`` (default 2; ``ValueError`` for other entries).
    shift : float
        ``c`` of the shifted entries (``exponential``, ``gamma``, ``levy`` and their
        reverses; must be 0 for the others).
    art_lambda : float in [0, 1)
        λ of ``logistic_phi`` (the activation replacement trick).
    squared : bool
        Evaluate at ``sign(x) x² / s`` (GenDR's squared distances).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import cdfs
    >>> cdfs.pdf("logistic", np.array([0.0]), scale=0.5)   # σ'(0) / s = 0.25 / 0.5
    array([0.5])
    """
    xp = _floating(x)
    entry = get(name)
    scale = check_positive(scale, name="scale")
    p = make_params(name, shape=shape, shift=shift, art_lambda=art_lambda)
    if not isinstance(squared, bool):
        raise TypeError(f"squared must be True or False, got {squared!r}")
    if squared:
        ax = xp.abs(xp.clip(x, min=-V_MAX, max=V_MAX))  # 0 · inf would be NaN
        return entry.pdf(_squared(x, xp), scale, p, xp=xp) * 2 * ax
    return entry.pdf(x, scale, p, xp=xp)


# ---------------------------------------------------------------------------------
# distributions with their shape parameters: what every `distribution=` accepts
# ---------------------------------------------------------------------------------
#: The parameter that ``("name", value)`` sets, per entry (GenDR's ``dist_shape`` for the
#: gamma laws, its shift for the exponential and Lévy laws, ART's λ for ``logistic_phi``).
PRIMARY_PARAM: dict[str, str] = {
    "logistic_phi": "art_lambda",
    "exponential": "shift",
    "exponential_rev": "shift",
    "gamma": "shape",
    "gamma_rev": "shape",
    "levy": "shift",
    "levy_rev": "shift",
}


@dataclass(frozen=True)
class Distribution:
    """A registry CDF bound to its parameters (an immutable, hashable value).

    Built by :func:`distribution` or :func:`resolve`; accepted wherever a
    ``distribution=`` (or the sorting networks' ``sigmoid=``) is.
    """

    entry: CDF
    params: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def param_dict(self) -> dict[str, float]:
        return dict(self.params)

    def cdf(self, x: Any, scale: float = 1.0) -> Any:
        """``F(x / scale)`` with the bound parameters (``scale > 0``)."""
        xp = _floating(x)
        return self.entry.cdf(x, check_positive(scale, name="scale"), self.param_dict, xp=xp)

    def pdf(self, x: Any, scale: float = 1.0) -> Any:
        """``dF(x / scale)/dx`` with the bound parameters (``scale > 0``)."""
        xp = _floating(x)
        return self.entry.pdf(x, check_positive(scale, name="scale"), self.param_dict, xp=xp)


def distribution(name: str, /, **params: Any) -> Distribution:
    """The registry entry ``name`` with parameters (``shape=``, ``shift=``, ``art_lambda=``).

    Parameters
    ----------
    name : str
        A registry entry (:data:`NAMES`).
    **params
        ``shape`` (gamma laws, in (0, 20]), ``shift`` (exponential, gamma and Lévy
        laws) or ``art_lambda`` (``logistic_phi``, in [0, 1)); others raise ``ValueError``.

    Returns
    -------
    Distribution

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import cdfs
    >>> d = cdfs.distribution("gamma", shape=1.0)      # gamma(1) = exponential
    >>> bool(np.isclose(d.cdf(np.array(1.0)), 1 - np.exp(-1.0), rtol=1e-14))
    True
    """
    unknown = set(params) - {"shape", "shift", "art_lambda"}
    if unknown:
        raise TypeError(f"unknown distribution parameter(s) {sorted(unknown)} for {name!r}")
    entry = get(name)
    return Distribution(entry, tuple(sorted(make_params(name, **params).items())))


def resolve(spec: Any, /, *, name: str = "distribution", **defaults: Any) -> Distribution:
    """A :class:`Distribution` from any accepted form of a ``distribution=`` argument.

    Accepted: a registry name (``"logistic"``; parameters from ``defaults``, e.g. the
    sorting networks' ``art_lambda=``); a pair ``("name", value)`` setting the entry's
    :data:`PRIMARY_PARAM` (``("gamma", 3.0)`` is shape 3, ``("exponential_rev", 0.5)``
    shift ½); a pair ``("name", {"shape": 3, "shift": 1})``; a :class:`Distribution`;
    a :class:`CDF` (a registry entry or a user's own, with its default parameters).

    Parameters
    ----------
    spec : str, tuple, Distribution or CDF
        The distribution.
    name : str
        The argument's name in error messages.
    **defaults
        Parameters used with a plain name.

    Returns
    -------
    Distribution

    Examples
    --------
    >>> from dopt_core.relax import cdfs
    >>> cdfs.resolve(("gamma", 3.0)).params
    (('shape', 3.0), ('shift', 0.0))
    >>> cdfs.resolve("cauchy") == cdfs.resolve(cdfs.get("cauchy"))
    True
    """
    if isinstance(spec, Distribution):
        return spec
    if isinstance(spec, CDF):
        if _REGISTRY.get(spec.name) is spec:
            return Distribution(spec, tuple(sorted(make_params(spec.name).items())))
        return Distribution(spec, ())
    if isinstance(spec, str):
        entry = get(check_choice(spec, name=name, choices=tuple(_REGISTRY)))
        kept = {k: v for k, v in defaults.items() if k in entry.params}
        return distribution(spec, **kept)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        key, value = spec
        check_choice(key, name=name, choices=tuple(_REGISTRY))
        if isinstance(value, dict):
            return distribution(key, **value)
        if key not in PRIMARY_PARAM:
            raise ValueError(
                f"{name}: {key!r} has no shape parameter (those with one: "
                f"{sorted(PRIMARY_PARAM)}); pass the name alone"
            )
        return distribution(key, **{PRIMARY_PARAM[key]: value})
    raise TypeError(
        f"{name} must be a name of dopt_core.relax.cdfs, a pair ('name', parameter), a "
        f"cdfs.Distribution or a cdfs.CDF, got {type(spec).__name__}"
    )
