"""One generic bridge from a core Op to ``torch.autograd.Function``.

The forward runs ``op.forward`` on torch tensors (on their device); the backward runs
``op.vjp`` — the core's explicit VJP — on the saved residuals. Nothing of the Op's
math lives here. The VJPs are first-order: the residuals they use are constants, so
differentiating a backward pass again would silently drop terms. When a backward pass
is recorded (``create_graph=True``), every gradient it returns goes through
:class:`FirstOrderOnly`, which is connected to the op's inputs and to the cotangent
and raises if anything differentiates through it.

Per-call cost matters here (a small op is dominated by it), so the bridge keeps
autograd's bookkeeping minimal: the residuals leave ``forward`` as one plain tuple —
a non-tensor output, which autograd passes through without wrapping, marking or
versioning it — and are saved with ``save_for_backward`` (version-checked, seen by
saved-tensor hooks) in ``setup_context``; and :meth:`AutogradOp.apply` skips torch's
per-call ``inspect.signature`` binding of ``forward``'s arguments, which is the
identity for ``forward(op, *inputs)``, unless a functorch transform is active.

Under ``torch.func`` transforms, ``grad``/``vjp`` use the same forward and backward;
``vmap`` (and ``jacrev``, which vmaps the backward) goes through the ``vmap`` rules of
:class:`AutogradOp` and :class:`FirstOrderOnly`.

Forward mode (``torch.func.jvp``, ``jacfwd``, ``torch.autograd.forward_ad``) runs the
core's ``op.jvp`` through :class:`AutogradOpJvp`, the same Function with a ``jvp``
staticmethod, chosen only while a forward-AD level or a functorch transform is active
(a ``jvp`` staticmethod makes ``torch.compile`` refuse a Function, so the plain path
stays without one). An op without a JVP raises :func:`dopt_core.op.forward_mode_error`.

Double backward: for an op with ``second_order = True`` (its residuals and VJP are
differentiable array operations of its inputs), a backward pass recorded with
``create_graph=True`` recomputes the residuals from the saved inputs under autograd
(``op.reattach`` routes a perturbed maximum's through the score identity) and runs the
VJP on them, so the gradient it returns is differentiable; the other ops keep the
:class:`FirstOrderOnly` guard.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from array_api_compat import torch as _compat_torch

from dopt_core.op import ZeroGradient, forward_mode_error, has_jvp


def _sign(x: Any, /) -> Any:
    # array-api-compat's sign restores NaN (torch.sign gives 0) by boolean-mask
    # assignment, which torch.func.vmap cannot batch: vmap(grad(f)) of an op whose
    # forward (recomputed in a recorded backward) or VJP takes a sign failed
    if x.dtype.is_floating_point:
        return torch.where(torch.isnan(x), x, torch.sign(x))
    return _compat_torch.sign(x)


def _namespace() -> Any:
    """array-api-compat's torch namespace, with :func:`_sign` as its ``sign``."""
    ns = types.ModuleType(_compat_torch.__name__, _compat_torch.__doc__)
    skip = ("__name__", "__doc__", "__spec__", "__loader__", "__file__", "__path__", "__package__")
    ns.__dict__.update({k: v for k, v in vars(_compat_torch).items() if k not in skip})
    ns.sign = _sign
    return ns


#: the namespace the torch ops run on (``xp=``)
torch_xp = _namespace()

SECOND_ORDER_ERROR = (
    "dopt's explicit VJPs are first-order: second derivatives (double backward, "
    "torch.autograd.functional.hessian) of dopt layers are not supported"
)

try:  # torch internals behind Function.apply; without them, torch's own apply is used
    from torch._functorch.utils import unwrap_dead_wrappers as _unwrap_dead_wrappers

    _functorch_active = torch._C._are_functorch_transforms_active
    _SingleLevelFunction = torch.autograd.function._SingleLevelFunction
    FAST_APPLY = True
except (ImportError, AttributeError):  # pragma: no cover - another torch version
    FAST_APPLY = False

# True while a functorch grad (or jvp) level above runs an autograd.Function's forward
# on the levels below; unknown: assume so (the per-slice vmap rule is always right)
_grad_level_above = getattr(
    torch._C._functorch, "get_single_level_autograd_function_allowed", lambda: True
)


def _fresh(t: Any, taken: tuple[Any, ...]) -> Any:
    # An autograd.Function must not hand back one of its inputs as-is: give such a
    # tensor a new identity sharing the same storage.
    return t.detach() if any(t is x for x in taken) else t


class FirstOrderOnly(torch.autograd.Function):
    """Identity on its first argument; differentiating through it raises."""

    @staticmethod
    def forward(grad: Any, *anchors: Any) -> Any:  # type: ignore[override]
        return grad.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError(SECOND_ORDER_ERROR)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], grad: Any, *anchors: Any) -> Any:
        # torch.func.jacrev vmaps the backward pass over the cotangents: the identity
        # keeps the batch axis where it is, and the guard stays on the level below
        return _guard().apply(grad, *anchors), in_dims[0]


class FirstOrderOnlyJvp(FirstOrderOnly):
    """:class:`FirstOrderOnly` for forward mode (``torch.func.hessian`` is
    ``jacfwd(jacrev(f))``): its ``jvp`` raises the same error (without one, torch says
    "You must implement the jvp function"); a separate class, as ``torch.compile``
    refuses a Function with a ``jvp``."""

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:
        raise RuntimeError(SECOND_ORDER_ERROR)


def _guard() -> Any:
    return FirstOrderOnlyJvp if _forward_mode_active() else FirstOrderOnly


class AutogradOp(torch.autograd.Function):
    """``AutogradOp.apply(op, *inputs) -> (y, residuals)``; use :func:`apply_op`.

    ``residuals`` is the tuple ``op.forward`` returned (a non-tensor output: autograd
    leaves it alone; its tensors never require grad).
    """

    @staticmethod
    def forward(op: Any, *inputs: Any) -> Any:  # type: ignore[override]
        y, residuals = op.forward(*inputs, xp=torch_xp)
        return _fresh(y, inputs), tuple(residuals)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        residuals = output[1]
        ctx.op = inputs[0]
        ctx.num_residuals = len(residuals)
        ctx.set_materialize_grads(False)  # the residual output never gets a gradient
        if ctx.op.second_order:  # every input, to recompute the residuals under autograd
            ctx.save_for_backward(*residuals, *inputs[1:])
        else:
            anchors = [x for x in inputs[1:] if isinstance(x, torch.Tensor) and x.requires_grad]
            ctx.save_for_backward(*residuals, *anchors)

    @classmethod
    def apply(cls, *args: Any) -> Any:  # type: ignore[override]
        # torch's Function.apply binds ``args`` to ``forward``'s signature with
        # inspect.signature on every call (tens of µs); for forward(op, *inputs), with
        # no defaults and no keywords, that binding returns ``args`` unchanged.
        if not FAST_APPLY or _functorch_active():
            return super().apply(*args)
        return super(_SingleLevelFunction, cls).apply(*_unwrap_dead_wrappers(args))

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], op: Any, *inputs: Any) -> Any:
        """The ``torch.func.vmap`` rule: the op runs on the level below, unbatched.

        An op with one array input is batched over that input's leading axes (the
        library's convention), so the vmapped axis moves to the front and the op runs
        once on the whole batch; its residuals stay on the level below. A ``grad``
        level above this ``vmap`` (``vmap(grad(f))``) needs the residuals themselves,
        batched, and a residual's batch axis is op-specific (soft sort packs the
        batch into one flat table), as are the batch axes of a second input (a
        perturbed op's noise has the sample axis first): then the op runs once per
        slice, and the outputs and residuals are stacked.
        """
        dims = in_dims[1:]
        if len(inputs) == 1 and not _grad_level_above():
            return (AutogradOp.apply(op, inputs[0].movedim(dims[0], 0))[0], ()), (0, ())

        def piece(b: int) -> tuple[Any, ...]:
            return tuple(x if d is None else x.select(d, b) for x, d in zip(inputs, dims, strict=True))

        outs = [AutogradOp.apply(op, *piece(b)) for b in range(info.batch_size)]
        y = torch.stack([out[0] for out in outs])
        residuals = tuple(torch.stack(rs) for rs in zip(*(out[1] for out in outs), strict=True))
        return (y, residuals), (0, (0,) * len(residuals))

    @staticmethod
    def backward(ctx: Any, g: Any, *unused: Any) -> Any:
        n_inputs = len(ctx.needs_input_grad) - 1
        if g is None:  # the output itself was not used by the loss
            return (None,) * (1 + n_inputs)
        saved = ctx.saved_tensors
        k = ctx.num_residuals
        create_graph = torch.is_grad_enabled()
        if type(ctx.op).vjp is ZeroGradient.vjp and ctx.op.second_order:
            # the a.e. derivative of a piecewise-constant op: zeros, as the reference VJP
            # and JAX give (None would be "not used in the graph" to torch.autograd.grad);
            # a second-order op saved every input
            needs = ctx.needs_input_grad[1:]
            pairs = zip(saved[k:], needs, strict=True)
            return (None, *(torch.zeros_like(x) if need else None for x, need in pairs))
        if create_graph and ctx.op.second_order:  # a differentiable backward pass
            inputs = saved[k:]
            _, residuals = ctx.op.forward(*inputs, xp=torch_xp)
            residuals = ctx.op.reattach(tuple(inputs), tuple(residuals), xp=torch_xp)
            grads = ctx.op.vjp(residuals, g, xp=torch_xp)
            needs = ctx.needs_input_grad[1:]
            return (None, *(gr if need else None for gr, need in zip(grads, needs, strict=True)))
        grads = ctx.op.vjp(saved[:k], g, xp=torch_xp)
        if len(grads) != n_inputs:
            raise RuntimeError(
                f"{ctx.op.name}.vjp returned {len(grads)} gradients for {n_inputs} inputs"
            )
        needs = ctx.needs_input_grad[1:]
        out = [gr if need else None for gr, need in zip(grads, needs, strict=True)]
        if create_graph:  # create_graph=True: guard against a second derivative
            anchors = [x for x in saved[k:] if x.requires_grad]
            guard = _guard()
            out = [None if gr is None else guard.apply(gr, g, *anchors) for gr in out]
        return (None, *out)


class AutogradOpJvp(AutogradOp):
    """:class:`AutogradOp` with forward mode: the ``jvp`` staticmethod runs ``op.jvp``."""

    @staticmethod
    def forward(op: Any, *inputs: Any) -> Any:  # type: ignore[override]
        y, residuals = AutogradOp.forward(op, *inputs)
        # forward AD asserts on an output that is a view (a slice of a padded array, as
        # the bitonic permutation matrix): hand back a copy of its own
        return (y.clone() if y._base is not None else y), residuals

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        AutogradOp.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*output[1])
        ctx.out_like = (output[0].shape, output[0].dtype, output[0].device)

    @staticmethod
    def jvp(ctx: Any, _: Any, *tangents: Any) -> Any:
        op = ctx.op
        ts = tuple(None if i in op.nondiff else t for i, t in enumerate(tangents))
        residuals = ctx.saved_tensors[: ctx.num_residuals]
        t_out = None if all(t is None for t in ts) else op.jvp(residuals, ts, xp=torch_xp)
        if t_out is None:
            shape, dtype, device = ctx.out_like
            t_out = torch.zeros(shape, dtype=dtype, device=device)
        return t_out, None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], op: Any, *inputs: Any) -> Any:
        return AutogradOp.vmap(info, in_dims, op, *inputs)


def _forward_mode_active() -> bool:
    return torch.autograd.forward_ad._current_level >= 0 or (FAST_APPLY and _functorch_active())


def apply_op(op: Any, *inputs: Any) -> Any:
    """Run a core Op with torch autograd wired to its explicit VJP.

    Parameters
    ----------
    op : Op
        A core Op (an immutable, hashable value).
    *inputs : array
        Its array inputs.

    Examples
    --------
    >>> import torch, dopt_core as dc
    >>> from dopt_torch import apply_op
    >>> theta = torch.tensor([3.0, 1.0, 2.0], requires_grad=True)
    >>> bound = dc.solvers.sort.bind(theta)
    >>> apply_op(bound.op, *bound.inputs).backward(torch.tensor([10.0, 20.0, 30.0]))
    >>> theta.grad.tolist()   # each slot's cotangent goes back to the entry sorted there
    [30.0, 10.0, 20.0]
    """
    if torch.compiler.is_compiling() and not _needs_grad(inputs):
        # dynamo cannot trace the Function when several tensors go in and none needs a
        # gradient (it calls the abstract Function.forward): run the forward itself
        y, _ = op.forward(*inputs, xp=torch_xp)
        return _fresh(y, inputs)
    if _forward_mode_active():
        if has_jvp(op):
            return AutogradOpJvp.apply(op, *inputs)[0]
        if any(_is_dual(x) for x in inputs):
            raise NotImplementedError(forward_mode_error(op))
    return AutogradOp.apply(op, *inputs)[0]


def _needs_grad(inputs: tuple[Any, ...]) -> bool:
    return torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in inputs
    )


def _is_dual(x: Any) -> bool:
    if not isinstance(x, torch.Tensor):
        return False
    try:
        return torch.autograd.forward_ad.unpack_dual(x).tangent is not None
    except RuntimeError:
        return False
