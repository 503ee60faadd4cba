"""Array helpers shared by the relaxations (private; validation: ``dopt_core._lib._checks``)."""

from __future__ import annotations

from typing import Any

__all__ = ["stable_softmax"]


def stable_softmax(z: Any, *, xp: Any) -> Any:
    """``softmax`` over the last axis, :math:`e^{z_i - m} / \\sum_j e^{z_j - m}` with
    :math:`m = \\max_j z_j` (the same value, without overflow in the exponentials)."""
    z = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(z)
    return e / xp.sum(e, axis=-1, keepdims=True)
