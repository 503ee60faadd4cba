"""Conformance cases of the combinatorial solvers (``dopt_core.solvers``, issue 3).

Inputs are on coarse grids (ties are frequent), so every backend must reproduce the
NumPy reference's tie-breaking exactly, not only the optimal value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import dopt_core as dc

from ._cases import Case, Inputs, register_case

__all__ = ["oracle_dies_on_7", "oracle_fails_on_7"]


# Oracles for the executor tests: module-level, so that spawned worker processes and
# cluster workers can import them.
def oracle_fails_on_7(t: np.ndarray) -> np.ndarray:
    """The identity, except that an instance whose first entry is 7 raises."""
    if t[0] == 7.0:
        raise ArithmeticError("bad instance")
    return t


def oracle_dies_on_7(t: np.ndarray) -> np.ndarray:
    """The identity, except that the worker process dies on an instance starting with 7."""
    if t[0] == 7.0:
        import os

        os._exit(3)
    return t

_S = dc.solvers


def _scores(shape: tuple[int, ...], **kwargs: Any) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return ((rng.integers(-4, 5, size=shape) / 2).astype(dtype),), dict(kwargs)

    return make


def _costs(shape: tuple[int, ...], **kwargs: Any) -> Any:
    """Non-positive scores (negated costs in {0, 0.5, …, 2}), for the Warcraft grid."""

    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return (-(rng.integers(0, 5, size=shape) / 2).astype(dtype),), dict(kwargs)

    return make


register_case(Case("shortest_path_dag", _S.shortest_path_dag, _scores((2, 3, 24), grid=(4, 4))))
register_case(Case("shortest_path_dag[unbatched]", _S.shortest_path_dag, _scores((17,), grid=(3, 4))))
register_case(Case("shortest_path_dag[1xW]", _S.shortest_path_dag, _scores((3, 4), grid=(1, 5))))
register_case(Case("shortest_path_grid", _S.shortest_path_grid, _costs((3, 4, 5))))
register_case(Case("shortest_path_grid[device]", _S.shortest_path_grid, _costs((3, 4, 5), method="device")))
