"""Conformance cases of :mod:`dopt_core.relax` (imported by the package ``__init__``).

Continuous inputs (no ties) so that every smooth op is compared in the "float"
tolerance class; ops whose forward is made of differentiable array operations are also
checked against native autodiff through the forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc
from dopt_core.op import Bound, op_function

from ._cases import Case, Inputs, register_case

R = dc.relax


def _normal(
    shape: tuple[int, ...], scale: float = 1.0, **kwargs: Any
) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return (rng.normal(size=shape).astype(dtype) * np.asarray(scale, dtype),), dict(kwargs)

    return make


def _smooth(
    name: str,
    fn: Any,
    make: Any,
    *,
    native: bool = True,
    dtypes: tuple[str, ...] = ("float32", "float64"),
) -> None:
    register_case(
        Case(
            name,
            fn,
            make,
            differentiable=True,
            native_autodiff=native,
            tolerance="float",
            dtypes=dtypes,
        )
    )


# one small batched shape for every case: JAX compiles each primitive once per shape
_B = (2, 4)

# --- simplex ---------------------------------------------------------------------------
_smooth("relax.softmax", R.softmax, _normal(_B, tau=0.7))
_smooth("relax.sparsemax", R.sparsemax, _normal(_B, 2.0, tau=1.5))


@op_function
def _gumbel_softmax_with_noise(theta: Any, noise: Any, /, **kwargs: Any) -> Bound:
    return R.gumbel_softmax.bind(theta, noise=noise, **kwargs)


def _gumbel_inputs(hard: bool) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        theta = rng.normal(size=_B).astype(dtype)
        noise = -np.log(rng.exponential(size=_B)).astype(dtype)
        return (theta, noise), {"tau": 0.5, "hard": hard}

    return make


_smooth("relax.gumbel_softmax", _gumbel_softmax_with_noise, _gumbel_inputs(False))
# hard=True: straight-through, so the explicit VJP is not the derivative of the forward
_smooth(
    "relax.gumbel_softmax[hard]", _gumbel_softmax_with_noise, _gumbel_inputs(True), native=False
)

# --- sorting networks (n = 4) ------------------------------------------
# float64 only, to bound the suite's time (JAX compiles every primitive once per dtype);
# float32 on every backend: tests/test_relax_network.py::test_backends_values_and_gradients
_F64 = ("float64",)
_smooth(
    "relax.network_sort[bitonic,logistic_phi]",
    R.network_sort,
    _normal(_B, network="bitonic", sigmoid="logistic_phi", steepness=3.0),
    dtypes=_F64,
)
_smooth(
    "relax.network_permutation[odd_even,cauchy]",
    R.network_permutation,
    _normal(_B, network="odd_even", sigmoid="cauchy", steepness=3.0),
    dtypes=_F64,
)
# bitonic P runs block-diagonal on padded wires: n = 3 pads one wire
_smooth(
    "relax.network_permutation[bitonic,optimal]",
    R.network_permutation,
    _normal((2, 3), network="bitonic", sigmoid="optimal", steepness=3.0),
    dtypes=_F64,
)
_smooth(
    "relax.soft_top_k[bitonic,cauchy]", R.soft_top_k, _normal(_B, k=2, steepness=3.0), dtypes=_F64
)

# --- soft sort / rank (host PAV forward: no native autodiff through it) ----------------
_smooth(
    "relax.soft_sort[l2]", R.soft_sort, _normal(_B, 2.0, regularization_strength=0.5), native=False
)
_smooth(
    "relax.soft_rank[kl,descending]",
    R.soft_rank,
    _normal(_B, 2.0, regularization="kl", descending=True),
    native=False,
)


# --- relaxed control flow and the permutation loss -------------------------------------
def _arrays(
    *makers: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray], **kwargs: Any
) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return tuple(m(rng, _B).astype(dtype) for m in makers), dict(kwargs)

    return make


def _gauss(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape)


def _prob(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=shape)


_smooth(
    "relax.soft_compare[cauchy]",
    R.soft_compare,
    _arrays(_gauss, _gauss, beta=2.0, distribution="cauchy"),
)
_smooth("relax.soft_if", R.soft_if, _arrays(_prob, _gauss, _gauss))
_smooth("relax.soft_min[pair]", R.soft_min, _arrays(_gauss, _gauss, beta=2.0))
_smooth(
    "relax.soft_max[pair,gaussian]",
    R.soft_max,
    _arrays(_gauss, _gauss, beta=2.0, distribution="gaussian"),
)
# soft_argmin, soft_argmax and the vector soft_min/soft_max share one Op (sign and
# value flags): the weights with both signs, the value with one (the sign enters the
# value's VJP exactly as it enters the weights')
_smooth("relax.soft_argmin", R.soft_argmin, _normal(_B, beta=2.0))
_smooth("relax.soft_argmax", R.soft_argmax, _normal(_B, beta=2.0))
_smooth("relax.soft_max[vector]", R.soft_max, _normal(_B, beta=2.0))


def _loss_inputs(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
    n = _B[-1]
    P = np.asarray(R.network_permutation(rng.normal(size=(_B[0], n)), steepness=2.0), dtype=dtype)
    ranks = np.stack([rng.permutation(n) + 1 for _ in range(_B[0])]).astype(dtype)
    return (P, ranks), {"reduction": "none"}


_smooth("relax.permutation_loss", R.permutation_loss, _loss_inputs)
