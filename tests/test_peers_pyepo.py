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


def test_perturbed_fenchel_young_gradient_matches_pyepo_in_law() -> None:
    """PyEPO's PFY gradient (cost form, its own noise) and ours agree within Monte-Carlo
    error: both estimate w* - E[w*(ĉ + σξ)] (ours as -(y_ε(θ) - y) with θ = -ĉ).
    Every entry is a difference of two Bernoulli means: tolerance 5 standard errors."""
    torch = pytest.importorskip("torch")
    import pyepo

    m, sigma = 3000, 1.0
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs = dc.data.shortest_path(3, 5, GRID, deg=2, noise_width=0.5, seed=5)
    pred = costs + np.random.default_rng(2).normal(scale=0.3, size=costs.shape)
    w, _ = _pyepo_solutions(optmodel, costs)
    pfy = pyepo.func.perturbedFenchelYoung(optmodel, n_samples=m, sigma=sigma, processes=1, seed=7)
    cp = torch.tensor(pred, requires_grad=True)
    pfy(cp, torch.tensor(w)).backward()
    theirs = cp.grad.numpy() * len(pred)  # undo the batch mean

    solver = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
    y_eps = dc.perturbed(solver, sigma=sigma, num_samples=m)(-pred, rng=8)
    ours = w - y_eps
    p = np.clip((y_eps + (w - theirs)) / 2, 0, 1)  # pooled estimate of E[w*(ĉ + σξ)]
    se = np.sqrt(2 * p * (1 - p) / m) + 1e-12
    assert np.all(np.abs(ours - theirs) <= 5 * se + 1e-9)
    assert np.abs(ours).max() > 0.1  # the gradient is not trivially zero
