"""Lift a user's per-instance oracle (Gurobi, OR-Tools, custom code) into a dopt solver."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_flag, check_int, check_scores
from .._lib._compat import device
from ..backend import backend_for
from ..op import Bound, Op, OpFunction, ZeroGradient, op_function
from ._host import HostSolverOp, check_executor

__all__ = ["solver"]


def _out_event(output_shape: Any, event: tuple[int, ...]) -> tuple[int, ...]:
    if output_shape is None:
        return event
    shape = output_shape(event) if callable(output_shape) else output_shape
    try:
        return tuple(check_int(s, name="output_shape", low=0) for s in shape)
    except TypeError:
        raise TypeError(
            f"output_shape must give a tuple of non-negative ints, got {shape!r}"
        ) from None


@dataclass(frozen=True, eq=False)  # hashed by identity: fn and output_shape may be unhashable
class OracleOp(HostSolverOp, Op):
    fn: Callable[[np.ndarray], Any]
    event_ndim: int = 1
    output_shape: Any = None
    batched_kernel: bool = False
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    label: str = "solver"
    name: ClassVar[str] = "solver"

    def kernel(self, event: tuple[int, ...]) -> Any:
        return self.fn

    def out_event(self, event: tuple[int, ...]) -> tuple[int, ...]:
        return _out_event(self.output_shape, event)


@dataclass(frozen=True, eq=False)
class DeviceOracleOp(ZeroGradient, Op):
    fn: Callable[[Any], Any]
    event_ndim: int = 1
    output_shape: Any = None
    batched: bool = False
    label: str = "solver"
    name: ClassVar[str] = "solver"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        nd = theta.ndim - self.event_ndim
        batch, event = tuple(theta.shape[:nd]), tuple(theta.shape[nd:])
        out_event = _out_event(self.output_shape, event)
        # fn always sees instances stacked on axis 0 (-1 would fail for empty events)
        flat = xp.reshape(theta, (math.prod(batch), *event))
        if self.batched:
            y = self.fn(flat)
        else:
            rows = [xp.asarray(self.fn(flat[i, ...])) for i in range(flat.shape[0])]
            if rows:
                y = xp.stack(rows, axis=0)
            else:  # no instance: an empty result on theta's device
                y = xp.zeros((0, *out_event), dtype=theta.dtype, device=device(theta))
        y = xp.reshape(xp.astype(y, theta.dtype), (*batch, *out_event))
        return y, ()


def solver(
    fn: Callable[..., Any],
    *,
    host: bool = True,
    batched: bool = False,
    executor: Any = None,
    output_shape: Any = None,
    event_ndim: int = 1,
    name: str | None = None,
) -> OpFunction:
    r"""Make a batched dopt solver out of a per-instance oracle.

    ``fn`` solves one instance, ``y = fn(θ)`` — a maximiser of ``<θ, y>`` over the
    user's feasible set (their Gurobi or OR-Tools model, a heuristic, any code). The
    result is a dopt function like :func:`shortest_path_dag`: it takes ``(..., *event)``
    scores of any supported array library, runs ``fn`` on every instance and returns
    ``(..., *output_shape)`` in ``theta``'s dtype and device, with a zero derivative, so
    perturbed optimizers, Fenchel-Young losses and gradient replacements can wrap it
    on every backend (including ``jax.jit`` and ``jax.vmap``, through a host callback).

    Parameters
    ----------
    fn : callable
        With ``host=True``: takes a NumPy array of the event shape (a block of
        instances ``(k, *event)`` when ``batched=True``) and returns array-like of the
        output shape (``(k, *output_shape)``). It must be picklable to run on a process
        or cluster ``executor`` (a module-level function, not a lambda). With
        ``host=False``: takes and returns arrays of ``theta``'s own library (array-API
        code that stays on the device).
    host : bool
        Run ``fn`` on the host (one transfer each way per call) or on ``theta``'s arrays.
    batched : bool
        ``fn`` solves a whole block of instances at once.
    executor : concurrent.futures.Executor, optional
        Default executor to spread host instances over (``ProcessPoolExecutor``,
        ``dask.distributed.Client.get_executor()``...); the returned function also
        takes ``executor=`` per call.
    output_shape : tuple of int or callable, optional
        Shape of one instance's output; default: the event shape. A callable receives
        the event shape.
    event_ndim : int
        Number of trailing axes of ``theta`` forming one instance (default 1).
    name : str, optional
        Name used in error messages (default: ``fn.__name__``).

    Returns
    -------
    callable
        ``f(theta, *, executor=..., check_finite=True)``. An instance on which ``fn``
        raises makes ``f`` raise :class:`SolverError` naming the instance (under
        ``jax.jit``: NaN rows instead; see :func:`linear_program`).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> def best_pair(t):  # the two largest adjacent entries
    ...     k = int(np.argmax(t[:-1] + t[1:]))
    ...     y = np.zeros_like(t); y[k:k + 2] = 1
    ...     return y
    >>> pairs = dc.solvers.solver(best_pair)
    >>> pairs(np.array([[3.0, 0.0, 2.0, 2.0], [0.0, 1.0, 5.0, 0.0]]))
    array([[0., 0., 1., 1.],
           [0., 1., 1., 0.]])
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    host = check_flag(host, name="host")
    batched = check_flag(batched, name="batched")
    default_executor = check_executor(executor)
    event_ndim = check_int(event_ndim, name="event_ndim", low=0)
    if output_shape is not None and not callable(output_shape):
        try:
            output_shape = tuple(check_int(s, name="output_shape", low=0) for s in output_shape)
        except TypeError:
            raise TypeError(
                "output_shape must be a tuple of non-negative ints or a callable"
            ) from None
    if not host and default_executor is not None:
        raise ValueError("executor applies to host=True solvers only")
    label = name if name is not None else getattr(fn, "__name__", "solver")

    def bind(
        theta: Any, /, *, executor: Any = default_executor, check_finite: bool = True
    ) -> Bound:
        theta, _, out_dtype = check_scores(theta, min_ndim=event_ndim, check_finite=check_finite)
        if not host:
            if executor is not None:
                raise ValueError("executor applies to host=True solvers only")
            return Bound(
                DeviceOracleOp(fn, event_ndim, output_shape, batched, label), (theta,), out_dtype
            )
        traced = backend_for(theta).is_traced(theta)
        op = OracleOp(
            fn, event_ndim, output_shape, batched, check_executor(executor), traced, None, label
        )
        return Bound(op, (theta,), out_dtype)

    return op_function(
        bind,
        name=label,
        doc=f"dopt solver lifted from {label!r} (see dopt_core.solvers.solver).",
        event_ndim=event_ndim,
        module=getattr(fn, "__module__", __name__),
    )
