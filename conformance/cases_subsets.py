"""Conformance cases of the subset ops of :mod:`dopt_core.relax` (Gumbel top-k, the
relaxed subset of Xie & Ermon, the exact k-subset marginals and sampler) and of
``neural_sort``. Stochastic ops get pre-drawn Gumbel noise as a positional array so
that every backend sees the same sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc
from dopt_core.op import Bound, op_function

from ._cases import Case, Inputs, register_case

R = dc.relax
_B = (2, 4)


def _with_noise(**kwargs: Any) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        theta = rng.normal(size=_B).astype(dtype)
        noise = -np.log(rng.exponential(size=_B)).astype(dtype)
        return (theta, noise), dict(kwargs)

    return make


def _theta(**kwargs: Any) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return (rng.normal(size=_B).astype(dtype),), dict(kwargs)

    return make


@op_function
def _gumbel_top_k_with_noise(theta: Any, noise: Any, /, **kwargs: Any) -> Bound:
    return R.gumbel_top_k.bind(theta, noise=noise, **kwargs)


@op_function
def _relaxed_subset_with_noise(theta: Any, noise: Any, /, **kwargs: Any) -> Bound:
    return R.relaxed_subset.bind(theta, noise=noise, **kwargs)


@op_function
def _k_subset_sample_with_noise(theta: Any, noise: Any, /, **kwargs: Any) -> Bound:
    return R.k_subset_sample.bind(theta, noise=noise, **kwargs)


def _smooth(
    name: str, fn: Any, make: Any, *, native: bool, dtypes: tuple[str, ...] = ("float32", "float64")
) -> None:
    register_case(
        Case(
            name, fn, make, differentiable=True, native_autodiff=native, tolerance="float",
            dtypes=dtypes,
        )
    )


# the variants reuse the main cases' code paths: float64 only, to keep the suite short
_F64 = ("float64",)


register_case(Case("relax.gumbel_top_k", _gumbel_top_k_with_noise, _with_noise(k=2)))
register_case(
    Case(
        "relax.gumbel_top_k[order]",
        _gumbel_top_k_with_noise,
        _with_noise(k=2, return_order=True),
        dtypes=_F64,
    )
)
# native autodiff is left out to keep the suite short (JAX traces every round): the unit
# tests compare the explicit VJPs with torch autograd of the reference recursion
# (relaxed_subset) and with finite differences (neural_sort)
_smooth("relax.relaxed_subset", _relaxed_subset_with_noise, _with_noise(k=2, tau=0.5), native=False)
# hard=True: straight-through, the explicit VJP is not the derivative of the forward
_smooth(
    "relax.relaxed_subset[hard]",
    _relaxed_subset_with_noise,
    _with_noise(k=2, tau=0.5, hard=True),
    native=False,
    dtypes=_F64,
)
# native autodiff through the 2n-step table recursion is slow to trace under JAX; the
# explicit VJP is checked against enumeration and finite differences in the unit tests
_smooth("relax.k_subset_marginals", R.k_subset_marginals, _theta(k=2), native=False)
register_case(Case("relax.k_subset_sample", _k_subset_sample_with_noise, _with_noise(k=2)))
# simple=True: the exact sample forward, the marginals' VJP backward (SIMPLE)
_smooth(
    "relax.k_subset_sample[simple]",
    _k_subset_sample_with_noise,
    _with_noise(k=2, simple=True),
    native=False,
    dtypes=_F64,
)
_smooth("relax.neural_sort", R.neural_sort, _theta(tau=0.7), native=True)
_smooth(
    "relax.neural_sort[hard]", R.neural_sort, _theta(tau=0.7, hard=True), native=False, dtypes=_F64
)
