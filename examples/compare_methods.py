"""Eight dopt training methods on the 5×5 shortest-path benchmark, side by side.

(``examples/pyepo_methods.py`` runs all eighteen, in PyTorch, in PyEPO's setting.)

The same linear model (5 features → 40 arc costs), data (``deg=4``,
``noise_width=0.5``; 1000 train / 200 test), optimiser (Adam, learning rate 0.05,
batch 32) and seed, trained with:

* ``perturbed FY`` — :func:`dopt_core.fenchel_young_loss` (Normal noise, σ = 1, 10 samples);
* ``perturbed + squared`` — :func:`dopt_core.perturbed` then ``|y_ε - y|²``;
* ``identity`` / ``identity + standardize`` — :func:`dopt_core.identity` then ``|y - y_true|²``;
* ``interpolation`` — :func:`dopt_core.interpolation` (λ = 10) then ``|y - y_true|²``;
* ``I-MLE`` — :func:`dopt_core.imle` (sum-of-gamma noise, κ = 8 arcs per path, λ = 10);
* ``SPO+`` — :func:`dopt_core.spo_plus_loss` (needs the true costs);
* ``two-stage MSE`` — least squares on the costs, the decision-blind baseline.

All in NumPy with the core's explicit VJPs. Prints normalized test regret and time per
epoch, and saves the regret-per-epoch curves to ``docs/figures/compare_methods.png``
when matplotlib is installed.

    python examples/compare_methods.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from shortest_path import GRID, Adam, Problem, batches, init_params, make_problem, test_regret
from tqdm import tqdm

import dopt_core as dc

SOLVER = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
PATH_LENGTH = GRID[0] + GRID[1] - 2  # arcs on every top-left → bottom-right path

# Each method maps (theta_hat, costs, y_true, rng) to dL/dθ̂ for a batch (mean over it).
Gradient = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _through_layer(layer: Any, *, stochastic: bool) -> Gradient:
    """A decision layer followed by the squared loss |y - y_true|² (mean over the batch)."""

    def grad(theta: np.ndarray, costs: np.ndarray, y_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        kw = {"rng": rng} if stochastic else {}
        y, vjp = dc.value_and_vjp(layer, theta, **kw)
        return vjp(2 * (y - y_true) / len(theta))

    return grad


def _fenchel_young() -> Gradient:
    loss = dc.fenchel_young_loss(SOLVER, sigma=1.0, num_samples=10)

    def grad(theta: np.ndarray, costs: np.ndarray, y_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return dc.value_and_vjp(loss, theta, y_true, rng=rng)[1](np.array(1.0))

    return grad


def _spo_plus() -> Gradient:
    loss = dc.spo_plus_loss(SOLVER)

    def grad(theta: np.ndarray, costs: np.ndarray, y_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return dc.value_and_vjp(loss, theta, -costs, y_true)[1](np.array(1.0))

    return grad


def _two_stage(theta: np.ndarray, costs: np.ndarray, y_true: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 2 * (theta + costs) / len(theta)  # d/dθ̂ of mean |(-θ̂) - c|²


METHODS: dict[str, Callable[[], Gradient]] = {
    "perturbed FY": _fenchel_young,
    "perturbed + squared": lambda: _through_layer(dc.perturbed(SOLVER, sigma=1.0, num_samples=10), stochastic=True),
    "identity": lambda: _through_layer(dc.identity(SOLVER), stochastic=False),
    "identity + standardize": lambda: _through_layer(dc.identity(SOLVER, projection="standardize"), stochastic=False),
    "interpolation": lambda: _through_layer(dc.interpolation(SOLVER, lam=10.0), stochastic=False),
    "I-MLE": lambda: _through_layer(
        dc.imle(SOLVER, lam=10.0, num_samples=10, kappa=float(PATH_LENGTH)), stochastic=True
    ),
    "SPO+": _spo_plus,
    "two-stage MSE": lambda: _two_stage,
}


def train(problem: Problem, method: str, epochs: int, lr: float = 0.05, batch_size: int = 32, seed: int = 0,
          progress: bool = True) -> tuple[list[float], float]:
    """Regret after each epoch (index 0: untrained) and seconds per epoch."""
    grad_fn = METHODS[method]()
    params = list(init_params(seed))
    adam = Adam(params, lr)
    rng = np.random.default_rng(seed)
    curve = [test_regret(problem, *params)]
    spent = 0.0
    for _ in tqdm(range(epochs), desc=method, disable=not progress, leave=False):
        start = time.perf_counter()
        for idx in batches(len(problem.x_train), batch_size, rng):
            x = problem.x_train[idx]
            W, b = params
            g = grad_fn(-(x @ W + b), problem.c_train[idx], problem.y_train[idx], rng)
            params = adam.step([-(x.T @ g), -g.sum(0)])  # θ̂ = -(x W + b)
        spent += time.perf_counter() - start
        curve.append(test_regret(problem, *params))
    return curve, spent / max(epochs, 1)


def plot(curves: dict[str, list[float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        ax.plot(range(len(curve)), curve, marker="o", markersize=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalized regret (test)")
    ax.set_title("5×5 shortest path, deg 4, noise 0.5 — linear model")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--figure", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "figures" / "compare_methods.png")
    args = parser.parse_args()
    problem = make_problem()
    curves, timing = {}, {}
    for name in METHODS:
        curves[name], timing[name] = train(problem, name, args.epochs)
    print(f"\n5x5 shortest path, deg=4, noise 0.5, {args.epochs} epochs (NumPy, explicit VJPs)")
    print(f"{'method':<24} {'regret':>8} {'s/epoch':>8}")
    for name in METHODS:
        print(f"{name:<24} {curves[name][-1]:>8.4f} {timing[name]:>8.3f}")
    print(f"{'(untrained)':<24} {curves['SPO+'][0]:>8.4f}")
    if plot(curves, args.figure):
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
