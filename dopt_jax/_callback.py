"""Host code inside JAX programs: ``jax.pure_callback`` with an explicit vmap method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def host_call(func: Callable[..., Any], *inputs: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``func(*numpy_inputs)`` as a ``jax.pure_callback``, or directly when nothing is traced.

    dopt's host functions are batched over leading dimensions, so under ``vmap`` every
    input is broadcast to carry the mapped axis in front (``vmap_method="broadcast_all"``)
    and the function runs once for the whole batch, not in a Python loop.

    Outside tracing (every input a concrete array) ``func`` runs directly on the host
    and its result is put on ``inputs[0]``'s device: an exception it raises (a
    :class:`~dopt_core.solvers.SolverError`) reaches the caller as itself, not wrapped
    in JAX's ``JaxRuntimeError: INTERNAL: CpuCallback error``. Under tracing a callback
    cannot raise an error the caller can catch, which is why dopt's host solvers bound
    on traced arrays return NaN rows for failing instances instead.

    Parameters
    ----------
    func : callable
        ``func(*numpy_arrays) -> numpy.ndarray``, pure, batched over leading axes.
    *inputs : jax.Array
        Its inputs (tracers under ``jit`` and ``vmap``).
    shape : tuple of int
        The exact shape of the result.
    dtype : dtype
        Its dtype.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from dopt_jax import host_call
    >>> f = jax.jit(lambda x: host_call(lambda a: np.sort(a, axis=-1), x, shape=x.shape, dtype=x.dtype))
    >>> f(jnp.array([[3.0, 1.0], [0.0, 2.0]])).tolist()
    [[1.0, 3.0], [0.0, 2.0]]
    """
    np_dtype = np.dtype(jax.numpy.dtype(dtype))
    if not any(isinstance(x, jax.core.Tracer) for x in inputs):
        return _eager(func, inputs, tuple(shape), np_dtype)

    def callback(*arrays: Any) -> np.ndarray:
        out = func(*(np.asarray(a) for a in arrays))
        return np.asarray(out, dtype=np_dtype)

    spec = jax.ShapeDtypeStruct(tuple(shape), np_dtype)
    return jax.pure_callback(callback, spec, *inputs, vmap_method="broadcast_all")


def _eager(func: Callable[..., Any], inputs: tuple[Any, ...], shape: tuple[int, ...], dtype: np.dtype) -> Any:
    out = np.asarray(func(*(np.asarray(x) for x in inputs)), dtype=dtype)
    if out.shape != shape:  # what pure_callback would refuse
        raise ValueError(f"host function returned shape {out.shape}, but the caller declared {shape}")
    like = inputs[0]
    devices = like.devices() if isinstance(like, jax.Array) else set()
    if len(devices) == 1:
        return jax.device_put(out, next(iter(devices)))
    return jax.numpy.asarray(out)
