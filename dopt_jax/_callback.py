"""Host code inside JAX programs: ``jax.pure_callback`` with an explicit vmap method."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def host_call(func: Callable[..., Any], *inputs: Any, shape: tuple[int, ...], dtype: Any) -> Any:
    """``func(*numpy_inputs)`` as a ``jax.pure_callback``.

    dopt's host functions are batched over leading dimensions, so under ``vmap`` every
    input is broadcast to carry the mapped axis in front (``vmap_method="broadcast_all"``)
    and the function runs once for the whole batch, not in a Python loop.

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

    def callback(*arrays: Any) -> np.ndarray:
        out = func(*(np.asarray(a) for a in arrays))
        return np.asarray(out, dtype=np_dtype)

    spec = jax.ShapeDtypeStruct(tuple(shape), np_dtype)
    return jax.pure_callback(callback, spec, *inputs, vmap_method="broadcast_all")
