"""examples/cpsat_solver.py: a CP-SAT model lifted with dc.solvers.solver, over processes."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

import dopt_core as dc

pytest.importorskip("ortools", reason="ortools not installed")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))  # importable by name in spawned workers


def test_cpsat_solver_equals_highs_and_trains() -> None:
    example = importlib.import_module("cpsat_solver")
    res = example.run(num_train=64, num_test=32, num_items=10, epochs=2, workers=2)
    assert res["max_objective_gap_vs_highs"] == 0.0  # integer values: the same optimum
    assert res["regret_before"] > 0.3
    assert res["regret_after"] < 0.9 * res["regret_before"], res


def test_cpsat_oracle_by_enumeration_and_its_errors() -> None:
    example = importlib.import_module("cpsat_solver")
    rng = np.random.default_rng(0)
    weights = np.round(rng.uniform(3, 8, size=(2, 6)), 2)
    capacity = np.array([12.0, 10.5])
    solver = example.make_solver(weights, capacity)
    theta = rng.integers(-3, 10, size=(2, 3, 6)).astype(np.float64)
    y = solver(theta)
    assert y.shape == theta.shape
    np.testing.assert_array_equal(
        np.sum(theta * y, axis=-1),
        np.sum(theta * dc.solvers.knapsack(theta, weights, capacity, method="milp"), axis=-1),
    )
    bad = example.make_solver(weights, np.array([-1.0, 1.0]))  # infeasible: CP-SAT raises
    with pytest.raises(
        dc.solvers.SolverError, match=r"cpsat_knapsack failed on instance \(0,\).*INFEASIBLE"
    ):
        bad(theta[0])
