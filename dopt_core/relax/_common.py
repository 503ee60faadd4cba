"""Validation and array helpers shared by the relaxations (private)."""

from __future__ import annotations

from typing import Any

__all__ = ["check_choice"]


def check_choice(value: Any, *, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
