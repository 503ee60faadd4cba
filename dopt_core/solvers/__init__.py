"""Batched combinatorial oracles ``y*(θ) = argmax_{y ∈ Y} <θ, y>``.

Every solver maximises a score; solvers users think of as minimising take
``θ = -cost``. Leading axes of ``theta`` are batch axes.
"""

from ._basic import argmax, permutation, rank, sort, top_k
from ._graphs import arborescence, linear_assignment, spanning_tree
from ._host import SolverError
from ._knapsack import knapsack
from ._lp import linear_program, milp
from ._oracle import solver
from ._paths import grid_dag_arcs, shortest_path_dag, shortest_path_grid
from ._portfolio import portfolio
from ._tsp import tsp

__all__ = [
    "SolverError",
    "arborescence",
    "argmax",
    "grid_dag_arcs",
    "knapsack",
    "linear_assignment",
    "linear_program",
    "milp",
    "permutation",
    "portfolio",
    "rank",
    "shortest_path_dag",
    "shortest_path_grid",
    "solver",
    "sort",
    "spanning_tree",
    "top_k",
    "tsp",
]
