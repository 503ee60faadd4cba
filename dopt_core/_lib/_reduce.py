"""Batch reductions of per-instance losses, and the matching VJP (shared by the losses
of decision-focused learning: PG, pool, regularised FY and CaVE losses)."""

from __future__ import annotations

from typing import Any

__all__ = ["REDUCTIONS", "reduce_batch", "reduced_vjp", "scaled_norm"]

REDUCTIONS = ("mean", "sum", "none")


def reduce_batch(per: Any, grad: Any, reduction: str, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
    """``(reduced loss, (gradient of the reduced loss,))`` from the per-instance losses
    ``per`` and their gradients ``grad`` (shaped ``(*batch, *event)``)."""
    if reduction == "sum":
        return xp.sum(per), (grad,)
    if reduction == "mean":
        count = 1
        for s in per.shape:
            count *= int(s)
        return xp.mean(per), (grad / count,)
    return per, (grad,)


def reduced_vjp(grad: Any, g: Any, reduction: str, event_ndim: int, *, xp: Any) -> Any:
    """The cotangent ``g`` (a scalar, or one value per instance) times the stored gradient."""
    if reduction != "none":
        return g * grad
    return xp.reshape(g, (*g.shape, *([1] * event_ndim))) * grad


def scaled_norm(x: Any, *, axes: Any = None, xp: Any) -> tuple[Any, Any, Any]:
    """The Euclidean norm over ``axes`` (all by default) in parts that neither overflow nor
    underflow: ``‖x‖ = s · r`` with ``s = max|x|`` and ``r = ‖x/s‖`` in ``[1, √n]``,
    returned as ``(s, r, x/s)`` with the reduced axes kept. Where ``s = 0``: ``r = 0``
    and ``x/s = 0``."""
    s = xp.max(xp.abs(x), axis=axes, keepdims=True)
    xs = x / xp.where(s > 0, s, xp.ones_like(s))
    return s, xp.sqrt(xp.sum(xs * xs, axis=axes, keepdims=True)), xs
