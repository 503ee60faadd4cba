"""Assertion helpers and the tolerance policy shared by the tests and the conformance suite.

Tolerances scale with the dtype: ``"exact"`` ops (solvers, sorting) must agree to the
last bit; ``"float"`` ops to ``4·sqrt(eps)`` relative/absolute, the default of the
array-API test ecosystem; ``"reduction"`` ops (sums over many terms, whose rounding
order differs between backends) to ``64·eps·sqrt(n)``-style bounds expressed as a
multiple of ``sqrt(eps)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import backend_for

__all__ = ["assert_close", "max_abs_error", "to_numpy", "tolerance"]

_KINDS = ("exact", "float", "reduction")


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of any supported array (one explicit device->host transfer)."""
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x)
    return backend_for(x, name="x").to_numpy(x)


def tolerance(dtype: Any, kind: str = "float") -> tuple[float, float]:
    """``(rtol, atol)`` for comparing results of ``dtype`` computed two ways."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "exact":
        return 0.0, 0.0
    eps = float(np.finfo(np.dtype(str(dtype).rsplit(".", 1)[-1])).eps)
    scale = 4.0 if kind == "float" else 32.0
    tol = scale * eps**0.5
    return tol, tol


def max_abs_error(actual: Any, desired: Any) -> float:
    a, d = to_numpy(actual).astype(np.float64), to_numpy(desired).astype(np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - d)))


def assert_close(
    actual: Any,
    desired: Any,
    *,
    kind: str = "float",
    rtol: float | None = None,
    atol: float | None = None,
    check_dtype: bool = True,
    err_msg: str = "",
) -> float:
    """Assert shape, dtype name and values agree; return the max absolute error.

    ``actual`` may be any backend's array; ``desired`` is usually the NumPy reference.
    """
    a, d = to_numpy(actual), to_numpy(desired)
    if a.shape != d.shape:
        raise AssertionError(f"{err_msg} shape {a.shape} != expected {d.shape}")
    if check_dtype and a.dtype != d.dtype:
        raise AssertionError(f"{err_msg} dtype {a.dtype} != expected {d.dtype}")
    r, t = tolerance(d.dtype if d.dtype.kind == "f" else np.float64, kind)
    rtol = r if rtol is None else rtol
    atol = t if atol is None else atol
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=err_msg)
    return max_abs_error(a, d)
