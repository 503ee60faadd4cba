"""One generic bridge from a core Op to ``torch.autograd.Function``.

The forward runs ``op.forward`` on torch tensors (on their device); the backward runs
``op.vjp`` — the core's explicit VJP — on the saved residuals. Nothing of the Op's
math lives here. The VJPs are first-order: the residuals they use are constants, so
differentiating a backward pass again would silently drop terms. When a backward pass
is recorded (``create_graph=True``), every gradient it returns goes through
:class:`FirstOrderOnly`, which is connected to the op's inputs and to the cotangent
and raises if anything differentiates through it.
"""

from __future__ import annotations

from typing import Any

import torch
from array_api_compat import torch as torch_xp

SECOND_ORDER_ERROR = (
    "dopt's explicit VJPs are first-order: second derivatives (double backward, "
    "torch.autograd.functional.hessian) of dopt layers are not supported"
)


def _fresh(t: Any, taken: tuple[Any, ...]) -> Any:
    # An autograd.Function must not hand back one of its inputs as-is, and a residual
    # must not be the output tensor itself (marking it non-differentiable would mark
    # the output): give such tensors a new identity sharing the same storage.
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


class AutogradOp(torch.autograd.Function):
    """``AutogradOp.apply(op, *inputs) -> (y, *residuals)``; use :func:`apply_op`."""

    @staticmethod
    def forward(op: Any, *inputs: Any) -> Any:  # type: ignore[override]
        y, residuals = op.forward(*inputs, xp=torch_xp)
        y = _fresh(y, inputs)
        out = [y]
        for r in residuals:
            out.append(_fresh(r, (*inputs, *out)))
        return tuple(out)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        op = inputs[0]
        residuals = output[1:]
        ctx.op = op
        ctx.num_residuals = len(residuals)
        ctx.set_materialize_grads(False)  # residual outputs never get gradients: no zero tensors
        if residuals:
            ctx.mark_non_differentiable(*residuals)
        anchors = [x for x in inputs[1:] if isinstance(x, torch.Tensor) and x.requires_grad]
        ctx.save_for_backward(*residuals, *anchors)

    @staticmethod
    def backward(ctx: Any, g: Any, *unused: Any) -> Any:
        n_inputs = len(ctx.needs_input_grad) - 1
        if g is None:  # the output itself was not used by the loss
            return (None,) * (1 + n_inputs)
        saved = tuple(ctx.saved_tensors)
        residuals, anchors = saved[: ctx.num_residuals], saved[ctx.num_residuals :]
        grads = ctx.op.vjp(residuals, g, xp=torch_xp)
        if len(grads) != n_inputs:
            raise RuntimeError(f"{ctx.op.name}.vjp returned {len(grads)} gradients for {n_inputs} inputs")
        needs = ctx.needs_input_grad[1:]
        out = [gr if need else None for gr, need in zip(grads, needs, strict=True)]
        if torch.is_grad_enabled():  # create_graph=True: guard against a second derivative
            out = [None if gr is None else FirstOrderOnly.apply(gr, g, *anchors) for gr in out]
        return (None, *out)


def apply_op(op: Any, *inputs: Any) -> Any:
    """Run a core Op with torch autograd wired to its explicit VJP."""
    return AutogradOp.apply(op, *inputs)[0]
