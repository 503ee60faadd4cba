"""Batched combinatorial oracles ``y*(θ) = argmax_{y ∈ Y} <θ, y>``.

Every solver maximises a score; solvers users think of as minimising take
``θ = -cost``. Leading axes of ``theta`` are batch axes.
"""

from ._basic import argmax, permutation, rank, sort, top_k
from ._host import SolverError
from ._paths import grid_dag_arcs, shortest_path_dag, shortest_path_grid

__all__ = [
    "SolverError",
    "argmax",
    "grid_dag_arcs",
    "permutation",
    "rank",
    "shortest_path_dag",
    "shortest_path_grid",
    "sort",
    "top_k",
]
