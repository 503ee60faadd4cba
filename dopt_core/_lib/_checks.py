"""Input validation shared by every public function.

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong value or shape) with a message that names the offending argument.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Callable
from typing import Any

from ..backend import backend_for

__all__ = [
    "check_flag",
    "check_int",
    "check_positive",
    "check_same_device",
    "check_scores",
    "solver_event_ndim",
    "solver_name",
]


def check_scores(
    theta: Any,
    *,
    name: str = "theta",
    min_ndim: int = 1,
    check_finite: bool = True,
) -> tuple[Any, Any, Any]:
    """Validate a floating-point score array.

    Returns ``(theta_compute, xp, out_dtype)``: float16/bfloat16 inputs are promoted to
    float32 for the computation and ``out_dtype`` records the dtype to cast back to
    (``None`` when no cast is needed). NaN or infinite entries raise unless
    ``check_finite=False``; the check is skipped for lazy (traced) arrays, where values
    are unknown.
    """
    backend = backend_for(theta, name=name)
    xp = backend.namespace(theta)
    dtype = theta.dtype
    if not xp.isdtype(dtype, "real floating"):
        raise TypeError(f"{name} must have a real floating dtype (float32 or float64), got {dtype}")
    out_dtype = None
    if dtype not in (xp.float32, xp.float64):
        out_dtype = dtype
        theta = xp.astype(theta, xp.float32)
    if theta.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s) (batch dims first), got shape "
            f"{tuple(theta.shape)}"
        )
    if min_ndim and theta.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty last dimension, got shape {tuple(theta.shape)}")
    if check_finite and not backend.is_traced(theta) and backend.all_finite(theta) is False:
        raise ValueError(f"{name} contains NaN or infinite values (pass check_finite=False to skip this check)")
    return theta, xp, out_dtype


def check_int(value: Any, *, name: str, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``high=None``: no upper bound)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def check_flag(value: Any, *, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_same_device(arrays: dict[str, Any]) -> None:
    """All arrays belong to the same backend and live on the same device."""
    items = list(arrays.items())
    first_name, first = items[0]
    b0 = backend_for(first, name=first_name)
    d0 = b0.device(first)
    for name, a in items[1:]:
        b = backend_for(a, name=name)
        if b is not b0:
            raise TypeError(f"{name} is a {b.name} array but {first_name} is a {b0.name} array")
        d = b.device(a)
        if d is None or d0 is None:  # unreadable while tracing (jax.jit)
            continue
        if not b0.same_device(d0, d):
            raise ValueError(f"{name} is on device {d} but {first_name} is on {d0}")


def check_positive(value: Any, *, name: str) -> float:
    """A finite real number > 0 (Python or NumPy scalar), returned as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def _unwrap(solver: Callable[..., Any]) -> Any:
    while isinstance(solver, functools.partial):
        solver = solver.func
    return solver


def solver_event_ndim(solver: Callable[..., Any], event_ndim: int | None = None) -> int:
    """Trailing axes of θ forming one instance: ``event_ndim`` if given (>= 1), else
    the solver's ``event_ndim`` attribute (through ``functools.partial``), else 1."""
    if event_ndim is not None:
        return check_int(event_ndim, name="event_ndim", low=1)
    return int(getattr(_unwrap(solver), "event_ndim", 1))


def solver_name(solver: Callable[..., Any]) -> str:
    f = _unwrap(solver)
    return getattr(f, "__name__", type(f).__name__)


def check_exact_integers(count: int, dtype: Any, *, name: str, what: str, xp: Any) -> None:
    """Refuse outputs holding integers up to ``count`` in a float ``dtype`` too short for them.

    A float with ``p`` significand bits (``eps = 2**(1-p)``) holds every integer up to
    ``2**p = 2/eps`` exactly: 2048 for float16, 256 for bfloat16, ``2**24`` for float32.
    Beyond, neighbouring integers round together (ranks would stop being a permutation),
    so ``ValueError`` names the argument, the dtype and its limit.
    """
    limit = round(2.0 / float(xp.finfo(dtype).eps))
    if count > limit:
        raise ValueError(
            f"{name}: {what} up to {count} are not exact in {dtype} (its integers are exact "
            f"only up to {limit}); use a wider floating dtype (float32 or float64)"
        )


def _broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The array-API broadcast of ``shapes`` (right-aligned; 1 stretches), ``None`` if none."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(-ndim, 0):
        sizes = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def check_broadcastable(arrays: dict[str, Any]) -> tuple[int, ...]:
    """The common broadcast shape of named arrays, or ``ValueError`` naming them all.

    ``arrays`` maps argument names to arrays (anything with ``.shape``). Checked up front
    so that every backend reports the same message instead of its own broadcast error.
    """
    shapes = {k: tuple(v.shape) for k, v in arrays.items()}
    out = _broadcast_shape(list(shapes.values()))
    if out is None:
        listed = ", ".join(f"{k} {s}" for k, s in shapes.items())
        raise ValueError(f"{' and '.join(shapes)} must broadcast to a common shape, got {listed}")
    return out
