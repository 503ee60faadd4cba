"""Every decision-focused-learning method dopt has, in PyEPO's training benchmark setting.

Shortest path on the 5×5 grid DAG (40 arcs), data from dopt's PyEPO-equal generator
(``deg=4``, ``noise_width=0.5``, 5 features), 1000 training and 1000 test instances,
a linear model (``torch.nn.Linear(5, 40)``), batch 32, Adam with learning rate 1e-2,
20 epochs — trained in PyTorch with each method, for 3 seeds. Prints the normalized
test regret (mean ± std over seeds) and the training time per method, and saves a
figure to ``docs/figures/pyepo_methods.png`` (when matplotlib is installed).

Methods (score form θ̂ = -ĉ; "→ |y - y*|²" means the layer's output is compared with
the true solution):

* SPO+ (:func:`dopt_core.spo_plus_loss`), PFY (:func:`dopt_core.fenchel_young_loss`,
  σ = 1, 10 samples), DPO (:func:`dopt_core.perturbed` → |y - y*|²), NID
  (:func:`dopt_core.identity` → |y - y*|²), DBB (:func:`dopt_core.interpolation`,
  λ = 10 → |y - y*|²), I-MLE and AI-MLE (:func:`dopt_core.imle`,
  :func:`dopt_core.aimle`, sum-of-gamma κ = 8, 10 samples → |y - y*|²);
* PG back / central (:func:`dopt_core.perturbation_gradient_loss`, σ = 0.1);
* NCE, CMAP, pointwise / pairwise / listwise LTR (:mod:`dopt_core.pool`, a
  :class:`dopt_core.SolutionPool` of the training solutions grown with
  ``solve_ratio=0.05``);
* RFY (:func:`dopt_core.regularized_fenchel_young_loss`, λ = 1, at most 10 Frank-Wolfe steps);
* CaVE-E and CaVE+ (:func:`dopt_core.cave_loss`, exact and 20-step projections);
* two-stage (least squares on the costs), the decision-blind baseline.

    python examples/pyepo_methods.py            # the full benchmark
    python examples/pyepo_methods.py --quick    # a few steps of each method (the test)
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dopt_core as dc
import dopt_torch as dt

GRID = (5, 5)
SOLVER = functools.partial(dt.solvers.shortest_path_dag, grid=GRID)
PATH_LENGTH = GRID[0] + GRID[1] - 2
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "pyepo_methods.png"

# one training step's loss: (theta_hat, batch, state) -> scalar tensor; the batch holds
# x, c (true costs), y (true solutions), normals (CaVE), idx; state: pool, rng
Loss = Callable[[torch.Tensor, dict[str, torch.Tensor], dict[str, Any]], torch.Tensor]


def _sq(y: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    return ((y - y_true) ** 2).sum(-1).mean()


def _layer(make: Callable[[], Any], *, stochastic: bool) -> Callable[[], Loss]:
    def build() -> Loss:
        layer = make()

        def loss(theta: torch.Tensor, b: dict[str, torch.Tensor], st: dict[str, Any]) -> torch.Tensor:
            kw = {"rng": st["gen"]} if stochastic else {}
            return _sq(layer(theta, **kw), b["y"])

        return loss

    return build


def _pool_method(fn: Callable[..., Any], target: str, **kw: Any) -> Callable[[], Loss]:
    def build() -> Loss:
        def loss(theta: torch.Tensor, b: dict[str, torch.Tensor], st: dict[str, Any]) -> torch.Tensor:
            st["pool"].update(theta.detach(), SOLVER, solve_ratio=0.05, rng=st["np_rng"])
            tgt = b["y"] if target == "y" else -b["c"]
            return fn(theta, tgt, st["pool"], **kw)

        return loss

    return build


def _simple(make: Callable[[], Any], args: Callable[[dict[str, torch.Tensor]], tuple[Any, ...]],
            *, stochastic: bool = False) -> Callable[[], Loss]:
    def build() -> Loss:
        f = make()

        def loss(theta: torch.Tensor, b: dict[str, torch.Tensor], st: dict[str, Any]) -> torch.Tensor:
            kw = {"rng": st["gen"]} if stochastic else {}
            return f(theta, *args(b), **kw)

        return loss

    return build


METHODS: dict[str, Callable[[], Loss]] = {
    "SPO+": _simple(lambda: dt.spo_plus_loss(SOLVER), lambda b: (-b["c"], b["y"])),
    "PFY": _simple(lambda: dt.fenchel_young_loss(SOLVER, sigma=1.0, num_samples=10), lambda b: (b["y"],),
                   stochastic=True),
    "DPO": _layer(lambda: dt.perturbed(SOLVER, sigma=1.0, num_samples=10), stochastic=True),
    "NID": _layer(lambda: dt.identity(SOLVER), stochastic=False),
    "DBB": _layer(lambda: dt.interpolation(SOLVER, lam=10.0), stochastic=False),
    "I-MLE": _layer(lambda: dt.imle(SOLVER, lam=10.0, num_samples=10, kappa=float(PATH_LENGTH)), stochastic=True),
    "AI-MLE": _layer(lambda: dt.aimle(SOLVER, num_samples=10, kappa=float(PATH_LENGTH)), stochastic=True),
    "PG back": _simple(lambda: dt.perturbation_gradient_loss(SOLVER, sigma=0.1), lambda b: (-b["c"],)),
    "PG central": _simple(lambda: dt.perturbation_gradient_loss(SOLVER, sigma=0.1, two_sided=True),
                          lambda b: (-b["c"],)),
    "NCE": _pool_method(dt.nce_loss, "y"),
    "CMAP": _pool_method(dt.cmap_loss, "y"),
    "LTR pointwise": _pool_method(dt.ltr_loss, "c", kind="pointwise"),
    "LTR pairwise": _pool_method(dt.ltr_loss, "c", kind="pairwise"),
    "LTR listwise": _pool_method(dt.ltr_loss, "c", kind="listwise"),
    "CaVE+": _simple(lambda: functools.partial(dt.cave_loss, method="pgd", max_iter=20), lambda b: (b["normals"],)),
    "two-stage": _simple(lambda: lambda theta, c: ((theta + c) ** 2).sum(-1).mean(), lambda b: (b["c"],)),
    "RFY": _simple(lambda: dt.regularized_fenchel_young_loss(SOLVER, lam=1.0, max_iter=10, tol=1e-4),
                   lambda b: (b["y"],)),
    "CaVE-E": _simple(lambda: functools.partial(dt.cave_loss, method="exact"), lambda b: (b["normals"],)),
}


def make_data(num_train: int, num_test: int, seed: int = 135) -> dict[str, torch.Tensor]:
    x, c = dc.data.shortest_path(num_train + num_test, 5, GRID, deg=4, noise_width=0.5, seed=seed)
    X, C = torch.tensor(x), torch.tensor(c)
    Y = SOLVER(-C)
    normals = dt.shortest_path_normals(Y[:num_train], GRID)
    return {"x": X[:num_train], "c": C[:num_train], "y": Y[:num_train], "normals": normals,
            "x_test": X[num_train:], "c_test": C[num_train:]}


def train(data: dict[str, torch.Tensor], method: str, *, epochs: int, seed: int, lr: float = 1e-2,
          batch_size: int = 32) -> tuple[float, float]:
    """(normalized test regret, training seconds) of one method and seed."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, data["c"].shape[1], dtype=torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = METHODS[method]()
    state = {"gen": torch.Generator().manual_seed(seed), "np_rng": np.random.default_rng(seed),
             "pool": dt.SolutionPool(data["y"])}
    n = data["x"].shape[0]
    perm_rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.as_tensor(perm_rng.permutation(n))
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            batch = {k: data[k][idx] for k in ("x", "c", "y", "normals")}
            theta = -model(batch["x"])
            loss = loss_fn(theta, batch, state)
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        theta_test = -model(data["x_test"])
    return dc.normalized_regret(SOLVER, theta_test, -data["c_test"]), seconds


def run(*, epochs: int, seeds: int, num_train: int, num_test: int, methods: list[str] | None = None,
        progress: bool = True) -> dict[str, tuple[list[float], list[float]]]:
    data = make_data(num_train, num_test)
    results: dict[str, tuple[list[float], list[float]]] = {}
    for method in methods or list(METHODS):
        regrets, times = [], []
        for seed in range(seeds):
            r, s = train(data, method, epochs=epochs, seed=seed)
            regrets.append(r)
            times.append(s)
        results[method] = (regrets, times)
        if progress:
            print(f"{method:<15} regret {np.mean(regrets):.4f} ± {np.std(regrets):.4f}   "
                  f"train {np.mean(times):7.2f} s", flush=True)
    return results


def plot(results: dict[str, tuple[list[float], list[float]]], path: Path, *,
         epochs: int = 20) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(results)
    reg = np.array([np.mean(results[m][0]) for m in names])
    reg_sd = np.array([np.std(results[m][0]) for m in names])
    sec = np.array([np.mean(results[m][1]) for m in names])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    pos = np.arange(len(names))
    a1.barh(pos, reg, xerr=reg_sd, color="tab:blue", alpha=0.8)
    a1.set_yticks(pos, names)
    a1.invert_yaxis()
    seeds = len(results[names[0]][0])
    a1.set_xlabel(f"normalized test regret (mean ± std, {seeds} seeds)")
    a2.barh(pos, sec, color="tab:orange", alpha=0.8)
    a2.set_xlabel(f"training time, s ({epochs} epochs, CPU)")
    fig.suptitle("PyEPO's benchmark: 5×5 shortest path, deg 4, noise 0.5, linear model — dopt (torch)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> dict[str, tuple[list[float], list[float]]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps of each method (tests)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--methods", nargs="*", default=None, help="a subset of the methods")
    args = parser.parse_args(argv)
    if args.quick:
        results = run(epochs=1, seeds=1, num_train=32, num_test=32, progress=False)
    else:
        results = run(epochs=args.epochs, seeds=args.seeds, num_train=1000, num_test=1000, methods=args.methods)
        print("\n| method | normalized test regret | train time (s) |\n|---|---|---|")
        for m, (r, s) in results.items():
            print(f"| {m} | {np.mean(r):.4f} ± {np.std(r):.4f} | {np.mean(s):.1f} |")
        if plot(results, args.figure, epochs=args.epochs):
            print(f"figure: {args.figure}")
    return results


if __name__ == "__main__":
    main()
