"""The one module that imports from array-api-compat.

Everything else in :mod:`dopt_core` takes namespace helpers from here, so that
swapping or vendoring array-api-compat is a one-file change.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_jax_array,
    is_lazy_array,
    is_numpy_array,
    is_torch_array,
)
from array_api_compat import device as _device

__all__ = [
    "array_namespace",
    "device",
    "index_dtype",
    "is_array_api_obj",
    "is_array_api_strict_namespace",
    "is_cupy_array",
    "is_jax_array",
    "is_lazy_array",
    "is_numpy_array",
    "is_torch_array",
]


def device(x: Any) -> Any:
    """Device of ``x``, or ``None`` where it cannot be read (a JAX tracer under ``jit``).

    Creation functions accept ``device=None`` as "the default device", which is what
    JAX uses while tracing.
    """
    try:
        return _device(x)
    except Exception:  # noqa: BLE001 - tracers refuse to report a device
        return None


# namespaces whose default integer dtype never changes at run time (JAX's follows the
# x64 flag, which can be switched at any time): index_dtype is cached for them
_FIXED_INDEX_DTYPE = ("numpy", "array_api_compat.numpy", "array_api_compat.torch")
_INDEX_DTYPES: dict[str, Any] = {}


def index_dtype(xp: Any) -> Any:
    """The namespace's default integer dtype (int32 under JAX without x64, else int64):
    casting indices to int64 would warn and truncate under default JAX."""
    name = getattr(xp, "__name__", None)
    dtype = _INDEX_DTYPES.get(name) if name in _FIXED_INDEX_DTYPE else None
    if dtype is None:
        dtype = xp.asarray(0).dtype
        if name in _FIXED_INDEX_DTYPE:
            _INDEX_DTYPES[name] = dtype
    return dtype
