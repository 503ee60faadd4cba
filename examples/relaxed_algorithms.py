"""Relaxing your own algorithm with dopt's relaxed control flow (AlgoVision's method).

Two classic algorithms written with :func:`dopt_core.relax.soft_compare`,
:func:`~dopt_core.relax.soft_if` and :func:`~dopt_core.relax.soft_min`, checked against
the exact answers as the inverse temperature ``beta`` grows:

* bubble sort (n-1 passes of "if a[i] > a[i+1]: swap"), which also returns the expected
  number of swaps — a relaxed inversion count;
* Bellman-Ford on an 8-neighbour grid with vertex costs, compared with SciPy's Dijkstra.

The relaxed versions are differentiable in their inputs (values, costs) on every backend.

    python examples/relaxed_algorithms.py
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from dopt_core.relax import soft_compare, soft_if, soft_min


def relaxed_bubble_sort(x: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Relaxed bubble sort along the last axis: (sorted values, expected number of swaps)."""
    cols = [x[..., i] for i in range(x.shape[-1])]
    swaps = np.zeros(x.shape[:-1])
    for _ in range(len(cols) - 1):
        for i in range(len(cols) - 1):
            p = soft_compare(cols[i], cols[i + 1], beta=beta)  # Pr[a[i] > a[i+1]]
            cols[i], cols[i + 1] = (
                soft_if(p, cols[i + 1], cols[i]),
                soft_if(p, cols[i], cols[i + 1]),
            )
            swaps = swaps + p
    return np.stack(cols, -1), swaps


def relaxed_grid_distances(cost: np.ndarray, beta: float) -> np.ndarray:
    """Relaxed Bellman-Ford: shortest-path cost from the top-left cell to every cell."""
    H, W = cost.shape
    big = 1e6
    d = np.full((H, W), big)
    d[0, 0] = cost[0, 0]
    for _ in range(H * W):
        pad = np.pad(d, 1, constant_values=big)
        neighbours = np.stack(
            [
                pad[1 + di : 1 + di + H, 1 + dj : 1 + dj + W]
                for di, dj in itertools.product((-1, 0, 1), repeat=2)
                if (di, dj) != (0, 0)
            ],
            -1,
        )
        d = cost + soft_min(neighbours, beta=beta)
        d[0, 0] = cost[0, 0]
    return d


def exact_grid_distances(cost: np.ndarray) -> np.ndarray:
    H, W = cost.shape
    rows, cols, vals = [], [], []
    for i, j in itertools.product(range(H), range(W)):
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            if (di, dj) != (0, 0) and 0 <= i + di < H and 0 <= j + dj < W:
                rows.append(i * W + j)
                cols.append((i + di) * W + j + dj)
                vals.append(cost[i + di, j + dj])
    graph = csr_matrix((vals, (rows, cols)), shape=(H * W, H * W))
    return dijkstra(graph, indices=0).reshape(H, W) + cost[0, 0]


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6))
    inversions = np.array([sum(r[i] > r[j] for i in range(6) for j in range(i + 1, 6)) for r in x])
    print("relaxed bubble sort: max |sorted - np.sort|, max |E[swaps] - inversions|")
    for beta in (1.0, 10.0, 100.0, 1e4):
        y, swaps = relaxed_bubble_sort(x, beta)
        err_sort = np.abs(y - np.sort(x, -1)).max()
        err_swaps = np.abs(swaps - inversions).max()
        print(f"  beta {beta:8.0f}: {err_sort:.2e}  {err_swaps:.2e}")
    cost = 1 / (1 + np.exp(-4 * rng.normal(size=(8, 8)))) + 0.2
    exact = exact_grid_distances(cost)
    print("relaxed grid Bellman-Ford: max |d - Dijkstra|")
    for beta in (1.0, 10.0, 100.0, 1e4):
        print(f"  beta {beta:8.0f}: {np.abs(relaxed_grid_distances(cost, beta) - exact).max():.2e}")


if __name__ == "__main__":
    main()
