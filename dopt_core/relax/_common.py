"""Validation and array helpers shared by the relaxations (private)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_positive", "check_real"]


def check_real(value: Any, *, name: str) -> float:
    """A finite Python float (ints and NumPy scalars accepted; bools and arrays are not)."""
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_positive(value: Any, *, name: str) -> float:
    """A finite float ``> 0``."""
    value = check_real(value, name=name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def check_choice(value: Any, *, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_in_dtype_range(value: float, *, name: str, dtype: Any, xp: Any) -> float:
    """A strength, temperature or steepness usable in ``dtype``: ``value`` and ``1/value``
    both normal numbers of the dtype, i.e. ``smallest_normal <= value <= 1/smallest_normal``
    (1.2e-38 to 8.5e37 in float32, 2.2e-308 to 4.5e307 in float64). Outside, the value
    or its inverse becomes 0 or inf in the arrays' dtype and the result NaN, while the
    op's limit (exact, or uniform) is already reached well inside the range.
    """
    tiny = float(xp.finfo(dtype).smallest_normal)
    if not tiny <= value <= 1.0 / tiny:
        raise ValueError(
            f"{name} must lie in [{tiny:.6g}, {1.0 / tiny:.6g}] for {dtype} arrays (it and "
            f"its inverse must be normal {dtype} numbers), got {value!r}"
        )
    return value


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
