"""Per-step time of dopt's decision-focused-learning losses against PyEPO's (run by hand).

One training step (forward + backward through a linear model, batch 32) on PyEPO's
5×5 shortest-path benchmark for each method added in issue 18 — AI-MLE, PG (back and
central), NCE, CMAP, the three LTR losses, RFY (Frank-Wolfe), CaVE-E and CaVE+ —
with dopt's batched DP solver in PyTorch. Where PyEPO and a solver back end it can use
(Gurobi) are installed, the same step with PyEPO's module and its
``shortestPathModel`` is timed too and the ratio printed (target: ≥ 20× per step).
PyEPO is optional: ``pip install -c constraints.txt -e '.[bench]'``.

    python benchmarks/dfl.py
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc

GRID = (5, 5)
BATCH = 32


def timeit(fn: Callable[[], Any], *, repeat: int = 15, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def dopt_steps() -> dict[str, Callable[[], None]]:
    import torch

    import dopt_torch as dt

    solver = functools.partial(dt.solvers.shortest_path_dag, grid=GRID)
    x, c = dc.data.shortest_path(1000, 5, GRID, deg=4, noise_width=0.5, seed=1)
    X = torch.tensor(x[:BATCH], dtype=torch.float64)
    C = torch.tensor(c[:BATCH], dtype=torch.float64)
    Y_all = solver(-torch.tensor(c))
    Y = Y_all[:BATCH]
    normals = dt.shortest_path_normals(Y, GRID)
    model = torch.nn.Linear(5, 40).double()
    pool = dt.SolutionPool(Y_all)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    aimle = dt.aimle(solver, num_samples=10, kappa=8.0)
    pg = dt.perturbation_gradient_loss(solver, sigma=0.1)
    pgc = dt.perturbation_gradient_loss(solver, sigma=0.1, two_sided=True)
    rfy = dt.regularized_fenchel_young_loss(solver, lam=1.0, max_iter=10, tol=1e-4)

    def pooled(fn: Callable[..., Any], target: Any, **kw: Any) -> Callable[[Any], Any]:
        def loss(theta: Any) -> Any:
            pool.update(theta.detach(), solver, solve_ratio=0.05, rng=rng)
            return fn(theta, target, pool, **kw)

        return loss

    losses: dict[str, Callable[[Any], Any]] = {
        "AI-MLE": lambda t: ((aimle(t, rng=gen) - Y) ** 2).sum(),
        "PG back": lambda t: pg(t, -C),
        "PG central": lambda t: pgc(t, -C),
        "NCE": pooled(dt.nce_loss, Y),
        "CMAP": pooled(dt.cmap_loss, Y),
        "LTR pointwise": pooled(dt.ltr_loss, -C, kind="pointwise"),
        "LTR pairwise": pooled(dt.ltr_loss, -C, kind="pairwise"),
        "LTR listwise": pooled(dt.ltr_loss, -C, kind="listwise"),
        "RFY (10 FW steps)": lambda t: rfy(t, Y),
        "CaVE-E": lambda t: dt.cave_loss(t, normals),
        "CaVE+": lambda t: dt.cave_loss(t, normals, method="pgd"),
    }

    def step(loss: Callable[[Any], Any]) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad()
            loss(-model(X)).backward()

        return run

    return {name: step(loss) for name, loss in losses.items()}


def pyepo_steps() -> dict[str, Callable[[], None]] | None:
    """PyEPO's modules on the same step (only where PyEPO and Gurobi are installed)."""
    if importlib.util.find_spec("pyepo") is None or importlib.util.find_spec("gurobipy") is None:
        return None
    import pyepo  # type: ignore[import-not-found]
    import torch

    x, c = dc.data.shortest_path(1000, 5, GRID, deg=4, noise_width=0.5, seed=1)
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    data = pyepo.data.dataset.optDataset(optmodel, x, c)
    X = torch.tensor(x[:BATCH], dtype=torch.float64)
    C = torch.tensor(c[:BATCH], dtype=torch.float64)
    W = torch.tensor(np.asarray(data.sols[:BATCH]), dtype=torch.float64)
    Z = torch.tensor(np.asarray(data.objs[:BATCH]))
    model = torch.nn.Linear(5, 40).double()
    f = pyepo.func
    mods = {
        "AI-MLE": (f.adaptiveImplicitMLE(optmodel, n_samples=10, sigma=1.0), lambda m, cp: ((m(cp) - W) ** 2).sum()),
        "PG back": (f.perturbationGradient(optmodel, sigma=0.1), lambda m, cp: m(cp, C)),
        "NCE": (f.NCE(optmodel, solve_ratio=0.05, dataset=data), lambda m, cp: m(cp, W)),
        "CMAP": (f.contrastiveMAP(optmodel, solve_ratio=0.05, dataset=data), lambda m, cp: m(cp, W)),
        "LTR pointwise": (f.pointwiseLearningToRank(optmodel, solve_ratio=0.05, dataset=data), lambda m, cp: m(cp, C)),
        "LTR pairwise": (f.pairwiseLearningToRank(optmodel, solve_ratio=0.05, dataset=data), lambda m, cp: m(cp, C)),
        "LTR listwise": (f.listwiseLearningToRank(optmodel, solve_ratio=0.05, dataset=data), lambda m, cp: m(cp, C)),
    }
    del Z
    out = {}
    for name, (mod, call) in mods.items():
        def run(mod: Any = mod, call: Any = call) -> None:
            model.zero_grad()
            call(mod, model(X)).backward()

        out[name] = run
    return out


def main() -> None:
    print(f"one training step, 5x5 shortest path, batch {BATCH} (median of 15), PyTorch CPU")
    ours = {name: timeit(fn) for name, fn in dopt_steps().items()}
    peers = pyepo_steps()
    theirs = {} if peers is None else {name: timeit(fn, repeat=5) for name, fn in peers.items()}
    print(f"{'method':<20} {'dopt ms':>9} {'PyEPO ms':>9} {'ratio':>7}")
    for name, t in ours.items():
        p = theirs.get(name)
        extra = f"{p * 1e3:>9.2f} {p / t:>6.1f}x" if p is not None else f"{'—':>9} {'':>7}"
        print(f"{name:<20} {t * 1e3:>9.2f} {extra}")
    if peers is None:
        print("(PyEPO or gurobipy not installed: no peer column)")


if __name__ == "__main__":
    main()
