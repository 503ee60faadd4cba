"""Conformance cases of PyEPO's problems on dopt's solvers (issue 18).

Scores are on a coarse grid (ties are frequent): every backend must reproduce the
NumPy reference's tie-breaking exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import dopt_core as dc

from ._cases import Case, Inputs, register_case

__all__: list[str] = []

_S = dc.solvers


def _scores(shape: tuple[int, ...], **kwargs: Any) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return ((rng.integers(-4, 5, size=shape) / 2).astype(dtype),), dict(kwargs)

    return make


def _returns(shape: tuple[int, ...], **kwargs: Any) -> Any:
    """Expected returns of distinct assets (the cone program's optimum is unique)."""

    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return (rng.uniform(0.0, 1.0, size=shape).astype(dtype),), dict(kwargs)

    return make


_COV = np.array(  # passed as a list: problem data, not converted to each backend
    [[1.0, 0.2, 0.0, 0.1], [0.2, 0.8, 0.1, 0.0], [0.0, 0.1, 0.5, 0.05], [0.1, 0.0, 0.05, 0.6]]
)

# The device dynamic programs in float32 only (float64 is in tests/test_solvers_dfl_problems.py):
# eager JAX compiles each of their primitives per shape, seconds per case on CI machines.
register_case(Case("tsp[dp]", _S.tsp, _scores((2, 2, 5, 5), method="dp"), dtypes=("float32",)))
register_case(Case("tsp[milp]", _S.tsp, _scores((3, 5, 5), method="milp")))
register_case(
    Case(
        "knapsack[multi]",
        _S.knapsack,
        _scores((3, 5), weights=[[3, 1, 4, 1, 5], [2, 2, 1, 3, 1]], capacity=[7, 5]),
        dtypes=("float32",),
    )
)
register_case(
    Case(
        "knapsack[milp]",
        _S.knapsack,
        _scores((2, 5), weights=[[3.0, 1.5, 4.0, 1.0, 5.0]], capacity=[7.5], method="milp"),
    )
)
register_case(Case("portfolio", _S.portfolio, _returns((2, 4), covariance=_COV.tolist())))
