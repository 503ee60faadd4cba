"""An OR-Tools CP-SAT model as a dopt solver, trained through with SPO+.

PyEPO users asked for OR-Tools and CP-SAT back ends. In dopt any per-instance model
becomes a batched solver with :func:`dopt_core.solvers.solver`: write a function that
solves one instance (here a CP-SAT model of PyEPO's two-dimensional knapsack,
:func:`dopt_core.data.knapsack` with ``dim=2``), lift it, and pass ``executor=`` to
spread the instances of each batch over worker processes. The lifted solver works
wherever a dopt solver does — here inside the SPO+ loss (Elmachtoub & Grigas 2022)
of a linear model trained in NumPy with the core's explicit VJP.

CP-SAT solves integer programs: the two-decimal weights and the capacities are
scaled by 100 (exact), and the real-valued scores a model predicts are rounded to
``1e-4`` (:data:`SCALE`) — the optimum of the rounded objective, exact for integer
scores (the generator's item values).

The script checks that the CP-SAT solver's objective equals HiGHS' on the test set
(``dc.solvers.knapsack(..., method="milp")``), then prints the normalized regret
before and after training.

Usage::

    python examples/cpsat_solver.py            # 1000 training instances, 2 workers
    python examples/cpsat_solver.py --quick    # a few seconds (the test's setting)
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import time
from concurrent.futures import Executor, ProcessPoolExecutor

import numpy as np

import dopt_core as dc

#: The predicted scores are rounded to multiples of 1/SCALE for CP-SAT.
SCALE = 10_000


def cpsat_knapsack(theta: np.ndarray, *, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """One instance: ``max θᵀy`` s.t. ``W y <= C``, ``y ∈ {0, 1}^n``, by CP-SAT.

    Module-level (with its data bound by ``functools.partial``) so that worker
    processes can unpickle it.
    """
    from ortools.sat.python import cp_model  # lazy: ortools is an optional extra

    n = theta.shape[0]
    model = cp_model.CpModel()
    y = [model.NewBoolVar(f"y{i}") for i in range(n)]
    w = np.round(np.asarray(weights) * 100).astype(int)  # PyEPO's weights: two decimals
    cap = np.floor(np.asarray(capacity) * 100 + 1e-9).astype(int)
    for row, c in zip(w, cap, strict=True):
        model.Add(sum(int(a) * v for a, v in zip(row, y, strict=True)) <= int(c))
    score = np.round(np.asarray(theta, dtype=np.float64) * SCALE).astype(int)
    model.Maximize(sum(int(s) * v for s, v in zip(score, y, strict=True)))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # one thread per instance: the executor parallelises
    status = solver.Solve(model)
    if status != cp_model.OPTIMAL:
        raise RuntimeError(f"CP-SAT status {solver.StatusName(status)}")
    return np.array([float(solver.Value(v)) for v in y])


def make_solver(weights: np.ndarray, capacity: np.ndarray, executor: Executor | None = None):  # type: ignore[no-untyped-def]
    """The CP-SAT model lifted to a batched dopt solver (``executor``: its default pool)."""
    fn = functools.partial(cpsat_knapsack, weights=weights, capacity=capacity)
    return dc.solvers.solver(fn, executor=executor, name="cpsat_knapsack")


class Adam:
    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        self.t += 1
        for i, g in enumerate(grads):
            self.m[i] = 0.9 * self.m[i] + 0.1 * g
            self.v[i] = 0.999 * self.v[i] + 0.001 * g * g
            mh, vh = self.m[i] / (1 - 0.9**self.t), self.v[i] / (1 - 0.999**self.t)
            self.params[i] = self.params[i] - self.lr * mh / (np.sqrt(vh) + 1e-8)
        return self.params


def run(
    num_train: int = 1000,
    num_test: int = 200,
    num_items: int = 20,
    epochs: int = 3,
    workers: int = 2,
    seed: int = 135,
) -> dict[str, float]:
    """Train a linear model with SPO+ through the CP-SAT solver; return the metrics."""
    weights, x, values = dc.data.knapsack(
        num_train + num_test, 5, num_items, dim=2, deg=4, noise_width=0.5, seed=seed
    )
    capacity = np.full(2, 0.25 * weights.sum(axis=1).min())  # a quarter of the items fit
    x_tr, v_tr, x_te, v_te = x[:num_train], values[:num_train], x[num_train:], values[num_train:]
    out: dict[str, float] = {}
    # spawn, not fork: a process running JAX or torch threads must not fork
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        solver = make_solver(weights, capacity, executor=pool)
        t0 = time.perf_counter()
        y_te = solver(v_te)
        out["cpsat_seconds_test_set"] = time.perf_counter() - t0
        y_highs = dc.solvers.knapsack(v_te, weights, capacity, method="milp")
        gap = np.abs(np.sum(v_te * y_te, axis=-1) - np.sum(v_te * y_highs, axis=-1)).max()
        out["max_objective_gap_vs_highs"] = float(gap)
        loss = dc.spo_plus_loss(solver)
        rng = np.random.default_rng(seed)
        W, b = rng.normal(scale=0.1, size=(5, num_items)), np.zeros(num_items)
        out["regret_before"] = dc.normalized_regret(solver, x_te @ W + b, v_te)
        adam = Adam([W, b], 1e-2)
        t0 = time.perf_counter()
        for _ in range(epochs):
            for idx in np.array_split(rng.permutation(num_train), max(1, num_train // 32)):
                _, vjp = dc.value_and_vjp(loss, x_tr[idx] @ W + b, v_tr[idx])
                g = vjp(np.array(1.0))  # dL/dθ̂ with θ̂ = xW + b (values are scores)
                W, b = adam.step([x_tr[idx].T @ g, g.sum(0)])
        out["train_seconds"] = time.perf_counter() - t0
        out["regret_after"] = dc.normalized_regret(solver, x_te @ W + b, v_te)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny setting (seconds)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        res = run(num_train=64, num_test=32, num_items=10, epochs=2, workers=args.workers)
    else:
        res = run(epochs=args.epochs, workers=args.workers)
    for k, v in res.items():
        print(f"{k:>28}: {v:.4g}")


if __name__ == "__main__":
    main()
