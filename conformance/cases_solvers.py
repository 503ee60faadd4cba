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
register_case(
    Case("shortest_path_dag[unbatched]", _S.shortest_path_dag, _scores((17,), grid=(3, 4)))
)
register_case(Case("shortest_path_dag[1xW]", _S.shortest_path_dag, _scores((3, 4), grid=(1, 5))))
register_case(Case("shortest_path_grid", _S.shortest_path_grid, _costs((3, 3, 4))))
register_case(
    Case("shortest_path_grid[device]", _S.shortest_path_grid, _costs((3, 3, 4), method="device"))
)


def _pair_oracle(t: np.ndarray) -> np.ndarray:
    """A user oracle: the best two adjacent entries (the first such pair on ties)."""
    k = int(np.argmax(t[:-1] + t[1:]))
    y = np.zeros(t.shape)
    y[k : k + 2] = 1.0
    return y


_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 4), (4, 3), (2, 4)]

register_case(Case("linear_assignment", _S.linear_assignment, _scores((2, 3, 4, 4))))
register_case(
    Case("spanning_tree", _S.spanning_tree, _scores((3, 2, len(_EDGES)), edges=_EDGES, num_nodes=5))
)
register_case(
    Case(
        "spanning_tree[forest]",
        _S.spanning_tree,
        _scores((4, 3), edges=[(0, 1), (2, 3), (3, 4)], num_nodes=6, forest=True),
    )
)
register_case(Case("arborescence", _S.arborescence, _scores((3, 2, 5, 5))))
register_case(Case("arborescence[root=2]", _S.arborescence, _scores((4, 4, 4), root=2)))
register_case(
    Case("knapsack", _S.knapsack, _scores((3, 2, 6), weights=[3, 1, 4, 1, 5, 0], capacity=7))
)
register_case(
    Case("knapsack[unbatched]", _S.knapsack, _scores((5,), weights=[2, 2, 3, 9, 1], capacity=5))
)
register_case(
    Case(
        "linear_program",
        _S.linear_program,
        _scores(
            (3, 4),
            A_ub=[[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 1.0, 0.0]],
            b_ub=[2.0, 2.0],
            bounds=(0, 1),
        ),
    )
)
register_case(
    Case("milp", _S.milp, _scores((2, 2, 3), A_ub=[[2.0, 3.0, 1.0]], b_ub=[5.0], bounds=(0, 2)))
)
register_case(Case("solver[host]", _S.solver(_pair_oracle), _scores((3, 2, 6))))
register_case(
    Case("solver[device]", _S.solver(_S.argmax, host=False, batched=True), _scores((3, 7)))
)
