"""Agreement with PyEPO on the same instances (optional: skipped without pyepo + gurobipy)."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest

import dopt_core as dc

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyepo") is None or importlib.util.find_spec("gurobipy") is None,
    reason="pyepo and gurobipy not installed",
)
GRID = (5, 5)


def _pyepo_solutions(optmodel, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    sols, objs = [], []
    for c in costs:
        optmodel.setObj(c)
        w, z = optmodel.solve()
        sols.append(w)
        objs.append(z)
    return np.array(sols, dtype=np.float64), np.array(objs, dtype=np.float64)


def test_spo_plus_equals_pyepo() -> None:
    torch = pytest.importorskip("torch")
    import pyepo

    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs = dc.data.shortest_path(16, 5, GRID, deg=2, noise_width=0.5, seed=3)
    pred = costs + np.random.default_rng(0).normal(scale=0.5, size=costs.shape)
    w, z = _pyepo_solutions(optmodel, costs)
    spop = pyepo.func.SPOPlus(optmodel, processes=1)
    cp = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    loss = spop(cp, torch.tensor(costs), torch.tensor(w), torch.tensor(z).reshape(-1, 1))
    loss.backward()

    solver = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
    ours = dc.spo_plus_loss(solver)
    value, vjp = dc.value_and_vjp(ours, -pred, -costs, w)
    np.testing.assert_allclose(float(value), loss.item(), rtol=1e-6)
    # our gradient is with respect to θ̂ = -ĉ
    np.testing.assert_allclose(-vjp(np.array(1.0)), cp.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_regret_equals_pyepo() -> None:
    import pyepo

    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs = dc.data.shortest_path(12, 5, GRID, deg=2, noise_width=0.5, seed=4)
    pred = costs + np.random.default_rng(1).normal(scale=0.5, size=costs.shape)
    w_hat, _ = _pyepo_solutions(optmodel, pred)
    w, z = _pyepo_solutions(optmodel, costs)
    theirs = np.sum(costs * w_hat, axis=1) - z  # regret in cost form
    solver = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
    np.testing.assert_allclose(dc.regret(solver, -pred, -costs), theirs, rtol=1e-6, atol=1e-6)  # Gurobi tolerances
