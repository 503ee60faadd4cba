"""Machinery shared by the host solvers: batching, executors, errors, static arrays.

A host solver runs NumPy/SciPy code on the host through
:func:`dopt_core.backend.host_call` (one transfer each way). Its host function
receives ``theta`` with any number of leading batch axes (under ``jax.vmap`` the
mapped axis is added in front), flattens them, solves every instance, and restores
them. :func:`solve_instances` does this once for every solver, serially or spread in
chunks over a :class:`concurrent.futures.Executor` (a ``ProcessPoolExecutor``,
``dask.distributed``'s ``Client.get_executor()``, Ray's executor...).

Errors. A failing instance raises :class:`SolverError` naming the instance (its
index in the batch shape and in the flattened batch). Under ``jax.jit`` a host
callback must not raise, so solvers bound on traced arrays ask for NaN rows instead
(``nan_on_error=True``); a failure of the executor itself (a dead worker) always
raises.

Bad values never reach a kernel. An instance containing NaN gets a NaN output row
and its kernel is not called (traced or not; eager calls only see NaN with
``check_finite=False``). An instance outside a kernel's :class:`Domain` (e.g.
positive scores for Dijkstra, which would loop on the negative cycles) raises
:class:`SolverError`, or gets a NaN row under ``nan_on_error``. Every kernel then runs
for a time bounded by its input's shape.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import backend_for, host_call
from ..op import ZeroGradient

__all__ = [
    "Domain",
    "SolverError",
    "StaticArray",
    "check_executor",
    "solve_instances",
    "static_array",
]


class SolverError(RuntimeError):
    """A solver failed on one instance (infeasible, unbounded, a user oracle raised...).

    The message names the instance: its index in the batch shape and in the flattened
    batch. Raised by every host solver, serially or through an ``executor``.
    """


@dataclass(frozen=True)
class Domain:
    """The instances a host kernel accepts, checked on the host before it runs.

    ``bad(block)`` maps a block of instances ``(k, *event)`` (NaN-free) to a boolean
    mask ``(k,)`` of the instances the kernel must not see; ``message`` says why, in
    the :class:`SolverError` raised for them (without ``nan_on_error``; with it, their
    output rows are NaN). ``bad`` must be picklable (a module-level function) to
    travel to executor workers.
    """

    bad: Callable[[np.ndarray], np.ndarray]
    message: str


class StaticArray:
    """A read-only NumPy array that is hashable by value.

    Ops are hashable values (JAX caches its wrappers by Op); graph structure and
    constraint data shared by a whole batch (edges, weights, ``A_ub``...) are stored
    in Op fields as ``StaticArray``\\ s.
    """

    __slots__ = ("_hash", "array")

    def __init__(self, array: np.ndarray) -> None:
        a = np.array(array, copy=True)
        a.flags.writeable = False
        self.array = a
        self._hash = hash((a.shape, a.dtype.str, a.tobytes()))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, StaticArray)
            and other._hash == self._hash
            and other.array.shape == self.array.shape
            and other.array.dtype == self.array.dtype
            and bool(np.array_equal(other.array, self.array))
        )

    def __repr__(self) -> str:
        return f"StaticArray(shape={self.array.shape}, dtype={self.array.dtype})"

    def __getstate__(self) -> tuple[np.ndarray, int]:
        return (self.array, self._hash)

    def __setstate__(self, state: tuple[np.ndarray, int]) -> None:
        self.array, self._hash = state


def static_array(x: Any, *, name: str, dtype: Any = None, ndim: int | None = None) -> np.ndarray:
    """A concrete NumPy copy of problem data ``x`` (any array or nested sequence).

    Problem data must be known when the solver is called: traced arrays (inside
    ``jax.jit``) raise ``TypeError`` naming the argument.
    """
    if hasattr(x, "__array_namespace__") or type(x).__module__.split(".")[0] in (
        "torch",
        "jax",
        "jaxlib",
        "cupy",
    ):
        backend = backend_for(x, name=name)
        if backend.is_traced(x):
            raise TypeError(
                f"{name} must be concrete problem data (a NumPy array or a list), not a traced array; "
                "pass it from outside jax.jit"
            )
        a = backend.to_numpy(x)
    else:
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from exc
    if a.dtype == object:
        raise TypeError(f"{name} must be a numeric array, got a ragged or object array")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {a.shape}")
    if dtype is not None:
        if np.dtype(dtype).kind in "iu":
            if a.dtype.kind == "b" or a.dtype.kind not in "iuf":
                raise TypeError(f"{name} must hold integers, got dtype {a.dtype}")
            if a.dtype.kind == "f":
                if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                    raise TypeError(f"{name} must hold integers, got non-integral values")
        else:
            if a.dtype.kind not in "iufb":
                raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
            if np.any(np.isnan(a.astype(np.float64))):
                raise ValueError(f"{name} contains NaN")
        a = a.astype(dtype)
    return a


def check_executor(executor: Any) -> Executor | None:
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            "executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor, "
            f"dask's Client.get_executor()) or None, got {type(executor).__name__}"
        )
    return executor


def _where(flat: int, batch_shape: tuple[int, ...]) -> str:
    if not batch_shape:
        return "instance () (the only one)"
    index = tuple(int(i) for i in np.unravel_index(flat, batch_shape))
    return f"instance {index} (flat index {flat})"


def _instance_axes(block: np.ndarray) -> tuple[int, ...]:
    return tuple(range(1, block.ndim))


def run_chunk(
    fn: Callable[[np.ndarray], np.ndarray],
    block: np.ndarray,
    start: int,
    batch_shape: tuple[int, ...],
    out_event: tuple[int, ...],
    name: str,
    batched: bool,
    nan_on_error: bool,
    domain: Domain | None = None,
) -> np.ndarray:
    """Solve ``block`` (instances ``start, start+1, ...``); runs in executor workers.

    Instances with a NaN, and (under ``nan_on_error``) instances outside ``domain``,
    get NaN rows without calling ``fn`` (module docstring).
    """
    k = block.shape[0]
    out = np.full((k, *out_event), np.nan, dtype=np.float64)
    if block.dtype.kind == "f":
        skip = np.isnan(block).any(axis=_instance_axes(block))
    else:
        skip = np.zeros(k, dtype=bool)
    if domain is not None and not skip.all():
        bad = np.asarray(domain.bad(block), dtype=bool) & ~skip
        if bad.any() and not nan_on_error:
            where = _where(start + int(np.flatnonzero(bad)[0]), batch_shape)
            raise SolverError(f"{name} failed on {where}: {domain.message}")
        skip |= bad
    todo = np.flatnonzero(~skip)
    if todo.size == 0:
        return out
    if batched:
        sub = block if todo.size == k else block[todo]
        try:
            res = np.asarray(fn(sub), dtype=np.float64)
            if res.shape != (todo.size, *out_event):
                raise ValueError(f"returned shape {res.shape}, expected {(todo.size, *out_event)}")
        except Exception as exc:
            if nan_on_error:
                return out
            first = _where(start, batch_shape)
            last = _where(start + k - 1, batch_shape)
            raise SolverError(
                f"{name} failed on the chunk from {first} to {last}: {type(exc).__name__}: {exc}"
            ) from exc
        out[todo] = res
        return out
    for i in todo:
        try:
            res = np.asarray(fn(block[i]), dtype=np.float64)
            if res.shape != out_event:
                raise ValueError(f"returned shape {res.shape}, expected {out_event}")
            out[i] = res
        except Exception as exc:
            if nan_on_error:
                continue
            raise SolverError(
                f"{name} failed on {_where(start + int(i), batch_shape)}: {type(exc).__name__}: {exc}"
            ) from exc
    return out


def _num_chunks(executor: Executor, n: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return max(1, math.ceil(n / chunk_size))
    workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    return max(1, min(n, 4 * int(workers)))


def solve_instances(
    fn: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    *,
    event_ndim: int,
    out_event: Sequence[int],
    name: str,
    executor: Executor | None = None,
    batched: bool = False,
    nan_on_error: bool = False,
    chunk_size: int | None = None,
    domain: Domain | None = None,
) -> np.ndarray:
    """Apply a per-instance (or, with ``batched``, per-block) NumPy solver to every instance.

    ``theta`` has shape ``(*batch, *event)`` with ``len(event) == event_ndim``; the
    result has shape ``(*batch, *out_event)`` (float64; the caller casts). With an
    ``executor`` the flattened instances are split into contiguous chunks, one task
    each; results are reassembled in order. Any failure raises :class:`SolverError`
    naming the instance (or the chunk, when the executor itself failed). Instances
    with a NaN, or outside ``domain``, are handled as in the module docstring.
    """
    out_event = tuple(int(s) for s in out_event)
    batch_shape = tuple(theta.shape[: theta.ndim - event_ndim])
    event = tuple(theta.shape[theta.ndim - event_ndim :])
    flat = theta.reshape((math.prod(batch_shape), *event))  # -1 fails for empty events
    n = flat.shape[0]
    if n == 0:
        return np.empty((*batch_shape, *out_event))
    if executor is None:
        out = run_chunk(fn, flat, 0, batch_shape, out_event, name, batched, nan_on_error, domain)
        return out.reshape((*batch_shape, *out_event))
    k = _num_chunks(executor, n, chunk_size)
    bounds = np.linspace(0, n, k + 1).astype(int)
    spans = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    futures = []
    try:
        for a, b in spans:
            block = np.ascontiguousarray(flat[a:b])
            futures.append(
                executor.submit(
                    run_chunk, fn, block, a, batch_shape, out_event, name, batched, nan_on_error, domain
                )
            )
        parts = []
        for (a, b), fut in zip(spans, futures, strict=True):
            try:
                part = np.asarray(fut.result())
            except SolverError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "SolverError":  # re-created in another process
                    raise SolverError(str(exc)) from exc
                raise SolverError(
                    f"{name}: the executor failed on the chunk from {_where(a, batch_shape)} to "
                    f"{_where(b - 1, batch_shape)}: {type(exc).__name__}: {exc}"
                ) from exc
            if part.shape != (b - a, *out_event):
                raise SolverError(
                    f"{name}: the executor returned shape {part.shape} for the chunk from "
                    f"{_where(a, batch_shape)} to {_where(b - 1, batch_shape)}, expected {(b - a, *out_event)}"
                )
            parts.append(part)
    finally:
        for fut in futures:
            fut.cancel()
    return np.concatenate(parts, axis=0).reshape((*batch_shape, *out_event))


class HostSolverOp(ZeroGradient):
    """Mixin for an Op whose forward runs a per-instance NumPy kernel on the host.

    Subclasses (frozen dataclasses that also derive from :class:`~dopt_core.op.Op`)
    define ``event_ndim``, :meth:`kernel` (a picklable function of one instance, or of
    a block of instances with ``batched_kernel = True``, so it can travel to executor
    workers), if the output shape differs from the event shape :meth:`out_event`, and
    if some finite inputs are outside the kernel's domain :meth:`domain`. They carry
    ``executor`` and ``nan_on_error`` fields.
    """

    host = True
    event_ndim: int = 1
    batched_kernel: bool = False

    def kernel(self, event: tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
        """The host function for instances of shape ``event``."""
        raise NotImplementedError

    def out_event(self, event: tuple[int, ...]) -> tuple[int, ...]:
        return event

    def domain(self) -> Domain | None:
        """Finite inputs the kernel must not see (default: none)."""
        return None

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        nd = theta.ndim - self.event_ndim
        batch, event = tuple(theta.shape[:nd]), tuple(theta.shape[nd:])
        out_event = self.out_event(event)
        kernel = self.kernel(event)
        executor = getattr(self, "executor", None)
        nan_on_error = bool(getattr(self, "nan_on_error", False))
        chunk_size = getattr(self, "chunk_size", None)
        name = getattr(self, "label", None) or getattr(self, "name", "solver")
        batched = self.batched_kernel
        event_ndim = self.event_ndim
        domain = self.domain()

        def host(t: np.ndarray) -> np.ndarray:
            out = solve_instances(
                kernel,
                t,
                event_ndim=event_ndim,
                out_event=out_event,
                name=name,
                executor=executor,
                batched=batched,
                nan_on_error=nan_on_error,
                chunk_size=chunk_size,
                domain=domain,
            )
            return out.astype(t.dtype, copy=False)

        return host_call(host, theta, shape=(*batch, *out_event), dtype=theta.dtype), ()
