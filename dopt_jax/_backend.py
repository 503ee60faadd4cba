"""The JAX adapter: PRNG keys, devices, tracer awareness, host callbacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dopt_core.backend import Backend

from ._callback import host_call
from ._vjp import apply_op


def _key(rng: Any) -> Any:
    if rng is None:
        raise ValueError("rng is required for JAX arrays (JAX has no global random state): pass a key or an int seed")
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return jax.random.key(int(rng))
    if isinstance(rng, jax.Array) and (
        jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) or (rng.dtype == jnp.uint32 and rng.shape == (2,))
    ):
        return rng
    raise TypeError(
        f"rng must be a jax.random.key, a numpy.random.Generator or an int seed for JAX arrays, got {type(rng).__name__}"
    )


class JaxBackend(Backend):
    name = "jax"
    extra = "jax"
    host_call_sees_whole_batch = False  # under vmap the callback sees one slice

    def owns(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def namespace(self, x: Any) -> Any:
        return jnp

    def is_traced(self, x: Any) -> bool:
        return isinstance(x, jax.core.Tracer)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def from_numpy(self, a: np.ndarray, *, like: Any) -> Any:
        dev = self.device(like)
        out = jnp.asarray(a)
        return jax.device_put(out, dev) if dev is not None else out

    def draw(self, rng: Any, kind: str, shape: Sequence[int], *, like: Any) -> Any:
        if isinstance(rng, np.random.Generator):
            return super().draw(rng, kind, shape, like=like)
        key, shape, dtype = _key(rng), tuple(shape), like.dtype
        if kind == "normal":
            return jax.random.normal(key, shape, dtype)
        if kind == "uniform":
            return jax.random.uniform(key, shape, dtype)
        if kind == "exponential":
            return jax.random.exponential(key, shape, dtype)
        if kind == "gumbel":  # -log(E); E can round to 0 in float32: clamp to the smallest normal
            e = jax.random.exponential(key, shape, dtype)
            return -jnp.log(jnp.maximum(e, jnp.finfo(dtype).tiny))
        return super().draw(rng, kind, shape, like=like)

    def standard_gamma(self, rng: Any, concentration: float, shape: Sequence[int], *, like: Any) -> Any:
        if isinstance(rng, np.random.Generator):
            return super().standard_gamma(rng, concentration, shape, like=like)
        return jax.random.gamma(_key(rng), concentration, tuple(shape), like.dtype)

    def native_vjp(self, fn: Any, theta: Any, cotangent: Any) -> Any:
        _, pullback = jax.vjp(fn, theta)
        return pullback(cotangent)[0]

    def apply_op(self, op: Any, *inputs: Any) -> Any:
        return apply_op(op, *inputs)

    def host_call(self, func: Any, *inputs: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        return host_call(func, *inputs, shape=shape, dtype=dtype)

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "x64": bool(jax.config.jax_enable_x64),
        }
