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
:func:`value_and_vjp` reuses the same binding to expose the explicit VJP. A solver
states its ``event_ndim`` (the trailing axes of θ forming one instance) there, once:
``@op_function(event_ndim=2)``. Piecewise-constant Ops (solvers) take their zero VJP
from the :class:`ZeroGradient` mixin.

**Forward mode (optional).** An Op may also implement the Jacobian-vector product

.. math::

    \\texttt{jvp}(r, (u_1, \\dots, u_p)) = \\sum_i J_{x_i}(y)\\, u_i ,

linear in the tangents ``u_i`` (``None`` for a zero tangent) and written, like the
VJP, in array-API operations on the residuals. Ops without one keep working
unchanged in reverse mode; asking them for forward mode raises the error of
:func:`forward_mode_error`, which names the op. With a JVP the JAX plugin uses
``jax.custom_jvp`` (reverse mode by JAX's transposition of the linear JVP), the torch
plugin gives its ``autograd.Function`` a ``jvp``. ``second_order = True`` states that
the forward's residuals and the JVP/VJP are differentiable array operations of the
inputs (after :meth:`Op.reattach`), so differentiating them again gives the second
derivative (a.e.); the plugins refuse second derivatives of the other Ops.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, overload

import numpy as np

from ._lib._checks import check_int
from .backend import apply_op, backend_for

__all__ = [
    "Bound",
    "Op",
    "OpFunction",
    "ZeroGradient",
    "forward_mode_error",
    "has_jvp",
    "op_function",
    "solver_kernel",
    "value_and_jvp",
    "value_and_vjp",
]


class Op:
    """Base class of dopt's differentiable operations (see the module docstring).

    Subclasses are frozen dataclasses and implement :meth:`forward` and :meth:`vjp`.
    ``nondiff`` lists input positions that never receive a gradient (noise arrays,
    integer data); their entries in the ``vjp`` result are ``None``.
    """

    name: ClassVar[str] = "op"
    host: ClassVar[bool] = False
    nondiff: ClassVar[tuple[int, ...]] = ()
    #: True when ``forward`` on concrete arrays takes branches that read values (e.g.
    #: stops iterating once converged; its binder builds a traced variant under
    #: ``jit``). A backend that compiles eager calls (JAX) runs such an Op op by op.
    reads_values: ClassVar[bool] = False

    def forward(self, *inputs: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        """Return ``(y, residuals)``; ``residuals`` is a tuple of arrays."""
        raise NotImplementedError

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        """Return one gradient per input (``None`` for a zero or undefined one)."""
        raise NotImplementedError

    #: the residuals (after :meth:`reattach`) and the JVP/VJP are differentiable array
    #: operations of the inputs: differentiating them again is the second derivative
    second_order: ClassVar[bool] = False
    #: False when the VJP is exact where the JVP's transpose (computed by a framework that
    #: derives reverse mode from the JVP, as JAX does) is not: JAX then keeps the explicit
    #: VJP (``custom_vjp``) and this Op has no forward mode there
    jvp_transposes_exactly: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        """Optional: the tangent of ``y``, ``Σ_i J_{x_i} u_i``, linear in ``tangents``
        (one per input, ``None`` for a zero tangent; ``None`` returned means zero).

        Not implemented by default: forward mode then raises
        :func:`forward_mode_error`, reverse mode is unaffected.
        """
        raise NotImplementedError(forward_mode_error(self))

    def reattach(self, inputs: tuple[Any, ...], residuals: tuple[Any, ...], *, xp: Any) -> tuple[Any, ...]:
        """Residuals as differentiable functions of ``inputs``, for second derivatives.

        The default returns ``residuals`` unchanged: right when ``forward`` computes
        them with array operations of the inputs. An Op whose residuals come out of a
        piecewise-constant solver (a perturbed maximum) overrides it to route them
        through an Op whose derivative is the estimator's.
        """
        return residuals


def has_jvp(op: Any) -> bool:
    """Whether ``op`` implements :meth:`Op.jvp` (forward mode).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> from dopt_core.op import has_jvp
    >>> has_jvp(dc.relax.softmax.bind(np.ones(3)).op), has_jvp(dc.solvers.sort.bind(np.ones(3)).op)
    (True, False)
    """
    method = getattr(type(op), "jvp", None)
    return method is not None and method is not Op.jvp


def forward_mode_error(op: Any) -> str:
    """The message of the error raised when forward mode is asked of an Op without a JVP.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> from dopt_core.op import forward_mode_error
    >>> forward_mode_error(dc.solvers.sort.bind(np.ones(3)).op)[:38]
    'sort: this dopt op has no forward-mode'
    """
    name = getattr(op, "name", type(op).__name__)
    return (
        f"{name}: this dopt op has no forward-mode derivative (jvp): it is first-order, "
        "reverse mode only (jax.grad/jax.vjp/jax.jacrev, backward/torch.func.vjp/jacrev); "
        "forward mode (jax.jvp, jax.jacfwd, jax.linearize, jax.hessian, torch.func.jvp/jacfwd) "
        "is available for the ops listed in docs/frameworks.md"
    )


class ZeroGradient:
    """Mixin: the zero VJP of an Op whose output is locally constant in its array input.

    A solver's output :math:`y^*(\\theta) = \\operatorname{argmax}_{y \\in Y}
    \\langle \\theta, y\\rangle` is piecewise constant in θ, so its almost-everywhere
    Jacobian is zero: :math:`J^\\top g = 0`, returned as ``None`` (the adapters turn it
    into zeros, or into no gradient at all). List it before :class:`Op` in the bases,
    ``class ArgmaxOp(ZeroGradient, Op)``, for an Op of one array input.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> from dataclasses import dataclass
    >>> from dopt_core.op import Bound, Op, ZeroGradient, op_function
    >>> @dataclass(frozen=True)
    ... class SignOp(ZeroGradient, Op):
    ...     def forward(self, theta, *, xp):
    ...         return xp.sign(theta), ()
    >>> @op_function
    ... def sign(theta):
    ...     return Bound(SignOp(), (theta,))
    >>> y, vjp = dc.value_and_vjp(sign, np.array([-2.0, 3.0]))
    >>> y, vjp(np.array([1.0, 1.0]))
    (array([-1.,  1.]), array([0., 0.]))
    """

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        """``(None,)``: a zero gradient for the one array input."""
        return (None,)

    #: zero is the a.e. derivative of every order
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        """``None``: the zero JVP (forward mode and Hessians give zeros, as the VJP does)."""
        return None


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
    returns the :class:`Bound` without running it. Built by :func:`op_function`, which
    documents the keywords.
    """

    def __init__(
        self,
        binder: Callable[..., Bound],
        *,
        name: str | None = None,
        doc: str | None = None,
        event_ndim: int | None = None,
        module: str | None = None,
    ) -> None:
        if not callable(binder):
            raise TypeError(f"binder must be callable, got {type(binder).__name__}")
        if event_ndim is not None:
            event_ndim = check_int(event_ndim, name="event_ndim", low=0)
        if name is not None:
            binder.__name__ = binder.__qualname__ = name
        if doc is not None:
            binder.__doc__ = doc
        if module is not None:
            binder.__module__ = module
        self.bind = binder
        functools.update_wrapper(self, binder)
        if event_ndim is not None:
            # read by the perturbed estimators, losses and replacements (through
            # dopt_core._lib._checks.solver_event_ndim); unset means 1
            self.event_ndim = event_ndim

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.bind(*args, **kwargs)
        y = apply_op(bound.op, *bound.inputs)
        if bound.out_dtype is not None:
            xp = backend_for(y).namespace(y)
            y = xp.astype(y, bound.out_dtype)
        return y

    def __repr__(self) -> str:
        return f"<dopt function {self.__name__}>"  # type: ignore[attr-defined]


@overload
def op_function(
    binder: Callable[..., Bound],
    /,
    *,
    name: str | None = ...,
    doc: str | None = ...,
    event_ndim: int | None = ...,
    module: str | None = ...,
) -> OpFunction: ...


@overload
def op_function(
    binder: None = ...,
    /,
    *,
    name: str | None = ...,
    doc: str | None = ...,
    event_ndim: int | None = ...,
    module: str | None = ...,
) -> Callable[[Callable[..., Bound]], OpFunction]: ...


def op_function(
    binder: Callable[..., Bound] | None = None,
    /,
    *,
    name: str | None = None,
    doc: str | None = None,
    event_ndim: int | None = None,
    module: str | None = None,
) -> Any:
    """Turn a validating binder into a public :class:`OpFunction`.

    Use it as a bare decorator, ``@op_function``, as a decorator with keywords,
    ``@op_function(event_ndim=2)``, or as a call, ``op_function(bind, name=..., doc=...)``
    (binders built inside a factory such as :func:`dopt_core.perturbed`).

    Parameters
    ----------
    binder : callable
        Validates the public arguments and returns a :class:`Bound`.
    name : str, optional
        The public function's ``__name__`` (and ``__qualname__``), e.g.
        ``"perturbed(argmax)"``; default: the binder's.
    doc : str, optional
        Its docstring; default: the binder's.
    event_ndim : int, optional
        For a solver: the number of trailing axes of θ that form one instance (2 for an
        ``(n, n)`` score matrix or an ``(H, W)`` grid), stated here once and read by the
        perturbed estimators, losses and replacements. Unset: 1.
    module : str, optional
        Its ``__module__`` (a solver lifted from a user's function reports theirs).

    Returns
    -------
    OpFunction
        Or, called without ``binder``, a decorator that makes one.

    Example
    -------
    >>> import numpy as np
    >>> from dataclasses import dataclass
    >>> from dopt_core.op import Bound, Op, op_function
    >>> @dataclass(frozen=True)
    ... class ScaleOp(Op):
    ...     c: float
    ...     def forward(self, theta, *, xp):
    ...         return self.c * theta, ()
    ...     def vjp(self, residuals, g, *, xp):
    ...         return (self.c * g,)
    >>> @op_function
    ... def scale(theta, c=2.0):
    ...     return Bound(ScaleOp(c), (theta,))
    >>> scale(np.array([1.0, -3.0]))
    array([ 2., -6.])
    >>> def bind(theta):
    ...     return Bound(ScaleOp(1.0), (theta,))
    >>> same = op_function(bind, name="same", event_ndim=2)
    >>> same.__name__, same.event_ndim
    ('same', 2)
    """
    options = {"name": name, "doc": doc, "event_ndim": event_ndim, "module": module}
    if binder is None:
        return functools.partial(op_function, **options)
    return OpFunction(binder, **options)


def solver_kernel(
    solver: Callable[..., Any], example: Any, *, xp: Any
) -> Callable[[Any], Any] | None:
    """``x -> solver(x)`` for the repeated calls of an iterative method, without the
    public call's per-call validation and autodiff wrapping; ``None`` when not possible.

    When ``solver`` is a dopt function (possibly under ``functools.partial`` with
    keyword arguments only), it is bound **once** on ``example`` — the public
    validation runs there — and the result runs its Op's ``forward`` directly: the
    same array operations as ``solver(x)``, inside an Op's own forward pass where no
    gradient flows through the solver (a piecewise-constant oracle). The kernel is
    for arrays of ``example``'s shape, dtype and device whose values are finite,
    as validated iterates of a method started from ``example`` are. It is only
    offered when binding passes ``example`` through unchanged (no dtype cast, one
    array input); otherwise, and for solvers that are not dopt functions, ``None``:
    call the solver itself.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> from dopt_core.op import solver_kernel
    >>> theta = np.array([[1.0, 3.0, 2.0]])
    >>> kernel = solver_kernel(dc.solvers.argmax, theta, xp=np)
    >>> kernel(np.array([[0.0, -1.0, 4.0]]))
    array([[0., 0., 1.]])
    >>> solver_kernel(lambda t: t, theta, xp=np) is None
    True
    """
    f, keywords = solver, {}
    while isinstance(f, functools.partial):
        if f.args:
            return None
        keywords = {**f.keywords, **keywords}
        f = f.func
    if not isinstance(f, OpFunction):
        return None
    bound = f.bind(example, **keywords)
    if len(bound.inputs) != 1 or bound.inputs[0] is not example or bound.out_dtype is not None:
        return None
    op = bound.op

    def kernel(x: Any) -> Any:
        return op.forward(x, xp=xp)[0]

    return kernel


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
        if out_dtype is not None:  # θ's own dtype (float16/bfloat16 computed in float32)
            grad = xp.astype(grad, out_dtype)
        return grad

    if out_dtype is not None:
        y = xp.astype(y, out_dtype)
    return y, vjp


def value_and_jvp(f: OpFunction, *args: Any, **kwargs: Any) -> tuple[Any, Callable[[Any], Any]]:
    """Value of ``f(*args, **kwargs)`` and its explicit JVP with respect to the first input.

    The reference forward-mode derivative (the Op's :meth:`Op.jvp`), on any array
    namespace: returns ``(y, jvp)`` with ``jvp(u) -> J u`` shaped like ``y``, for a
    tangent ``u`` of the first argument's shape. An Op without a JVP raises
    ``NotImplementedError`` naming it (:func:`forward_mode_error`).

    Parameters
    ----------
    f : OpFunction
        A dopt function built on an Op.
    *args, **kwargs
        Its arguments; the first positional one is θ.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> y, jvp = dc.op.value_and_jvp(dc.relax.softmax, np.zeros(2))
    >>> y, jvp(np.array([1.0, -1.0]))
    (array([0.5, 0.5]), array([ 0.5, -0.5]))
    """
    if not isinstance(f, OpFunction):
        raise TypeError(f"f must be a dopt function (built on an Op), got {type(f).__name__}")
    bound = f.bind(*args, **kwargs)
    op = bound.op
    if not has_jvp(op):
        raise NotImplementedError(forward_mode_error(op))
    theta = bound.inputs[0]
    backend = backend_for(theta)
    xp = backend.namespace(theta)
    y, residuals = op.forward(*bound.inputs, xp=xp)
    out_dtype = bound.out_dtype

    def jvp(u: Any) -> Any:
        u = _as_cotangent(u, theta, backend, xp)
        tangents = (u,) + (None,) * (len(bound.inputs) - 1)
        t = op.jvp(residuals, tangents, xp=xp)
        if t is None:
            t = xp.zeros_like(y)
        if out_dtype is not None:
            t = xp.astype(t, out_dtype)
        return t

    if out_dtype is not None:
        y = xp.astype(y, out_dtype)
    return y, jvp


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
