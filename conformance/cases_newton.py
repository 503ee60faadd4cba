"""Conformance cases of the Newton losses (issue 16): NumPy takes the gradient from the
loss's explicit VJP (and, for ``mode="hessian"``, its Hessian from finite differences of
that VJP); torch and JAX take both from their own autodiff. The Fisher variant needs no
Hessian, so it agrees to rounding in float32 too; the Hessian variant runs in float64,
where the finite differences are accurate to about 1e-10."""

from __future__ import annotations

from typing import Any

import numpy as np

import dopt_core as dc

from ._cases import Case, Inputs, register_case

_B = (3, 4)


def _soft_max_loss() -> dc.OpFunction:
    """ℓ_i = the relaxed maximum of y_i (β = 2): smooth, with a dense Hessian."""
    return dc.op_function(lambda y: dc.relax.soft_max.bind(y, beta=2.0), name="soft_max_beta2")


_LOSS = _soft_max_loss()


def _newton(mode: str) -> dc.OpFunction:
    def bind(y: Any, *, lam: float = 0.5, reduction: str = "none") -> dc.Bound:
        return dc.newton_loss.bind(_LOSS, y, mode=mode, lam=lam, reduction=reduction)

    return dc.op_function(bind, name=f"newton_loss[{mode}]")


def _inputs(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
    return (rng.normal(size=_B).astype(dtype),), {}


register_case(Case(
    "newton_loss[hessian]", _newton("hessian"), _inputs, differentiable=True,
    tolerance="float", dtypes=("float64",), vmap=False,
))
register_case(Case(
    "newton_loss[fisher]", _newton("fisher"), _inputs, differentiable=True,
    tolerance="float", vmap=False,  # the Fisher matrix couples the batch
))
