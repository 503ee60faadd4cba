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
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

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

    The cotangent ``g`` has the output's shape exactly (no broadcasting, as in
    ``jax.vjp`` and ``torch.autograd.grad``): an array of the output's library (on its
    device), or a NumPy array, which is moved there; a Python or NumPy real scalar
    stands for a 0-d array when the output is 0-d (a loss). Integer cotangents are cast
    to the output's dtype. Anything else raises ``TypeError``, a wrong shape or device
    ``ValueError``, both naming ``cotangent``.

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
        g = _as_cotangent(g, y, backend, xp)
        grad = bound.op.vjp(residuals, g, xp=xp)[0]
        if grad is None:
            grad = xp.zeros_like(theta)
        if out_dtype is not None:
            grad = xp.astype(grad, args[0].dtype)
        return grad

    if out_dtype is not None:
        y = xp.astype(y, out_dtype)
    return y, vjp


def _as_cotangent(g: Any, y: Any, backend: Any, xp: Any) -> Any:
    """``g`` as an array of ``y``'s library, device, shape and dtype (see
    :func:`value_and_vjp` for what is accepted)."""
    shape = tuple(y.shape)
    if isinstance(g, numbers.Real) and not isinstance(g, bool) and not hasattr(g, "shape"):
        if shape:
            raise ValueError(
                f"cotangent must have the output's shape {shape}: a scalar stands only "
                "for a 0-d output"
            )
        return xp.asarray(float(g), dtype=y.dtype, device=backend.device(y))
    if isinstance(g, np.ndarray | np.generic) and backend.name != "numpy":
        g = backend.from_numpy(np.asarray(g), like=y)
    elif not hasattr(g, "shape") or backend_for(g, name="cotangent") is not backend:
        also = "" if backend.name == "numpy" else " or a NumPy array"
        raise TypeError(
            f"cotangent must be an array of the output's library ({backend.name}){also}, "
            f"got {type(g).__module__}.{type(g).__qualname__}"
        )
    if tuple(g.shape) != shape:
        raise ValueError(f"cotangent must have the output's shape {shape}, got {tuple(g.shape)}")
    if not (xp.isdtype(g.dtype, "real floating") or xp.isdtype(g.dtype, "integral")):
        raise TypeError(f"cotangent must have a real floating or integer dtype, got {g.dtype}")
    dev, dev_y = backend.device(g), backend.device(y)
    if dev is not None and dev_y is not None and not backend.same_device(dev, dev_y):
        raise ValueError(f"cotangent is on device {dev} but the output is on {dev_y}")
    return xp.astype(g, y.dtype)
