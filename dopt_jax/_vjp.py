"""One generic bridge from a core Op to ``jax.custom_jvp`` or ``jax.custom_vjp``.

Arrays are never ``nondiff_argnums``: the Op (a hashable value) is closed over, every
array input is a primal, and inputs the Op lists as non-differentiable (noise,
integer data) receive ``None`` cotangents (``None`` tangents).

* An Op with a JVP (:func:`dopt_core.op.has_jvp`) becomes a ``jax.custom_jvp``
  function: its rule runs ``op.forward`` and the core's linear ``op.jvp``, so
  ``jax.jvp``, ``jacfwd``, ``linearize`` work, and reverse mode (``grad``, ``vjp``,
  ``jacrev``) is JAX's transposition of that linear map. Second derivatives
  (``jax.hessian``) differentiate the rule itself: right for an Op with
  ``second_order = True`` (its residuals, after ``op.reattach``, are jnp functions of
  the inputs); for the others the rule runs on ``stop_gradient`` inputs and its
  outputs pass through :func:`_first_order_only`, which raises if differentiated.
* A piecewise-constant Op (:class:`~dopt_core.op.ZeroGradient`) runs on
  ``stop_gradient`` inputs: its derivative of every order is zero (its a.e. value),
  and host solvers inside other Ops' rules (a perturbed maximum's) stay differentiable.
* The other Ops (host relaxations, straight-through, interpolation...) stay
  ``jax.custom_vjp``: first-order, reverse mode only; forward mode raises
  :func:`dopt_core.op.forward_mode_error` naming the Op.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from dopt_core.op import ZeroGradient, forward_mode_error, has_jvp


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


def _anchors(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(x for x in inputs if jnp.issubdtype(x.dtype, jnp.floating))


def _tangent(t: Any, i: int, nondiff: tuple[int, ...]) -> Any:
    if i in nondiff or isinstance(t, SymbolicZero) or t.dtype == jax.dtypes.float0:
        return None
    return t


def _make_zero(op: Any) -> Any:
    def f(*inputs: Any) -> Any:
        return op.forward(*(jax.lax.stop_gradient(x) for x in inputs), xp=jnp)[0]

    return f


def _make_jvp(op: Any) -> Any:
    smooth = bool(op.second_order)

    @jax.custom_jvp
    def f(*inputs: Any) -> Any:
        return op.forward(*inputs, xp=jnp)[0]

    def rule_impl(mask: tuple[bool, ...], primals: Any, present: Any) -> Any:
        if smooth:
            y, residuals = op.forward(*primals, xp=jnp)
            residuals = op.reattach(tuple(primals), tuple(residuals), xp=jnp)
        else:  # residuals are constants to the JVP: a second derivative would drop terms
            y, residuals = op.forward(*(jax.lax.stop_gradient(x) for x in primals), xp=jnp)
            anchors = _anchors(primals)
            y = _first_order_only(y, *anchors)
            residuals = tuple(
                _first_order_only(r, *anchors) if jnp.issubdtype(r.dtype, jnp.floating) else r
                for r in residuals
            )
        it = iter(present)
        ts = tuple(next(it) if m else None for m in mask)
        t_out = None if not any(mask) else op.jvp(tuple(residuals), ts, xp=jnp)
        if t_out is None:
            t_out = jnp.zeros_like(y)
        return y, t_out.astype(y.dtype)

    jitted: dict[tuple[bool, ...], Any] = {}

    def rule(primals: Any, tangents: Any) -> Any:
        # the rule runs as one compiled program: eager reverse mode (linearize and
        # transpose) would otherwise dispatch every primitive of it separately
        ts = tuple(_tangent(t, i, op.nondiff) for i, t in enumerate(tangents))
        mask = tuple(t is not None for t in ts)
        if mask not in jitted:
            jitted[mask] = jax.jit(functools.partial(rule_impl, mask))
        return jitted[mask](tuple(primals), tuple(t for t in ts if t is not None))

    f.defjvp(rule, symbolic_zeros=True)
    return f


def _make(op: Any) -> Any:
    if isinstance(op, ZeroGradient):
        return _make_zero(op)
    if has_jvp(op) and op.jvp_transposes_exactly:
        return _make_jvp(op)
    return _make_vjp(op)


def _make_vjp(op: Any) -> Any:
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


def _holds_callable(value: Any, depth: int = 2) -> bool:
    """Whether an Op (or a dataclass among its fields, to ``depth``) holds a callable: a
    solver, whose binder checks values that a compiled call cannot read."""
    if depth < 0 or not dataclasses.is_dataclass(value) or isinstance(value, type):
        return False
    for field in dataclasses.fields(value):
        v = getattr(value, field.name, None)
        if (callable(v) and not isinstance(v, type)) or _holds_callable(v, depth - 1):
            return True
    return False


_holds_solver = functools.lru_cache(maxsize=512)(_holds_callable)


def apply_op(op: Any, *inputs: Any) -> Any:
    """Run a core Op as a ``jax.custom_jvp`` or ``jax.custom_vjp`` function (module docstring).

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
        compiled = not (op.host or op.reads_values)
        f = _cached_jit(op) if compiled else _cached(op)
    except TypeError:  # an Op with an unhashable field: build the wrapper afresh
        f, compiled = _make(op), False
    try:
        y = f(*inputs)
    except TypeError as exc:  # "can't apply forward-mode autodiff (jvp) to a custom_vjp function."
        if "forward-mode" not in str(exc) or "custom_vjp" not in str(exc):
            raise
        raise TypeError(forward_mode_error(op)) from exc
    if compiled and _check_eagerly(op, inputs, y):
        # compiled, the solver inside was bound on tracers: its value checks were skipped
        # and a failing instance came back as NaN; run eagerly, where it raises its error
        # as it does with NumPy and torch (a genuine NaN result is returned as it is)
        return _cached(op)(*inputs)
    return y


def _check_eagerly(op: Any, inputs: tuple[Any, ...], y: Any) -> bool:
    """A concrete call of a compiled Op around a solver whose result has a NaN (one
    device read, only for such Ops)."""
    if not _holds_solver(op) or any(isinstance(x, jax.core.Tracer) for x in (*inputs, y)):
        return False
    return jnp.issubdtype(y.dtype, jnp.floating) and bool(jnp.isnan(y).any())
