"""One generic bridge from a core Op to ``torch.autograd.Function``.

The forward runs ``op.forward`` on torch tensors (on their device); the backward runs
``op.vjp`` — the core's explicit VJP — on the saved residuals. Nothing of the Op's
math lives here. The VJPs are first-order: the residuals they use are constants, so
differentiating a backward pass again would silently drop terms; it raises instead.
"""

from __future__ import annotations

from typing import Any

import torch
from array_api_compat import torch as torch_xp
from torch.autograd.function import once_differentiable


def _fresh(t: Any, taken: tuple[Any, ...]) -> Any:
    # An autograd.Function must not hand back one of its inputs as-is, and a residual
    # must not be the output tensor itself (marking it non-differentiable would mark
    # the output): give such tensors a new identity sharing the same storage.
    return t.detach() if any(t is x for x in taken) else t


class OpFunction(torch.autograd.Function):
    """``OpFunction.apply(op, *inputs) -> (y, *residuals)``; use :func:`apply_op`."""

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
        if residuals:
            ctx.mark_non_differentiable(*residuals)
        ctx.save_for_backward(*residuals)

    @staticmethod
    @once_differentiable  # the explicit VJPs are first-order: double backward raises, never lies
    def backward(ctx: Any, g: Any, *unused: Any) -> Any:
        residuals = tuple(ctx.saved_tensors)
        grads = ctx.op.vjp(residuals, g, xp=torch_xp)
        needs = ctx.needs_input_grad[1:]
        if len(grads) != len(needs):
            raise RuntimeError(f"{ctx.op.name}.vjp returned {len(grads)} gradients for {len(needs)} inputs")
        return (None, *(gr if need else None for gr, need in zip(grads, needs, strict=True)))


def apply_op(op: Any, *inputs: Any) -> Any:
    """Run a core Op with torch autograd wired to its explicit VJP."""
    return OpFunction.apply(op, *inputs)[0]
