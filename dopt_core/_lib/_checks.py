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
from ._compat import is_array_api_obj

__all__ = [
    "check_choice",
    "check_dtype_kind",
    "check_flag",
    "check_int",
    "check_nonnegative",
    "check_positive",
    "check_real",
    "check_same_device",
    "check_scores",
    "check_solver",
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
    if not check_dtype_kind(xp, dtype, "real floating", name=name):
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
    """An integer in ``[low, high]`` (``high=None``: no upper bound), returned as an ``int``.

    Python and NumPy integers and concrete 0-d integer arrays of any backend are
    accepted; a bool, a float, a non-scalar array raise ``TypeError``, and so does a
    traced value (``jax.jit``), with a message saying how to make it static.

    Examples
    --------
    >>> import numpy as np
    >>> check_int(np.int64(3), name="k", low=1), check_int(np.array(2), name="k", low=1)
    (3, 2)
    """
    value = _concrete_scalar(value, name=name, what="int")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {_kind(value)}") from None
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


def check_real(value: Any, *, name: str) -> float:
    """A finite real number, returned as a Python ``float``.

    The one rule for numeric hyper-parameters (σ, τ, λ, steepness, …): Python and
    NumPy reals and *concrete* 0-d real arrays of any backend (``torch.tensor(1.)``,
    ``jnp.float32(1)``) are converted to ``float``. A wrong kind — a string, ``None``,
    a bool, a complex number, a non-scalar array — raises ``TypeError``; a traced value
    (inside ``jax.jit``) raises ``TypeError`` saying the argument must be static; NaN
    and ±inf raise ``ValueError``. Every message names the argument.

    Examples
    --------
    >>> import numpy as np
    >>> check_real(np.float32(0.5), name="tau"), check_real(np.array(-2), name="shift")
    (0.5, -2.0)
    >>> check_real("a", name="tau")
    Traceback (most recent call last):
    ...
    TypeError: tau must be a real number (a Python float), got str
    """
    x = _real(value, name=name)
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {x!r}")
    return x


def check_positive(value: Any, *, name: str) -> float:
    """A finite real number :math:`> 0`, as a ``float`` (kinds as in :func:`check_real`).

    Examples
    --------
    >>> check_positive(2, name="sigma")
    2.0
    >>> check_positive(0.0, name="sigma")
    Traceback (most recent call last):
    ...
    ValueError: sigma must be a finite positive number, got 0.0
    """
    x = _real(value, name=name)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a finite positive number, got {x!r}")
    return x


def check_nonnegative(value: Any, *, name: str) -> float:
    """A finite real number ≥ 0, as a ``float`` (kinds as in :func:`check_real`).

    Examples
    --------
    >>> check_nonnegative(0, name="noise_sigma")
    0.0
    """
    x = _real(value, name=name)
    if not (math.isfinite(x) and x >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {x!r}")
    return x


def check_choice(value: Any, *, name: str, choices: tuple[str, ...], allow_none: bool = False) -> Any:
    """One of the strings ``choices`` (or ``None`` when ``allow_none``): ``TypeError`` for
    another kind, ``ValueError`` for another string.

    Examples
    --------
    >>> check_choice("mean", name="reduction", choices=("mean", "sum"))
    'mean'
    >>> check_choice(None, name="projection", choices=("mean",), allow_none=True) is None
    True
    """
    if value is None and allow_none:
        return None
    either = "None or " if allow_none else ""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {either}a string, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be {either}one of {choices}, got {value!r}")
    return value


def check_solver(solver: Any, *, name: str = "solver") -> Callable[..., Any]:
    """A callable oracle; ``TypeError`` naming ``name`` otherwise (checked at construction)."""
    if not callable(solver):
        raise TypeError(
            f"{name} must be callable (e.g. dopt_core.solvers.argmax), got {type(solver).__name__}"
        )
    return solver


def check_dtype_kind(xp: Any, dtype: Any, kind: str, *, name: str) -> bool:
    """``xp.isdtype(dtype, kind)``, with a ``TypeError`` naming ``name`` for dtypes the
    namespace cannot classify (NumPy arrays of extension dtypes such as
    ``ml_dtypes.bfloat16``, where NumPy's own ``isdtype`` raises an unrelated error).

    Examples
    --------
    >>> import numpy as np
    >>> check_dtype_kind(np, np.dtype("float32"), "real floating", name="theta")
    True
    """
    try:
        return bool(xp.isdtype(dtype, kind))
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} has dtype {dtype}, an extension dtype (e.g. from ml_dtypes) that the array "
            f"API does not cover: cast {name} to float32 or float64 first"
        ) from None


def _kind(value: Any) -> str:
    """How an error message names the kind of ``value``."""
    if is_array_api_obj(value):
        return f"{getattr(value, 'dtype', '?')} array"
    return type(value).__name__


def _concrete_scalar(value: Any, *, name: str, what: str) -> Any:
    """``value`` itself, or the Python scalar held by a concrete 0-d array of any backend.

    A traced array (``jax.jit``; torch ``meta`` tensors) has no value now: ``TypeError``
    saying that ``name`` must be static. Non-scalar arrays: ``TypeError``. Detects arrays
    by duck typing (array-api-compat), so no framework is imported.
    """
    if not is_array_api_obj(value):
        return value
    backend = backend_for(value, name=name)
    if backend.is_traced(value):
        raise TypeError(
            f"{name} must be static (a Python {what}), got a traced {backend.name} value whose "
            f"number is unknown until run time: under jax.jit, mark {name} static "
            f"(jax.jit(f, static_argnums=...) or static_argnames=({name!r},)) or close over it "
            "(functools.partial(f, ...)) instead of passing it as a traced argument"
        )
    shape = tuple(value.shape)
    if shape != ():
        raise TypeError(f"{name} must be a scalar (a Python {what}), got an array of shape {shape}")
    xp = backend.namespace(value)
    dtype = value.dtype
    if check_dtype_kind(xp, dtype, "bool", name=name):
        return bool(value)
    if check_dtype_kind(xp, dtype, "integral", name=name):
        return int(value)
    if check_dtype_kind(xp, dtype, "real floating", name=name):
        return float(value)
    raise TypeError(f"{name} must be a real number (a Python {what}), got a {dtype} array")


def _real(value: Any, *, name: str) -> float:
    """A real number (any value, finite or not) as ``float``; ``TypeError`` for other kinds."""
    if type(value) is float or type(value) is int:  # the common case, without the array test
        return float(value)
    value = _concrete_scalar(value, name=name, what="float")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (a Python float), got {_kind(value)}")
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
