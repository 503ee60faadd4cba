"""Assignment, spanning trees, arborescences: brute force and networkx/scipy references."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dopt_core as dc

S = dc.solvers


def _theta(data: st.DataObject, shape: tuple[int, ...], ties: bool) -> np.ndarray:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    return (rng.integers(-2, 3, size=shape) if ties else rng.normal(size=shape)).astype(dtype)


# --- linear assignment ---------------------------------------------------------------
@settings(max_examples=30)
@given(st.integers(1, 5), st.booleans(), st.data())
def test_assignment_by_enumeration(n: int, ties: bool, data: st.DataObject) -> None:
    theta = _theta(data, (2, 3, n, n), ties)
    y = S.linear_assignment(theta)
    assert y.dtype == theta.dtype and y.shape == theta.shape
    perms = [np.eye(n)[list(p)] for p in itertools.permutations(range(n))]
    for b in np.ndindex(2, 3):
        t = theta[b].astype(np.float64)
        assert (
            (y[b].sum(0) == 1).all() and (y[b].sum(1) == 1).all() and set(np.unique(y[b])) <= {0, 1}
        )
        assert np.isclose((y[b] * t).sum(), max((p * t).sum() for p in perms), atol=1e-5)


def test_assignment_matches_networkx_matching() -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(4, 12, 12))
    y = S.linear_assignment(theta)
    for t, row in zip(theta, y, strict=True):
        g = nx.Graph()
        g.add_weighted_edges_from(
            (("r", i), ("c", j), t[i, j] + 100) for i in range(12) for j in range(12)
        )
        match = nx.max_weight_matching(g, maxcardinality=True)
        value = sum(t[a[1], b[1]] if a[0] == "r" else t[b[1], a[1]] for a, b in match)
        assert np.isclose((row * t).sum(), value)


def test_assignment_bad_input() -> None:
    with pytest.raises(ValueError, match="square"):
        S.linear_assignment(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        S.linear_assignment(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        S.linear_assignment(np.full((2, 2), np.nan))
    with pytest.raises(TypeError, match="executor"):
        S.linear_assignment(np.zeros((2, 2)), executor="processes")


# --- spanning trees -------------------------------------------------------------------
def _random_graph(
    rng: np.random.Generator, n: int, p: float, connected: bool
) -> list[tuple[int, int]]:
    pairs = [(u, v) for u in range(n) for v in range(u + 1, n)]
    edges = [e for e in pairs if rng.random() < p]
    if connected:  # add a random spanning path so that the graph is connected
        order = rng.permutation(n)
        for a, b in zip(order[:-1], order[1:], strict=True):
            e = (int(min(a, b)), int(max(a, b)))
            if e not in edges:
                edges.append(e)
    return [(v, u) if rng.random() < 0.5 else (u, v) for u, v in edges]  # both orientations


def _forests(edges: list[tuple[int, int]], n: int, size: int):  # type: ignore[no-untyped-def]
    for subset in itertools.combinations(range(len(edges)), size):
        g = nx.Graph()
        g.add_nodes_from(range(n))
        g.add_edges_from(edges[k] for k in subset)
        if nx.is_forest(g):
            yield subset


@settings(max_examples=30)
@given(st.integers(1, 6), st.booleans(), st.booleans(), st.data())
def test_spanning_tree_by_enumeration(
    n: int, ties: bool, forest: bool, data: st.DataObject
) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    edges = _random_graph(rng, n, 0.5, connected=not forest)
    if not edges:
        return
    theta = _theta(data, (3, len(edges)), ties)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(edges)
    size = n - nx.number_connected_components(g)
    y = S.spanning_tree(theta, edges, n, forest=forest)
    candidates = list(_forests(edges, n, size))
    for t, row in zip(theta.astype(np.float64), y, strict=True):
        chosen = tuple(np.flatnonzero(row))
        assert chosen in candidates, "not a spanning tree/forest"
        assert np.isclose(row @ t, max(t[list(c)].sum() for c in candidates), atol=1e-5)


def test_spanning_tree_matches_networkx_with_zero_and_negative_scores() -> None:
    rng = np.random.default_rng(1)
    edges = _random_graph(rng, 30, 0.2, connected=True)
    theta = rng.integers(-3, 4, size=(5, len(edges))).astype(float)  # zeros included
    theta[:, 0] = 0.0
    y = S.spanning_tree(theta, edges, 30)
    for t, row in zip(theta, y, strict=True):
        g = nx.Graph()
        g.add_weighted_edges_from((u, v, t[k]) for k, (u, v) in enumerate(edges))
        ref = nx.maximum_spanning_tree(g)
        assert row.sum() == 29
        assert np.isclose(row @ t, ref.size(weight="weight"))


def test_spanning_tree_bad_input() -> None:
    edges = [(0, 1), (1, 2)]
    with pytest.raises(ValueError, match="disconnected"):
        S.spanning_tree(np.zeros(2), edges, num_nodes=4)
    assert S.spanning_tree(np.zeros(2), edges, num_nodes=4, forest=True).sum() == 2
    with pytest.raises(ValueError, match="one score per edge"):
        S.spanning_tree(np.zeros(3), edges, num_nodes=3)
    with pytest.raises(ValueError, match="self-loops"):
        S.spanning_tree(np.zeros(2), [(0, 1), (1, 1)], num_nodes=2)
    with pytest.raises(ValueError, match="more than once"):
        S.spanning_tree(np.zeros(2), [(0, 1), (1, 0)], num_nodes=2)
    with pytest.raises(ValueError, match="node indices"):
        S.spanning_tree(np.zeros(2), [(0, 1), (1, 5)], num_nodes=3)
    with pytest.raises(ValueError, match=r"shape \(m, 2\)"):
        S.spanning_tree(np.zeros(2), [0, 1], num_nodes=3)
    with pytest.raises(TypeError, match="edges must hold integers"):
        S.spanning_tree(np.zeros(2), [(0.5, 1), (1, 2)], num_nodes=3)
    with pytest.raises(ValueError, match="num_nodes"):
        S.spanning_tree(np.zeros(2), edges, num_nodes=0)
    with pytest.raises(ValueError, match="NaN"):
        S.spanning_tree(np.array([0.0, np.nan]), edges, num_nodes=3)


# --- arborescences ---------------------------------------------------------------------
def _arborescences(n: int, root: int):  # type: ignore[no-untyped-def]
    others = [v for v in range(n) if v != root]
    for parents in itertools.product(range(n), repeat=len(others)):
        par = dict(zip(others, parents, strict=True))
        if any(par[v] == v for v in others):
            continue
        ok = True
        for v in others:  # every node reaches the root
            seen, u = set(), v
            while u != root and u not in seen:
                seen.add(u)
                u = par[u]
            ok &= u == root
        if ok:
            y = np.zeros((n, n))
            for v in others:
                y[par[v], v] = 1
            yield y


@settings(max_examples=30)
@given(st.integers(1, 5), st.booleans(), st.data())
def test_arborescence_by_enumeration(n: int, ties: bool, data: st.DataObject) -> None:
    root = data.draw(st.integers(0, n - 1))
    theta = _theta(data, (3, n, n), ties)
    y = S.arborescence(theta, root=root)
    assert y.shape == theta.shape and y.dtype == theta.dtype
    candidates = list(_arborescences(n, root))
    for t, row in zip(theta.astype(np.float64), y, strict=True):
        assert any(np.array_equal(row, c) for c in candidates), "not an arborescence"
        assert np.isclose((row * t).sum(), max((c * t).sum() for c in candidates), atol=1e-5)


def test_arborescence_matches_networkx() -> None:
    rng = np.random.default_rng(2)
    n = 15
    theta = rng.normal(size=(6, n, n))
    y = S.arborescence(theta)
    for t, row in zip(theta, y, strict=True):
        g = nx.DiGraph()
        g.add_weighted_edges_from((i, j, t[i, j]) for i in range(n) for j in range(1, n) if i != j)
        ref = nx.maximum_spanning_arborescence(g)
        assert np.isclose((row * t).sum(), ref.size(weight="weight"))
        assert row[:, 0].sum() == 0 and (row.sum(axis=0)[1:] == 1).all()


def test_arborescence_bad_input() -> None:
    with pytest.raises(ValueError, match="root"):
        S.arborescence(np.zeros((3, 3)), root=3)
    with pytest.raises(ValueError, match="square"):
        S.arborescence(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        S.arborescence(np.full((2, 2), np.nan))


def test_spanning_tree_of_a_graph_without_edges() -> None:
    """One node (or, as a forest, isolated nodes): the empty edge set is the only
    spanning tree, an instance with zero scores, not an error."""
    for edges in ([], np.zeros((0, 2), dtype=int)):
        y = S.spanning_tree(np.zeros((3, 0)), edges, num_nodes=1)
        assert y.shape == (3, 0) and y.dtype == np.float64
        assert S.spanning_tree(np.zeros(0), edges, num_nodes=4, forest=True).shape == (0,)
        with pytest.raises(ValueError, match="disconnected"):
            S.spanning_tree(np.zeros(0), edges, num_nodes=2)
