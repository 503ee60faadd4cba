"""The JAX adapter: PRNG keys, devices, tracer awareness, host callbacks."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dopt_core.backend import Backend, int_seed, type_name

from ._callback import host_call
from ._vjp import apply_op


def as_key(rng: Any) -> Any:
    """A JAX key from ``rng`` (a key, or an int seed); clear errors for anything else."""
    if rng is None:
        raise ValueError("rng is required for JAX arrays (JAX has no global random state): pass a key or an int seed")
    seed = int_seed(rng)
    if seed is not None:
        return jax.random.key(seed)
    if isinstance(rng, jax.Array):
        typed = jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
        raw = rng.dtype == jnp.uint32 and rng.shape[-1:] == (2,)
        if (typed and rng.ndim == 0) or (raw and rng.ndim == 1):
            return rng
        if typed or raw:
            n = math.prod(rng.shape if typed else rng.shape[:-1])
            raise ValueError(
                f"rng must be one JAX key, got an array of {n} keys (shape {tuple(rng.shape)}), "
                "e.g. from jax.random.split: pass one of them (keys[0]), or jax.vmap over them"
            )
    raise TypeError(
        "rng must be a jax.random.key, a numpy.random.Generator or an int seed for JAX arrays, "
        f"got {type_name(rng)}"
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

    def first_argmax(self, x: Any) -> Any:
        # the hook of dopt_core._lib._scatter.first_argmax: jnp.argmax's variadic
        # (value, index) reduction is slow in XLA on CPU; a max, a comparison and a min
        # over the indices fuse, with the same result (lowest index among ties; the
        # first NaN, where the max is NaN and nothing else compares equal to it)
        top = jnp.max(x, axis=-1, keepdims=True)
        hit = (x == top) | jnp.isnan(x)
        n = x.shape[-1]
        return jnp.min(jnp.where(hit, jnp.arange(n, dtype=jnp.int32), n), axis=-1)

    def draws_on_host(self, rng: Any) -> bool:
        return isinstance(rng, np.random.Generator)

    def native_draw(self, rng: Any, kind: str, shape: tuple[int, ...], *, like: Any) -> Any:
        key, dtype = as_key(rng), like.dtype
        if kind == "normal":
            return jax.random.normal(key, shape, dtype)
        if kind == "uniform":
            return jax.random.uniform(key, shape, dtype)
        return jax.random.exponential(key, shape, dtype)

    def native_gamma(
        self, rng: Any, concentration: float, shape: tuple[int, ...], *, like: Any
    ) -> Any:
        return jax.random.gamma(as_key(rng), concentration, shape, like.dtype)

    def native_vjp(self, fn: Any, theta: Any, cotangent: Any) -> Any:
        def pulled(t: Any, g: Any) -> Any:
            return jax.vjp(fn, t)[1](g)[0]

        try:  # one compiled program (eagerly, JAX would dispatch every primitive alone)
            return jax.jit(pulled)(theta, cotangent)
        except jax.errors.ConcretizationTypeError:  # fn reads values: differentiate eagerly
            return pulled(theta, cotangent)

    def native_grad_hessian(self, fn: Any, y: Any, *, hessian: bool) -> Any:
        def gradient(t: Any) -> Any:
            values, pull = jax.vjp(fn, t)
            return pull(jnp.ones_like(values))[0], values

        def run(t: Any) -> Any:
            if not hessian:
                g, values = gradient(t)
                return values, g, None
            # reverse over reverse: works for ops with a custom VJP or a custom JVP
            g, pull, values = jax.vjp(gradient, t, has_aux=True)
            eye = jnp.eye(t.shape[-1], dtype=t.dtype)
            rows = [pull(jnp.broadcast_to(eye[j], t.shape))[0] for j in range(t.shape[-1])]
            return values, g, jnp.stack(rows, axis=-2)

        out = run(y)  # traced inside the caller's jit; eagerly, fn's own ops are compiled
        return tuple(None if a is None else jax.lax.stop_gradient(a) for a in out)

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

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
