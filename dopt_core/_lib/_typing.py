"""Structural types shared by the core and the plugins."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Array", "ArrayNamespace", "Device"]


@runtime_checkable
class Array(Protocol):
    """Any array of a namespace that follows the Python array API standard."""

    @property
    def shape(self) -> tuple[int | None, ...]: ...

    @property
    def ndim(self) -> int: ...

    @property
    def dtype(self) -> Any: ...


ArrayNamespace = Any
Device = Any
