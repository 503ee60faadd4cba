"""Validation and array helpers shared by the relaxations (private)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_positive", "check_real", "stable_softmax"]


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


def stable_softmax(z: Any, *, xp: Any) -> Any:
    """``softmax`` over the last axis, :math:`e^{z_i - m} / \\sum_j e^{z_j - m}` with
    :math:`m = \\max_j z_j` (the same value, without overflow in the exponentials)."""
    z = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(z)
    return e / xp.sum(e, axis=-1, keepdims=True)


def check_choice(value: Any, *, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
