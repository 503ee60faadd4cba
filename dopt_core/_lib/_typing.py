"""Structural types shared by the core and the plugins."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Array", "ArrayNamespace", "Device", "OpLike"]


@runtime_checkable
class Array(Protocol):
    """Any array of a namespace that follows the Python array API standard."""

    @property
    def shape(self) -> tuple[int | None, ...]: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> Any: ...


class OpLike(Protocol):
    """What the backend adapters need of an Op (:class:`dopt_core.op.Op` is one).

    ``forward(*inputs, xp) -> (y, residuals)`` and ``vjp(residuals, g, *, xp)`` (one
    gradient per input, ``None`` for a zero one). Adapters type against this protocol
    so that :mod:`dopt_core.backend` never imports :mod:`dopt_core.op` (which imports
    it).
    """

    name: str  # used in error messages

    def forward(self, *inputs: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]: ...

    def vjp(
        self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any
    ) -> tuple[Any | None, ...]: ...


ArrayNamespace = Any
Device = Any
