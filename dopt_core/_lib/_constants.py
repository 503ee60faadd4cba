"""Static NumPy tables (index arrays, masks) as arrays of a namespace, converted once.

Ops with a fixed structure (sorting networks, merge schedules) use many small constant
arrays; converting them again on every call costs more than the arithmetic for small
inputs. :class:`DeviceConstants` keeps the converted arrays next to the tables that
own them (so that a cache entry lives exactly as long as its tables), keyed by
namespace, device and dtype.

A function whose result depends only on its (hashable, static) arguments, and that
builds or fetches such constant arrays, is registered with :func:`static_table`. The
plugins tell their compilers about them through :func:`on_static_table` (the torch
plugin marks each with ``torch.compiler.assume_constant_result``), so that a compiled
graph calls the function once while tracing and keeps its arrays as constants instead of
tracing the NumPy code, the cache and the lock behind it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["DeviceConstants", "on_static_table", "static_table"]

_STATIC_TABLES: list[Callable[..., Any]] = []
_MARKERS: list[Callable[[Callable[..., Any]], Any]] = []


def static_table(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` as a static table (see the module docstring) and return it.

    ``fn`` must be a pure function of hashable arguments (strings, ints, namespaces,
    devices, dtypes) that returns arrays, ints and tuples of them, the same on every call.
    """
    _STATIC_TABLES.append(fn)
    for mark in tuple(_MARKERS):
        mark(fn)
    return fn


def on_static_table(mark: Callable[[Callable[..., Any]], Any]) -> None:
    """Call ``mark(fn)`` for every static table, now and when one is registered later.

    A plugin uses it to tell its compiler that these functions return constants (the
    torch plugin passes ``torch.compiler.assume_constant_result``).

    Parameters
    ----------
    mark : callable
        Called once with each static-table function; it may set attributes on the
        function (its return value is ignored).

    Examples
    --------
    >>> from dopt_core.backend import on_static_table
    >>> seen = []
    >>> on_static_table(lambda fn: seen.append(fn.__name__))
    >>> "network_index" in seen   # the sorting networks' index tables
    True
    """
    _MARKERS.append(mark)
    for fn in tuple(_STATIC_TABLES):
        mark(fn)


class DeviceConstants:
    """A per-owner memo of ``xp.asarray(table, device=dev, dtype=dtype)``.

    Nothing is memoised where the device is unknown (``None``: JAX tracers, whose
    default device may change between calls), where the device is not hashable, or
    where the new array is a PyTorch inference tensor (it could not be used by autograd
    outside ``torch.inference_mode``).
    """

    def __init__(self) -> None:
        self._memo: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def rows(
        self, name: str, table: np.ndarray, xp: Any, dev: Any, dtype: Any = None
    ) -> Sequence[Any]:
        """The rows of the 2-D ``table`` as arrays of ``xp`` on ``dev``."""
        return self._get(
            (name, "rows"), xp, dev, dtype, lambda: _convert_rows(table, xp, dev, dtype)
        )

    def array(self, name: str, table: np.ndarray, xp: Any, dev: Any, dtype: Any = None) -> Any:
        """``table`` as an array of ``xp`` on ``dev``."""
        return self._get((name, "array"), xp, dev, dtype, lambda: _convert(table, xp, dev, dtype))

    def _get(self, name: Any, xp: Any, dev: Any, dtype: Any, make: Any) -> Any:
        if dev is None:
            return make()
        key = (name, xp, dev, dtype)
        try:
            with self._lock:
                hit = self._memo.get(key)
        except TypeError:  # an unhashable device or dtype
            return make()
        if hit is not None:
            return hit
        out = make()
        first = out[0] if isinstance(out, list) and out else out
        is_inference = getattr(first, "is_inference", None)
        if callable(is_inference) and is_inference():
            return out
        with self._lock:
            return self._memo.setdefault(key, out)


def _convert(table: np.ndarray, xp: Any, dev: Any, dtype: Any) -> Any:
    if dtype is None:
        return xp.asarray(table, device=dev)
    return xp.asarray(table, dtype=dtype, device=dev)


def _convert_rows(table: np.ndarray, xp: Any, dev: Any, dtype: Any) -> list[Any]:
    return [_convert(row, xp, dev, dtype) for row in table]
