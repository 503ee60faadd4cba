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

from ._compat import is_array_api_obj
from ._registry import backend_for

__all__ = [
    "check_choice",
    "check_dtype_kind",
    "check_flag",
    "check_int",
    "check_leaf_shapes",
    "check_broadcastable",
    "check_exact_integers",
    "check_in_dtype_range",
    "check_linear_output",
    "check_nonnegative",
    "check_positive",
    "check_real",
    "check_same_device",
    "check_scores",
    "default_float_dtype",
    "check_subset_size",
    "check_callable_solver",
    "solver_event_ndim",
    "solver_name",
]


def check_scores(
    theta: Any,
    *,
    name: str = "theta",
    min_ndim: int = 1,
    check_finite: bool = True,
    promote_integers: bool = False,
) -> tuple[Any, Any, Any]:
    """Validate a floating-point score array.

    With ``promote_integers=True`` (the relaxations' sorts and networks pass it) an
    integer array is first converted to the framework's default float dtype
    (:func:`default_float_dtype`); bool arrays still raise ``TypeError``.

    Returns ``(theta_compute, xp, out_dtype)``: float16/bfloat16 inputs are promoted to
    float32 for the computation and ``out_dtype`` records the dtype to cast back to
    (``None`` when no cast is needed). NaN or infinite entries raise unless
    ``check_finite=False``; the check is skipped for lazy (traced) arrays, where values
    are unknown.
    """
    backend = backend_for(theta, name=name)
    xp = backend.namespace(theta)
    dtype = theta.dtype
    if promote_integers and check_dtype_kind(xp, dtype, "integral", name=name):
        theta = xp.astype(theta, default_float_dtype(xp, theta))
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


def default_float_dtype(xp: Any, like: Any) -> Any:
    """The default real floating dtype of ``xp`` on ``like``'s device.

    This is the dtype ``xp.asarray(0.0)`` gets: float64 for NumPy,
    ``torch.get_default_dtype()`` for PyTorch, float32 or float64 for JAX depending on
    ``jax_enable_x64``.

    Examples
    --------
    >>> import numpy as np
    >>> default_float_dtype(np, np.arange(3))
    dtype('float64')
    """
    try:
        return xp.asarray(0.0, device=like.device).dtype
    except (AttributeError, TypeError):
        return xp.asarray(0.0).dtype


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


def check_subset_size(k: Any, theta: Any) -> int:
    """A subset size ``k`` in ``1..n`` for scores ``theta`` of shape ``(..., n)``."""
    return check_int(k, name="k", low=1, high=theta.shape[-1])


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


def check_callable_solver(solver: Any, *, name: str = "solver") -> Callable[..., Any]:
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

    An array without a value now (``jax.jit`` tracers, torch ``meta`` or vmapped tensors:
    ``Backend.has_value``) raises ``TypeError`` saying that ``name`` must be static. Non-scalar arrays: ``TypeError``. Detects arrays
    by duck typing (array-api-compat), so no framework is imported.
    """
    if not is_array_api_obj(value):
        return value
    backend = backend_for(value, name=name)
    if not backend.has_value(value):
        raise TypeError(
            f"{name} must be static (a Python {what}), got a traced {backend.name} value whose "
            f"number is unknown until run time: under jax.jit, mark {name} static "
            f"(jax.jit(f, static_argnums=...) or static_argnames=({name!r},)) or close over it "
            "(functools.partial(f, ...)); under torch.func.vmap or on meta tensors, pass a "
            "Python number"
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
    the solver's ``event_ndim`` attribute (through ``functools.partial``), else 1.

    The final default is an assumption for solvers that declare nothing (plain
    functions, lambdas): :func:`instance_solver` checks it on first use."""
    if event_ndim is not None:
        return check_int(event_ndim, name="event_ndim", low=1)
    declared = getattr(_unwrap(solver), "event_ndim", None)
    return 1 if declared is None else int(declared)


def solver_name(solver: Callable[..., Any]) -> str:
    f = _unwrap(solver)
    return getattr(f, "__name__", type(f).__name__)


def check_linear_output(ys: Any, eta: Any) -> None:
    """The solver's outputs ``ys`` have the shape of its inputs ``eta`` (a linear oracle).

    Perturbed maxima and Fenchel-Young losses evaluate ``<y*(η), η>``, which needs
    ``y*(η)`` shaped like ``η``; both carry a leading sample axis, left out of the
    message.
    """
    if tuple(ys.shape) != tuple(eta.shape):
        raise ValueError(
            "perturbed maxima and Fenchel-Young losses need a linear oracle whose output has "
            f"theta's shape {tuple(eta.shape[1:])}; the solver returned {tuple(ys.shape[1:])}"
        )


# ---------------------------------------------------------------------------------
# Solvers that do not declare their event_ndim
# ---------------------------------------------------------------------------------
def declares_event_ndim(solver: Callable[..., Any]) -> bool:
    """Whether ``solver`` states how many trailing axes form one instance: an
    ``event_ndim`` attribute (through ``functools.partial``), or a dopt function (whose
    instances are vectors unless it says otherwise)."""
    f = _unwrap(solver)
    if getattr(f, "event_ndim", None) is not None:
        return True
    return _is_op_function(f)


def _is_op_function(f: Any) -> bool:
    """A dopt public function (``dopt_core.op.OpFunction``; named, not imported: ``_lib``
    imports nothing above it)."""
    return any(c.__name__ == "OpFunction" and c.__module__.startswith("dopt_core") for c in type(f).__mro__)


def instance_solver(
    solver: Callable[..., Any], event_ndim: int | None = None
) -> tuple[Callable[..., Any], int]:
    """``(solver, event_ndim)`` for the estimators, losses and metrics.

    When neither ``event_ndim`` nor the solver declares the number of axes of one
    instance, each row (the last axis) is taken as an instance, and the solver comes
    back wrapped in :class:`RowInstances`, which checks that assumption on first use
    instead of letting a matrix solver's rows be summed as instances.
    """
    nd = solver_event_ndim(solver, event_ndim)
    if event_ndim is None and not declares_event_ndim(solver):
        return _row_instances(solver), nd
    return solver, nd


def _row_instances(solver: Callable[..., Any]) -> RowInstances:
    """One :class:`RowInstances` per solver (the last 64 hashable ones are kept), so that
    functions called per step (``regret``, ``normalized_regret``) check a solver once,
    not at every call."""
    try:
        return _cached_row_instances(solver)
    except TypeError:  # unhashable solver: checked at each call
        return RowInstances(solver)


@functools.lru_cache(maxsize=64)
def _cached_row_instances(solver: Callable[..., Any]) -> RowInstances:
    return RowInstances(solver)


class RowInstances:
    """A solver that declares no ``event_ndim``, assumed to solve each row on its own.

    Calling it calls the solver; the first time it sees scores ``theta`` of a new row
    length with at least two rows, it also solves up to three rows alone and checks
    that each gives its row of the batched output (the output keeps ``theta``'s
    leading axes). A solver whose instance is a matrix (``linear_assignment``, a
    Warcraft map) fails this check: it rejects a single row, or returns something
    else for it. The check then raises ``ValueError`` saying how to declare
    ``event_ndim``. Under tracing (``jax.jit``, torch ``meta`` tensors) only the
    shapes are compared, and the check runs again on the next concrete call.
    """

    event_ndim = 1

    def __init__(self, solver: Callable[..., Any]) -> None:
        self.solver = solver
        self._checked: set[tuple[Any, ...]] = set()

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return solver_name(self.solver)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RowInstances) and other.solver == self.solver

    def __hash__(self) -> int:
        try:
            return hash(self.solver)
        except TypeError:
            return id(self.solver)

    def __repr__(self) -> str:
        return f"RowInstances({self.solver!r})"

    def __call__(self, theta: Any, *args: Any, **kwargs: Any) -> Any:
        y = self.solver(theta, *args, **kwargs)
        ndim = getattr(theta, "ndim", 0)
        if args or kwargs or ndim < 2:
            return y
        key = (type(theta), int(theta.shape[-1]))
        traced = backend_for(theta).is_traced(theta)
        if (key, True) in self._checked or (traced and (key, False) in self._checked):
            return y
        self._checked.add((key, _check_row_instances(self.solver, theta, y)))
        return y


def _row_error(solver: Callable[..., Any], detail: str) -> ValueError:
    name = solver_name(solver)
    return ValueError(
        f"the solver {name} declares no event_ndim, so each row (the last axis) of theta is taken "
        f"as one instance, but it does not solve rows on their own: {detail}. If one instance "
        "spans the last k axes of theta, pass event_ndim=k (or set the solver's event_ndim "
        "attribute, or build it with dopt_core.solvers.solver(fn, event_ndim=k)); if it does "
        "solve rows on their own (non-deterministically, say), pass event_ndim=1 to skip this check"
    )


def _check_row_instances(solver: Callable[..., Any], theta: Any, y: Any) -> bool:
    """Raise unless ``solver`` applied to single rows of ``theta`` gives the rows of
    ``y = solver(theta)``; return whether values were compared (not just shapes)."""
    backend = backend_for(theta)
    xp = backend.namespace(theta)
    lead = tuple(theta.shape[:-1])
    shape = tuple(getattr(y, "shape", ()))
    if shape[: len(lead)] != lead:
        detail = (
            "its output does not keep the leading axes of its input "
            f"(input shape {tuple(theta.shape)}, output shape {shape})"
        )
        raise _row_error(solver, detail)
    count = math.prod(lead)
    if count < 2:
        return True
    out = shape[len(lead):]
    rows = xp.reshape(theta, (count, theta.shape[-1]))
    y_rows = xp.reshape(y, (count, *out))
    values = not (backend.is_traced(theta) or backend.is_traced(y))
    n = theta.shape[-1]
    for i in range(min(3, count)):
        try:
            yi = solver(rows[i : i + 1, ...])
        except Exception as exc:
            detail = f"a single row of scores (shape (1, {n})) made it raise {type(exc).__name__}: {exc}"
            raise _row_error(solver, detail) from exc
        got = tuple(getattr(yi, "shape", ()))
        if got != (1, *out):
            detail = f"a single row of scores (shape (1, {n})) gave shape {got}, not {(1, *out)}"
            raise _row_error(solver, detail)
        if values and not _same(xp, yi[0, ...], y_rows[i, ...], theta.dtype):
            detail = "a row of scores solved alone gave another output than solved with the others"
            raise _row_error(solver, detail)
    return values


def _same(xp: Any, a: Any, b: Any, dtype: Any) -> bool:
    """``a`` and ``b`` agree to float32 rounding (NaN matching NaN)."""
    try:
        a, b = xp.astype(xp.asarray(a), dtype), xp.astype(xp.asarray(b), dtype)
        close = (xp.abs(a - b) <= 1e-6 + 1e-5 * xp.abs(b)) | (xp.isnan(a) & xp.isnan(b))
        return bool(xp.all(close))
    except (TypeError, ValueError, AttributeError, RuntimeError):
        return True  # not arrays of theta's library: nothing to compare here


# ---------------------------------------------------------------------------------
# Errors from a solver called on internal (stacked) problems
# ---------------------------------------------------------------------------------
def solver_failure(
    solver: Callable[..., Any], exc: BaseException, problems: Any, *, start: int, total: int
) -> BaseException:
    """The error to raise when ``solver`` failed on ``problems``: the perturbed copies
    of the user's ``theta`` stacked along a new leading axis (samples ``start, …``
    of ``total``), a shape the user never wrote.

    A dopt function (or a ``functools.partial`` of one) is validated again on one
    problem, shaped like ``theta``, so that its own error names the user's shape;
    otherwise (or if that passes) the error gets a note saying which axis is the
    sample axis. Returns ``exc`` itself for exceptions other than ``ValueError``,
    ``TypeError`` and ``SolverError``.
    """
    kind = type(exc)
    if kind not in (ValueError, TypeError) and kind.__name__ != "SolverError":
        return exc
    one = problems[0, ...]
    if kind.__name__ != "SolverError":  # a validation error: let the solver name theta's shape
        again = _rebind(solver, one)
        if again is not None and type(again) is kind:
            return again
    stop = start + problems.shape[0] - 1
    where = f"sample {start}" if stop == start else f"samples {start}..{stop}"
    note = (
        f"{exc} [raised by {solver_name(solver)} on the perturbed problems: theta's shape "
        f"{tuple(one.shape)} with a leading sample axis of length {total} ({where} in this call), "
        f"so instance indices count the sample first]"
    )
    try:
        return kind(note)
    except Exception:  # an exception type that cannot be built from a message
        return exc


def _rebind(solver: Callable[..., Any], theta: Any) -> BaseException | None:
    """The error a dopt function's validation raises on ``theta``, or None."""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    f: Any = solver
    while True:
        if isinstance(f, functools.partial):
            args, kwargs = f.args + args, {**f.keywords, **kwargs}
            f = f.func
        elif isinstance(f, RowInstances):
            f = f.solver
        else:
            break
    bind = getattr(f, "bind", None)
    if not callable(bind) or not _is_op_function(f):
        return None
    try:
        bind(theta, *args, **kwargs)
    except (ValueError, TypeError) as err:
        return err
    return None


def check_nonempty_mean(batch_shape: tuple[int, ...], reduction: str, *, name: str) -> None:
    """``reduction="mean"`` needs at least one instance: the mean of none is 0/0.

    Raises ``ValueError`` naming the argument whose batch axes are empty."""
    if reduction == "mean" and math.prod(batch_shape) == 0:
        raise ValueError(
            f"reduction='mean' of an empty batch is undefined ({name} has batch shape "
            f"{tuple(batch_shape)}): pass at least one instance, or use reduction='sum' "
            "(0 for an empty batch) or reduction='none'"
        )


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


def check_in_dtype_range(value: float, *, name: str, dtype: Any, xp: Any) -> float:
    """A strength, temperature or steepness usable in ``dtype``: ``value`` and ``1/value``
    both normal numbers of the dtype, i.e. ``smallest_normal <= value <= 1/smallest_normal``
    (1.2e-38 to 8.5e37 in float32, 2.2e-308 to 4.5e307 in float64). Outside, the value
    or its inverse becomes 0 or inf in the arrays' dtype and the result NaN, while the
    op's limit (exact, or uniform) is already reached well inside the range.
    """
    tiny = float(xp.finfo(dtype).smallest_normal)
    if not tiny <= value <= 1.0 / tiny:
        raise ValueError(
            f"{name} must lie in [{tiny:.6g}, {1.0 / tiny:.6g}] for {dtype} arrays (it and "
            f"its inverse must be normal {dtype} numbers), got {value!r}"
        )
    return value


def check_leaf_shapes(
    got: list[tuple[int, ...]], shapes: list[tuple[int, ...]], *, lead: int, name: str
) -> None:
    """A pytree argument's leaf shapes ``got`` are ``lead`` leading axes followed by
    theta's leaf shapes ``shapes`` (``ValueError`` naming ``name`` and the leaf): equal
    total sizes with other leaf shapes would cut the flattened vector elsewhere. The one
    rule of the torch and JAX pytree front ends.

    Parameters
    ----------
    got : list of tuples
        The argument's leaf shapes, in pytree order.
    shapes : list of tuples
        theta's leaf shapes.
    lead : int
        Leading axes each leaf of the argument has first (1 for noise: the samples).
    name : str
        The argument's name in the error message.

    Examples
    --------
    >>> from dopt_core.backend import check_leaf_shapes
    >>> check_leaf_shapes([(4, 2, 3)], [(2, 3)], lead=1, name="noise")  # fine
    >>> check_leaf_shapes([(4, 3, 2)], [(2, 3)], lead=1, name="noise")
    Traceback (most recent call last):
    ...
    ValueError: noise's leaf 0 must have shape (4, 2, 3) (the leading axes, then theta's leaf shape (2, 3)), got (4, 3, 2)
    """
    for i, (have, shape) in enumerate(zip(got, shapes, strict=True)):
        if len(have) != lead + len(shape) or have[lead:] != tuple(shape):
            raise ValueError(
                f"{name}'s leaf {i} must have shape {(*have[:lead], *shape)} (the leading "
                f"axes, then theta's leaf shape {tuple(shape)}), got {have}"
            )
