"""Array helpers shared by the relaxations (private; validation: ``dopt_core._lib._checks``)."""

from __future__ import annotations

from typing import Any

__all__ = ["EXP_CUTOFF", "shifted_scaled", "softmax_last", "softmax_vjp"]


#: exp(-EXP_CUTOFF) is 0 in every floating dtype: exponents below it are clipped
#: before scaling, so that no intermediate overflows
EXP_CUTOFF = 1.0e4


def shifted_scaled(theta: Any, factor: float, *, xp: Any, divide: bool = False) -> Any:
    """``factor · (θ - θ*)`` (or ``(θ - θ*) / factor``), ``θ*`` the entry maximising the
    scaled value along the last axis: every result is ``<= 0`` (0 at the maximiser) and
    ``>= -EXP_CUTOFF``. Computed without forming ``factor · θ``, which overflows for large
    finite ``θ`` and large ``|factor|`` (``θ/τ`` with small ``τ``); differences are
    clipped at ``EXP_CUTOFF / |factor|`` first (entries beyond have ``exp(...) = 0``).
    """
    scale = 1.0 / factor if divide else factor
    if scale > 0:
        d = theta - xp.max(theta, axis=-1, keepdims=True)  # <= 0
        lo = -min(EXP_CUTOFF / scale, float(xp.finfo(theta.dtype).max))
        d = xp.clip(d, min=lo)
    else:
        d = theta - xp.min(theta, axis=-1, keepdims=True)  # >= 0
        hi = min(EXP_CUTOFF / -scale, float(xp.finfo(theta.dtype).max))
        d = xp.clip(d, max=hi)
    return d / factor if divide else d * factor


def softmax_last(theta: Any, factor: float = 1.0, *, xp: Any, divide: bool = False) -> Any:
    """``softmax(factor · θ)`` (or ``softmax(θ / factor)``) along the last axis, stable for
    every finite ``θ`` and every ``factor != 0`` (see :func:`shifted_scaled`)."""
    e = xp.exp(shifted_scaled(theta, factor, xp=xp, divide=divide))
    return e / xp.sum(e, axis=-1, keepdims=True)


def softmax_vjp(y: Any, g: Any, tau: float, *, xp: Any) -> Any:
    """``Jᵀg`` of ``y = softmax(θ/τ)`` along the last axis; ``J = (diag(y) - y yᵀ)/τ`` is
    symmetric, so this is also the JVP: ``y ⊙ (g - <g, y>)/τ``."""
    return y * (g - xp.sum(g * y, axis=-1, keepdims=True)) / tau
