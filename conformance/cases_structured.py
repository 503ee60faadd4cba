"""Conformance cases of :mod:`dopt_core.structured` (imported by the package ``__init__``).

The trace's log-probability and the exponentials' log-density, on traces produced by
the NumPy reference (Plackett-Luce top-k):
values, the explicit VJP, and native autodiff through the forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc
from dopt_core.op import Bound, op_function

from ._cases import Case, Inputs, register_case

S = dc.structured
_K4 = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


@op_function
def _log_prob_of_arrays(theta: Any, choices: Any, active: Any, /) -> Bound:
    """``structured.log_prob`` with the trace passed as its arrays (θ first)."""
    trace = S.Trace(choices, active, theta, None, "conformance")
    return S.log_prob.bind(trace, theta)


@op_function
def _log_prob_exponentials_theta_first(theta: Any, e: Any, /) -> Bound:
    return S.log_prob_exponentials.bind(e, theta)


def _trace_inputs(kind: str) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        if kind == "spanning_tree":
            theta = rng.normal(size=(2, len(_K4)))
            _, trace = S.spanning_tree.sample(theta, _K4, 4, rng=rng)
        elif kind == "top_k":
            theta = rng.normal(size=(2, 5))
            _, trace = S.top_k.sample(theta, 3, rng=rng)
        else:
            theta = rng.normal(size=(2, 3, 3))
            _, trace = S.matching.sample(theta, rng=rng)
            theta = theta.reshape(2, 9)
        return (theta.astype(dtype), trace.choices, trace.active), {}

    return make


# one trace kind: the op is the same for every structure (JAX compiles per shape); the
# top-k sampler makes no host call (the Kruskal sampler would count as the case's)
for _kind in ("top_k",):
    register_case(
        Case(
            f"structured.log_prob[{_kind}]",
            _log_prob_of_arrays,
            _trace_inputs(_kind),
            differentiable=True,
            native_autodiff=True,
            tolerance="float",
            dtypes=("float64",),  # float32 is covered by tests/test_structured.py
        )
    )


def _exponential_inputs(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
    theta = rng.normal(size=(2, 4))
    e = rng.exponential(size=(2, 4)) * np.exp(-theta)
    return (theta.astype(dtype), e.astype(dtype)), {}


register_case(
    Case(
        "structured.log_prob_exponentials",
        _log_prob_exponentials_theta_first,
        _exponential_inputs,
        differentiable=True,
        native_autodiff=True,
        tolerance="float",
        dtypes=("float64",),
    )
)
