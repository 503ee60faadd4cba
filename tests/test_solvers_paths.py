"""Shortest paths: the grid DAG (PyEPO) and the Warcraft grid, against brute force,
networkx and each other."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dopt_core as dc

S = dc.solvers


# --- the grid DAG ---------------------------------------------------------------------
def _dag_paths(h: int, w: int) -> np.ndarray:
    """Every monotone path as an arc indicator, by enumerating move sequences."""
    arcs = {tuple(a): k for k, a in enumerate(S.grid_dag_arcs((h, w)).tolist())}
    out = []
    for downs in itertools.combinations(range(h + w - 2), h - 1):
        y = np.zeros(len(arcs))
        i = j = 0
        for step in range(h + w - 2):
            v = i * w + j
            if step in downs:
                i += 1
            else:
                j += 1
            y[arcs[(v, i * w + j)]] = 1
        out.append(y)
    return np.array(out)


def test_grid_dag_arcs_follow_pyepo_order() -> None:
    """Row by row: the right arcs of the row, then the down arcs leaving it."""
    h, w = 3, 4
    expected = []
    for i in range(h):
        expected += [(i * w + j, i * w + j + 1) for j in range(w - 1)]
        if i < h - 1:
            expected += [(i * w + j, (i + 1) * w + j) for j in range(w)]
    assert S.grid_dag_arcs((h, w)).tolist() == [list(a) for a in expected]
    assert len(S.grid_dag_arcs((5, 5))) == 40


def test_grid_dag_arcs_match_pyepo_when_installed() -> None:
    pytest.importorskip("pyepo", reason="pyepo not installed")
    pytest.importorskip("gurobipy", reason="gurobipy not installed")
    from pyepo.model.grb import shortestPathModel

    for grid in [(5, 5), (3, 7), (2, 4)]:
        assert S.grid_dag_arcs(grid).tolist() == [list(a) for a in shortestPathModel(grid).arcs]


@settings(max_examples=40)
@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.booleans(),
    st.sampled_from([np.float32, np.float64]),
    st.data(),
)
def test_dag_is_best_path_by_enumeration(
    h: int, w: int, ties: bool, dtype: type, data: st.DataObject
) -> None:
    if h * w < 2:
        return
    paths = _dag_paths(h, w)
    m = paths.shape[1]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    theta = (rng.integers(-2, 3, size=(3, m)) if ties else rng.normal(size=(3, m))).astype(dtype)
    y = S.shortest_path_dag(theta, grid=(h, w))
    assert y.dtype == dtype and y.shape == theta.shape
    for t, row in zip(theta, y, strict=True):
        match = np.flatnonzero((paths == row).all(axis=1))
        assert len(match) == 1, "output is not a path"
        values = paths @ t.astype(np.float64)
        assert np.isclose(row @ t.astype(np.float64), values.max(), rtol=1e-6, atol=1e-6)


def test_dag_walk_back_branch_by_enumeration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vectorised walk back (grids with more than 4096 paths, or large batches)
    finds the best path and breaks ties as the path-table branch does."""
    from dopt_core.solvers import _paths

    rng = np.random.default_rng(2)
    paths = _dag_paths(8, 9)  # 6435 paths: past the path table
    theta = rng.integers(-2, 3, size=(3, paths.shape[1])).astype(float)
    y = S.shortest_path_dag(theta, grid=(8, 9))
    for t, row in zip(theta, y, strict=True):
        assert (paths == row).all(axis=1).sum() == 1, "output is not a path"
        assert row @ t == (paths @ t).max()
    small = rng.integers(-1, 2, size=(50, 17)).astype(float)  # grid (3, 4), many ties
    table = S.shortest_path_dag(small, grid=(3, 4))
    monkeypatch.setattr(_paths, "_PATH_TABLE_LIMIT", 0)
    np.testing.assert_array_equal(S.shortest_path_dag(small, grid=(3, 4)), table)


def test_dag_matches_networkx_on_5x5_and_is_batched() -> None:
    rng = np.random.default_rng(1)
    arcs = S.grid_dag_arcs((5, 5))
    cost = rng.uniform(0.1, 2.0, size=(4, 6, len(arcs)))
    y = S.shortest_path_dag(-cost, grid=(5, 5))
    for b in np.ndindex(4, 6):
        g = nx.DiGraph()
        g.add_weighted_edges_from((int(u), int(v), cost[b][k]) for k, (u, v) in enumerate(arcs))
        path = nx.shortest_path(g, 0, 24, weight="weight")
        ref = np.zeros(len(arcs))
        index = {(int(u), int(v)): k for k, (u, v) in enumerate(arcs)}
        ref[[index[e] for e in zip(path[:-1], path[1:], strict=True)]] = 1
        np.testing.assert_array_equal(y[b], ref)  # continuous costs: the optimum is unique
    np.testing.assert_array_equal(S.shortest_path_dag(-cost[1, 2], grid=(5, 5)), y[1, 2])


def test_dag_matches_pyepo_model_when_installed() -> None:
    grb = pytest.importorskip("pyepo.model.grb", reason="pyepo with gurobipy not installed")
    try:
        model = grb.shortestPathModel((5, 5))
    except ImportError as exc:  # pyepo installed without gurobipy
        pytest.skip(str(exc))
    rng = np.random.default_rng(2)
    cost = rng.uniform(0.1, 2.0, size=(10, 40))
    y = S.shortest_path_dag(-cost, grid=(5, 5))
    for c, row in zip(cost, y, strict=True):
        model.setObj(c)
        sol, obj = model.solve()
        assert np.isclose(c @ row, obj)
        np.testing.assert_allclose(np.asarray(sol), row, atol=1e-6)


def test_dag_bad_input() -> None:
    with pytest.raises(ValueError, match="40 arc scores"):
        S.shortest_path_dag(np.zeros(39), grid=(5, 5))
    with pytest.raises(ValueError, match="grid"):
        S.shortest_path_dag(np.zeros(2), grid=(0, 3))
    with pytest.raises(ValueError, match="grid"):
        S.shortest_path_dag(np.zeros(2), grid=5)
    with pytest.raises(ValueError, match="NaN"):
        S.shortest_path_dag(np.full(40, np.nan), grid=(5, 5))
    with pytest.raises(TypeError, match="floating"):
        S.shortest_path_dag(np.zeros(40, dtype=int), grid=(5, 5))


# --- the Warcraft grid -------------------------------------------------------------------
def _grid_graph(cost: np.ndarray) -> nx.DiGraph:
    h, w = cost.shape
    g = nx.DiGraph()
    g.add_nodes_from(np.ndindex(h, w))
    for i, j in np.ndindex(h, w):
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            a, b = i + di, j + dj
            if (di or dj) and 0 <= a < h and 0 <= b < w:
                g.add_edge((i, j), (a, b), weight=float(cost[a, b]))
    return g


def _is_path(y: np.ndarray) -> bool:
    """The cells form a connected 8-neighbour set containing both corners."""
    h, w = y.shape
    cells = {tuple(c) for c in np.argwhere(y == 1)}
    if (0, 0) not in cells or (h - 1, w - 1) not in cells:
        return False
    g = nx.Graph()
    g.add_nodes_from(cells)
    g.add_edges_from(
        (c, d)
        for c in cells
        for d in cells
        if c != d and max(abs(c[0] - d[0]), abs(c[1] - d[1])) == 1
    )
    return nx.has_path(g, (0, 0), (h - 1, w - 1))


def _all_paths_min(cost: np.ndarray) -> float:
    """Brute force: the cheapest simple path, every vertex counted once."""
    g = _grid_graph(cost)
    h, w = cost.shape
    if h * w == 1:
        return float(cost[0, 0])
    return min(
        float(sum(cost[c] for c in p)) for p in nx.all_simple_paths(g, (0, 0), (h - 1, w - 1))
    )


@settings(max_examples=25)
@given(st.integers(1, 3), st.integers(1, 3), st.booleans(), st.data())
def test_grid_is_cheapest_path_by_enumeration(
    h: int, w: int, ties: bool, data: st.DataObject
) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    cost = (
        rng.integers(0, 3, size=(2, h, w)).astype(float)
        if ties
        else rng.uniform(0, 3, size=(2, h, w))
    )
    for method in ("dijkstra", "device"):
        y = S.shortest_path_grid(-cost, method=method)
        assert y.shape == cost.shape
        for c, row in zip(cost, y, strict=True):
            assert _is_path(row)
            assert np.isclose((c * row).sum(), _all_paths_min(c))


def test_grid_counts_both_ends_and_matches_networkx_12x12() -> None:
    rng = np.random.default_rng(3)
    cost = rng.uniform(0.5, 9.0, size=(6, 12, 12))
    y = S.shortest_path_grid(-cost)
    for c, row in zip(cost, y, strict=True):
        g = _grid_graph(c)
        path = nx.dijkstra_path(g, (0, 0), (11, 11))
        ref = np.zeros((12, 12))
        ref[tuple(np.array(path).T)] = 1
        np.testing.assert_array_equal(row, ref)
        # path cost = every visited cell, start and end included
        assert np.isclose((c * row).sum(), c[0, 0] + nx.dijkstra_path_length(g, (0, 0), (11, 11)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grid_host_and_device_agree(dtype: type) -> None:
    rng = np.random.default_rng(4)
    for shape in [(5, 12, 12), (3, 7, 4), (2, 1, 6), (1, 1)]:
        ints = -rng.integers(0, 4, size=shape).astype(
            dtype
        )  # exact sums: ties resolved identically
        np.testing.assert_array_equal(
            S.shortest_path_grid(ints), S.shortest_path_grid(ints, method="device")
        )
        cont = -rng.uniform(0, 5, size=shape).astype(dtype)
        yh, yd = S.shortest_path_grid(cont), S.shortest_path_grid(cont, method="device")
        np.testing.assert_allclose(
            (cont * yh).sum(axis=(-2, -1)), (cont * yd).sum(axis=(-2, -1)), rtol=1e-5
        )


def test_grid_zero_costs_terminate_with_fewest_cells() -> None:
    theta = np.zeros((4, 5))
    for method in ("dijkstra", "device"):
        y = S.shortest_path_grid(theta, method=method)
        assert y.sum() == 5 and _is_path(y)  # max(H, W) cells: the fewest possible


def test_grid_bad_input() -> None:
    with pytest.raises(ValueError, match="<= 0"):
        S.shortest_path_grid(np.ones((3, 3)))
    with pytest.raises(ValueError, match="method"):
        S.shortest_path_grid(-np.ones((3, 3)), method="astar")
    with pytest.raises(ValueError, match="at least 2 dimension"):
        S.shortest_path_grid(-np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        S.shortest_path_grid(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="executor"):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as ex:
            S.shortest_path_grid(-np.ones((2, 2)), method="device", executor=ex)
