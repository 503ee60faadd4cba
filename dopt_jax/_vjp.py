"""One generic bridge from a core Op to ``jax.custom_vjp``.

Arrays are never ``nondiff_argnums``: the Op (a hashable value) is closed over, every
array input is a primal, and inputs the Op lists as non-differentiable (noise,
integer data) receive ``None`` cotangents.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp


@jax.custom_jvp
def _first_order_only(x: Any, *anchors: Any) -> Any:
    """Identity on ``x``; differentiating it (with respect to ``x`` or to the anchors,
    the op's float inputs) raises."""
    return x


@_first_order_only.defjvp
def _refuse_second_order(primals: Any, tangents: Any) -> Any:
    raise NotImplementedError(
        "dopt's explicit VJPs are first-order: second derivatives (jax.hessian, grad of grad, "
        "jvp of a gradient) of dopt layers are not supported"
    )


def _make(op: Any) -> Any:
    @jax.custom_vjp
    def f(*inputs: Any) -> Any:
        return op.forward(*inputs, xp=jnp)[0]

    def fwd(*inputs: Any) -> Any:
        y, residuals = op.forward(*inputs, xp=jnp)
        anchors = tuple(x for x in inputs if jnp.issubdtype(x.dtype, jnp.floating))
        return y, (residuals, anchors)

    def bwd(saved: Any, g: Any) -> Any:
        # residuals are constants to the VJP: differentiating it again would drop terms
        residuals, anchors = saved
        grads = op.vjp(residuals, g, xp=jnp)
        return tuple(None if v is None else _first_order_only(v, g, *anchors) for v in grads)

    f.defvjp(fwd, bwd)
    return f


_cached = functools.lru_cache(maxsize=512)(_make)


def _make_jitted(op: Any) -> Any:
    return jax.jit(_cached(op))


_cached_jit = functools.lru_cache(maxsize=512)(_make_jitted)


FORWARD_MODE_ERROR = (
    "{name}: dopt ops are jax.custom_vjp functions and have no forward-mode derivative yet "
    "(jax.jvp, jax.jacfwd, jax.linearize, jax.hessian); use reverse mode (jax.grad, jax.vjp, "
    "jax.jacrev)"
)


def apply_op(op: Any, *inputs: Any) -> Any:
    """Run a core Op as a ``jax.custom_vjp`` function (jit-, vmap- and grad-safe).

    Parameters
    ----------
    op : Op
        A core Op (an immutable, hashable value).
    *inputs : array
        Its array inputs.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, dopt_core as dc
    >>> from dopt_jax import apply_op
    >>> def f(t):
    ...     bound = dc.solvers.sort.bind(t)
    ...     return apply_op(bound.op, *bound.inputs)
    >>> y, vjp = jax.vjp(jax.jit(f), jnp.array([3.0, 1.0, 2.0]))
    >>> y.tolist(), vjp(jnp.array([10.0, 20.0, 30.0]))[0].tolist()
    ([1.0, 2.0, 3.0], [30.0, 10.0, 20.0])
    """
    try:
        # device ops run as one compiled XLA computation even when called eagerly (op by
        # op, every primitive of the forward would be dispatched, and compiled per shape,
        # alone); host ops stay eager so that their errors surface as dopt's own, and ops
        # that read values eagerly (Op.reads_values) keep their eager variant
        f = _cached(op) if op.host or op.reads_values else _cached_jit(op)
    except TypeError:  # an Op with an unhashable field: build the wrapper afresh
        f = _make(op)
    try:
        return f(*inputs)
    except TypeError as exc:  # "can't apply forward-mode autodiff (jvp) to a custom_vjp function."
        if "forward-mode" not in str(exc) or "custom_vjp" not in str(exc):
            raise
        raise TypeError(FORWARD_MODE_ERROR.format(name=op.name)) from exc
