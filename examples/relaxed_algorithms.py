"""Relaxing your own algorithm with dopt's relaxed control flow (AlgoVision's method).

Three classic algorithms written with :func:`dopt_core.relax.soft_compare`,
:func:`~dopt_core.relax.soft_if` and :func:`~dopt_core.relax.soft_min`, checked against
the exact answers as the inverse temperature ``beta`` grows:

* bubble sort (n-1 passes of "if a[i] > a[i+1]: swap"), which also returns the expected
  number of swaps — a relaxed inversion count;
* Bellman-Ford on an 8-neighbour grid with vertex costs, compared with SciPy's Dijkstra,
  and its shortest path traced back through the soft predecessors (the softmin weights)
  with a T-conorm accumulating the path mask (AlgoVision's shortest-path demo);
* Levenshtein (edit) distance: the DP with a softmin over the three moves and
  ``1 - soft_eq`` substitution costs, compared with the exact DP.

The relaxed versions are smooth in their inputs (values, costs): they are built from dopt's
relaxed ops, which are differentiable on every backend, but the example itself runs them
in NumPy (``np.stack``, ``np.pad``) and computes no gradients.

    python examples/relaxed_algorithms.py [--quick]
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from dopt_core.relax import fuzzy, soft_argmin, soft_compare, soft_eq, soft_if, soft_min

_MOVES = [(di, dj) for di, dj in itertools.product((-1, 0, 1), repeat=2) if (di, dj) != (0, 0)]


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


def _neighbours(d: np.ndarray, big: float) -> np.ndarray:
    H, W = d.shape
    pad = np.pad(d, 1, constant_values=big)
    return np.stack([pad[1 + di : 1 + di + H, 1 + dj : 1 + dj + W] for di, dj in _MOVES], -1)


def relaxed_shortest_path(
    cost: np.ndarray, beta: float, tconorm: str = "probabilistic", p: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Relaxed Bellman-Ford from the top-left to the bottom-right cell with a T-conorm
    traceback: ``(distances, path mask)``.

    The soft predecessors of a cell are the softmin weights of its neighbours' distances;
    the traceback pushes a one-hot at the target through them, step by step, and
    accumulates the visited mass with the T-conorm ``tconorm`` (AlgoVision uses
    probabilistic, Hamacher p = 5, or Yager p = 1).
    """
    H, W = cost.shape
    big = 1e6
    d = relaxed_grid_distances(cost, beta)
    pred = soft_argmin(_neighbours(d, big), beta=beta)  # (H, W, 8): weight of each move
    source = np.zeros((H, W))
    source[0, 0] = 1.0
    pos = np.zeros((H, W))
    pos[-1, -1] = 1.0
    mask = pos.copy()
    for _ in range(H * W):
        moved = np.zeros((H + 2, W + 2))
        for k, (di, dj) in enumerate(_MOVES):  # mass at v goes to v + (di, dj)
            moved[1 + di : 1 + di + H, 1 + dj : 1 + dj + W] += pos * (1 - source) * pred[..., k]
        pos = moved[1:-1, 1:-1] + pos * source  # the source absorbs
        mask = fuzzy.tconorm(tconorm, mask, np.clip(pos, 0.0, 1.0), p=p)
    return d, mask


def exact_shortest_path(cost: np.ndarray) -> np.ndarray:
    """The cells of the shortest top-left -> bottom-right path (SciPy's Dijkstra)."""
    H, W = cost.shape
    rows, cols, vals = [], [], []
    for i, j in itertools.product(range(H), range(W)):
        for di, dj in _MOVES:
            if 0 <= i + di < H and 0 <= j + dj < W:
                rows.append(i * W + j)
                cols.append((i + di) * W + j + dj)
                vals.append(cost[i + di, j + dj])
    graph = csr_matrix((vals, (rows, cols)), shape=(H * W, H * W))
    _, pred = dijkstra(graph, indices=0, return_predecessors=True)
    mask = np.zeros(H * W)
    v = H * W - 1
    while v >= 0:
        mask[v] = 1.0
        v = pred[v]
    return mask.reshape(H, W)


def relaxed_levenshtein(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """Relaxed edit distance of two code sequences (last axis; leading axes batch).

    ``D[i, j] = softmin(D[i-1, j] + 1, D[i, j-1] + 1, D[i-1, j-1] + 1 - soft_eq(a_i, b_j))``
    with inverse temperature ``beta`` for both the softmin and the equality.
    """
    n, m = a.shape[-1], b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    prev = [np.full(batch, float(j)) for j in range(m + 1)]
    for i in range(1, n + 1):
        row = [np.full(batch, float(i))]
        for j in range(1, m + 1):
            sub = 1 - soft_eq(a[..., i - 1], b[..., j - 1], beta=beta)
            moves = np.stack([prev[j] + 1, row[j - 1] + 1, prev[j - 1] + sub], -1)
            row.append(soft_min(moves, beta=beta))
        prev = row
    return prev[m]


def exact_levenshtein(a: list[int], b: list[int]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        row = [i]
        for j, y in enumerate(b, 1):
            row.append(min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = row
    return prev[-1]


def random_grid(rng: np.random.Generator, size: int = 12) -> np.ndarray:
    """AlgoVision's demo costs: σ(4 N(0, 1)) + 0.2."""
    return 1 / (1 + np.exp(-4 * rng.normal(size=(size, size)))) + 0.2


def main(quick: bool = False) -> dict[str, float]:
    """Run the three demos; returns the errors at the largest β (used by the tests)."""
    results: dict[str, float] = {}
    rng = np.random.default_rng(0)
    n_grids = 2 if quick else 10
    print(f"relaxed shortest path on {n_grids} random 12x12 grids (T-conorm traceback):")
    print("  beta     max|d - Dijkstra|  path cells wrong (probabilistic / hamacher / yager-1)")
    for beta in ((10.0, 1e3) if quick else (3.0, 10.0, 100.0, 1e3)):
        err_d, wrong = 0.0, {"probabilistic": 0, "hamacher": 0, "yager": 0}
        for _ in range(n_grids):
            cost = random_grid(rng)
            exact = exact_shortest_path(cost)
            for name, p in (("probabilistic", None), ("hamacher", 5.0), ("yager", 1.0)):
                d, mask = relaxed_shortest_path(cost, beta, name, p)
                wrong[name] += int(np.sum((mask > 0.5) != (exact > 0.5)))
            err_d = max(err_d, float(np.abs(d - exact_grid_distances(cost)).max()))
        print(f"  {beta:7.0f}  {err_d:17.2e}  {wrong['probabilistic']:5d} / {wrong['hamacher']:3d} / {wrong['yager']:3d}")
        results.update({"path_dist_err": err_d, "path_cells_wrong": float(sum(wrong.values()))})
    words = rng.integers(0, 4, size=(40 if not quick else 8, 2, 7))
    exact_ed = np.array([exact_levenshtein(list(w[0]), list(w[1])) for w in words])
    print("relaxed Levenshtein distance on random 7-letter words over 4 letters: max |d - exact|")
    for beta in ((3.0, 50.0) if quick else (1.0, 3.0, 10.0, 50.0)):
        got = relaxed_levenshtein(words[:, 0].astype(float), words[:, 1].astype(float), beta)
        err = float(np.abs(got - exact_ed).max())
        print(f"  beta {beta:5.0f}: {err:.2e}")
        results["levenshtein_err"] = err
    return results


def _sort_and_grid_demo() -> None:
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
    import sys

    _sort_and_grid_demo()
    main(quick="--quick" in sys.argv)
