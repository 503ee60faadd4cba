"""The grid-DAG solver against a per-node recursion written out node by node.

``shortest_path_dag`` runs its dynamic programme on shrinking windows of the
anti-diagonals and walks back through a table of every path (or by steps). Whatever
the layout, every node must get the same two sums and the same maximum, in the input's
dtype, as the plain recursion below, and the walk back must apply the same tie rule
(a node reached equally well from the left and from above is reached from the left):
the outputs are compared exactly, on ties, signed zeros, forbidden (-inf) arcs, both
dtypes, both walk-back branches and, when installed, torch.
"""

from __future__ import annotations

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.solvers import _paths

S = dc.solvers

GRIDS = [(1, 2), (2, 1), (2, 2), (1, 5), (5, 1), (2, 6), (6, 2), (3, 4), (4, 3), (4, 4),
         (5, 5), (3, 9), (9, 3), (6, 7)]


def _reference(theta: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Node-by-node recursion in theta's dtype, then the walk back from (H-1, W-1)."""
    h, w = grid
    index = {tuple(a): k for k, a in enumerate(S.grid_dag_arcs(grid).tolist())}
    neg = theta.dtype.type(-np.inf)
    out = np.zeros_like(theta)
    for b, t in enumerate(theta):
        value = np.full((h, w), neg)
        value[0, 0] = 0
        down = np.zeros((h, w), dtype=bool)
        for d in range(1, h + w - 1):
            for r in range(max(0, d - w + 1), min(d, h - 1) + 1):
                c = d - r
                v = r * w + c
                left = value[r, c - 1] + t[index[(v - 1, v)]] if c >= 1 else neg
                up = value[r - 1, c] + t[index[(v - w, v)]] if r >= 1 else neg
                value[r, c] = np.maximum(left, up)
                down[r, c] = up > left
        r, c = h - 1, w - 1
        while (r, c) != (0, 0):
            v = r * w + c
            u = v - w if down[r, c] else v - 1
            out[b, index[(u, v)]] = 1
            r, c = divmod(u, w)
    return out


def _scores(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=shape)
    if kind == "ties":
        return rng.integers(-2, 3, size=shape).astype(float)
    if kind == "zeros":  # signed zeros: 0 + (-0) = +0 must change no decision
        return rng.choice(np.array([-0.0, 0.0, -1.0, 1.0]), size=shape)
    # forbidden arcs (the caller keeps one path finite)
    theta = rng.normal(size=shape)
    theta[rng.random(shape) < 0.3] = -np.inf
    return theta


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("kind", ["normal", "ties", "zeros", "forbidden"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("table", [True, False])
def test_dag_windows_match_node_recursion(
    grid: tuple[int, int], kind: str, dtype: type, table: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not table:
        monkeypatch.setattr(_paths, "_PATH_TABLE_LIMIT", 0)
    h, w = grid
    m = h * (w - 1) + (h - 1) * w
    rng = np.random.default_rng([h, w, len(kind), np.dtype(dtype).itemsize])
    theta = _scores(rng, kind, (24, m)).astype(dtype)
    if kind == "forbidden":
        arcs = S.grid_dag_arcs(grid)
        top = (arcs[:, 0] < w - 1) & (arcs[:, 1] == arcs[:, 0] + 1)  # right arcs of row 0
        last = (arcs[:, 0] % w == w - 1) & (arcs[:, 1] == arcs[:, 0] + w)  # down the last column
        keep = top | last
        theta[:, keep] = rng.uniform(1.0, 2.0, size=(24, int(keep.sum())))  # finite
    ref = _reference(theta, grid)
    y = S.shortest_path_dag(theta, grid=grid, check_finite=kind != "forbidden")
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, ref)
    torch = pytest.importorskip("torch")
    yt = S.shortest_path_dag(torch.asarray(theta), grid=grid, check_finite=kind != "forbidden")
    assert yt.dtype == torch.asarray(theta).dtype
    np.testing.assert_array_equal(yt.numpy(), ref)


def test_dag_window_plan_counts() -> None:
    """5x5: windows of 8, 7, ..., 1 rows (no -inf row put on top at any step), 24
    decisions at the nodes of the grid, 70 paths of 8 arcs, one index row per path."""
    plan = _paths._dag_plan(5, 5)
    assert np.diff(plan.starts).tolist() == [8, 7, 6, 5, 4, 3, 2, 1]
    assert all(b == a + 1 for a, b in zip(plan.lo, plan.lo[1:], strict=False))
    assert plan.on_grid.size == 24
    assert plan.sign.shape == (70, 24) and plan.arcs.shape == (70, 40)
    assert (plan.arcs.sum(axis=1) == 8).all() and len({tuple(a) for a in plan.arcs}) == 70
    assert (plan.sign.clip(0).sum(axis=1) == 4).all()  # four down moves per path
    assert plan.code.tolist() == [list(range(70))]
    wide = _paths._dag_plan(2, 300)  # W - 1 > H: no top padding, one -inf row per step
    assert np.diff(wide.starts).max() == 2
    many = _paths._dag_plan(9, 9)  # 12870 paths: walk back by steps only
    assert many.sign is None


def test_dag_path_index_past_256_paths() -> None:
    """Grids with 256 to 4096 paths index the path in two base-64 digits."""
    rng = np.random.default_rng(7)
    grid = (6, 6)  # 252 paths: one row
    assert _paths._dag_plan(*grid).code.shape == (1, 252)
    grid = (6, 7)  # 462 paths: two digits
    plan = _paths._dag_plan(*grid)
    assert plan.code.shape == (2, 462)
    np.testing.assert_array_equal(plan.code[0] * 64 + plan.code[1], np.arange(462))
    theta = rng.integers(-2, 3, size=(40, 71)).astype(float)
    np.testing.assert_array_equal(S.shortest_path_dag(theta, grid=grid), _reference(theta, grid))
