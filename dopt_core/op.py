"""The Op protocol: a forward pass and its explicit, array-API vector-Jacobian product.

Every differentiable layer of dopt is an :class:`Op`:

.. math::

    \\texttt{forward}(x_1, \\dots, x_p) = (y, r), \\qquad
    \\texttt{vjp}(r, g) = \\bigl(J_{x_1}(y)^\\top g, \\dots, J_{x_p}(y)^\\top g\\bigr)

where ``r`` are the residuals (arrays only) that the backward pass needs and ``g``
is a cotangent shaped like ``y``. Both are written once against the array API (they
receive the namespace as ``xp=``); the plugins only wire them into their framework's
autodiff (``torch.autograd.Function``, ``jax.custom_vjp``) and never redo the math.
The ``vjp`` is the *reference gradient*: for a piecewise-constant solver it is the
almost-everywhere derivative (zero), for an estimator it is the estimator.

An Op is an immutable, hashable value (a frozen dataclass): its static parameters
(``k``, ``descending``, ``sigma``...) are fields, arrays are never fields. An Op that
runs host code (SciPy, a Python loop over instances, a user's oracle) sets
``host = True`` and routes that code through :func:`dopt_core.backend.host_call`.

Public functions are built with :func:`op_function`: the decorated function validates
its arguments and returns a :class:`Bound` (the Op and its array inputs); calling the
public function applies the Op through the array's backend, and
:func:`value_and_vjp` reuses the same binding to expose the explicit VJP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .backend import apply_op, backend_for

__all__ = ["Bound", "Op", "OpFunction", "op_function", "value_and_vjp"]


class Op:
    """Base class of dopt's differentiable operations (see the module docstring).

    Subclasses are frozen dataclasses and implement :meth:`forward` and :meth:`vjp`.
    ``nondiff`` lists input positions that never receive a gradient (noise arrays,
    integer data); their entries in the ``vjp`` result are ``None``.
    """

    name: ClassVar[str] = "op"
    host: ClassVar[bool] = False
    nondiff: ClassVar[tuple[int, ...]] = ()

    def forward(self, *inputs: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        """Return ``(y, residuals)``; ``residuals`` is a tuple of arrays."""
        raise NotImplementedError

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        """Return one gradient per input (``None`` for a zero or undefined one)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Bound:
    """An Op together with the validated array inputs it will run on.

    ``out_dtype``, when set, is the dtype the result is cast back to (float16 and
    bfloat16 inputs are computed in float32).
    """

    op: Op
    inputs: tuple[Any, ...]
    out_dtype: Any = None


class OpFunction:
    """A public dopt function: validation (the wrapped function) + an Op.

    ``f(*args, **kwargs)`` runs the Op through the backend of its first input, so
    torch and JAX autodiff use the Op's explicit VJP. ``f.bind(*args, **kwargs)``
    returns the :class:`Bound` without running it.
    """

    def __init__(self, binder: Callable[..., Bound]) -> None:
        self.bind = binder
        functools.update_wrapper(self, binder)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.bind(*args, **kwargs)
        y = apply_op(bound.op, *bound.inputs)
        if bound.out_dtype is not None:
            xp = backend_for(y).namespace(y)
            y = xp.astype(y, bound.out_dtype)
        return y

    def __repr__(self) -> str:
        return f"<dopt function {self.__name__}>"  # type: ignore[attr-defined]


def op_function(binder: Callable[..., Bound]) -> OpFunction:
    """Decorator: turn a validating binder into a public :class:`OpFunction`."""
    return OpFunction(binder)


def value_and_vjp(f: OpFunction, *args: Any, **kwargs: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Value of ``f(*args, **kwargs)`` and its explicit VJP with respect to the first input.

    The reference gradient, with no framework autodiff involved: works on any array
    namespace (NumPy first of all). Returns ``(y, vjp)`` with ``vjp(g) -> grad_theta``
    shaped like the first argument.

    Parameters
    ----------
    f : OpFunction
        A dopt function built on an Op (every public layer, ``perturbed(...)``'s result,
        your own ``@op_function``).
    *args, **kwargs
        Its arguments; the first positional one is θ.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> y, vjp = dc.value_and_vjp(dc.solvers.sort, np.array([3.0, 1.0, 2.0]))
    >>> y, vjp(np.array([10.0, 20.0, 30.0]))
    (array([1., 2., 3.]), array([30., 10., 20.]))
    """
    if not isinstance(f, OpFunction):
        raise TypeError(
            f"f must be a dopt function (built on an Op, e.g. dopt_core.solvers.sort), "
            f"got {type(f).__name__}"
        )
    bound = f.bind(*args, **kwargs)
    theta = bound.inputs[0]
    backend = backend_for(theta)
    xp = backend.namespace(theta)
    y, residuals = bound.op.forward(*bound.inputs, xp=xp)
    out_dtype = bound.out_dtype

    def vjp(g: Any) -> Any:
        if tuple(g.shape) != tuple(y.shape):
            raise ValueError(f"cotangent must have the output's shape {tuple(y.shape)}, got {tuple(g.shape)}")
        g = xp.astype(g, y.dtype)
        grad = bound.op.vjp(residuals, g, xp=xp)[0]
        if grad is None:
            grad = xp.zeros_like(theta)
        if out_dtype is not None:
            grad = xp.astype(grad, args[0].dtype)
        return grad

    if out_dtype is not None:
        y = xp.astype(y, out_dtype)
    return y, vjp
