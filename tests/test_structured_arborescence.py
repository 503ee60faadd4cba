"""dopt_core.structured.arborescence: Chu-Liu/Edmonds traces on exponential arc weights.

Enumeration of the traces (every ordering of the arc exponentials for n = 3, a fixed
random subset of orderings for n = 4, complete when the probabilities sum to one),
sampling frequencies (5 MC standard errors), the minimum arborescence agrees with the
deterministic solver, conditional samples reproduce the trace, and bad input.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import dopt_core as dc

A = dc.structured.arborescence


def _valid(n: int, root: int) -> np.ndarray:
    v = ~np.eye(n, dtype=bool)
    v[:, root] = False
    return np.flatnonzero(v.ravel())


def _orderings(n: int, root: int, limit: int | None) -> np.ndarray:
    idx = _valid(n, root)
    if limit is None:
        perms = np.array(list(itertools.permutations(range(len(idx)))), dtype=float)
    else:
        gen = np.random.default_rng(0)
        perms = np.stack([gen.permutation(len(idx)) for _ in range(limit)]).astype(float)
    e = np.full((len(perms), n * n), 1e3)
    e[:, idx] = perms + 1.0
    return e.reshape(-1, n, n)


def _law(n: int, root: int, theta: np.ndarray, limit: int | None) -> tuple[float, dict[tuple, float]]:
    y, trace = A.run(_orderings(n, root, limit), root=root)
    first: dict[tuple, int] = {}
    for i, c in enumerate(trace.choices):
        first.setdefault(tuple(c), i)
    idx = np.array(list(first.values()))
    p = np.exp(A.log_prob(trace[idx], theta))
    law: dict[tuple, float] = {}
    for i, pi in zip(idx, p, strict=True):
        key = tuple(y[i].astype(int).ravel())
        law[key] = law.get(key, 0.0) + float(pi)
    return float(p.sum()), law


@pytest.mark.parametrize(("n", "root", "limit"), [(3, 0, None), (3, 2, None), (4, 1, 4000)])
def test_trace_probabilities_sum_to_one_and_frequencies_match(n: int, root: int, limit: int | None) -> None:
    theta = np.random.default_rng(n + root).normal(size=(n, n))
    total, law = _law(n, root, theta, limit)
    assert abs(total - 1.0) < 1e-12
    assert len(law) == n ** (n - 2)  # rooted spanning arborescences of the complete digraph
    num = 8000
    y, _ = A.sample(theta, root=root, rng=1, num_samples=num)
    rows, counts = np.unique(y.reshape(num, -1).astype(int), axis=0, return_counts=True)
    seen = {tuple(r): c for r, c in zip(rows, counts, strict=True)}
    assert set(seen) <= set(law)
    for k, p in law.items():
        freq = seen.get(k, 0) / num
        assert abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / num), (k, p, freq)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_minimum_arborescence_and_conditional_samples(dtype: type) -> None:
    theta = np.random.default_rng(3).normal(size=(5, 5)).astype(dtype)
    y, trace = A.sample(theta, root=2, rng=4, num_samples=300)
    np.testing.assert_array_equal(y, dc.solvers.arborescence(-np.reshape(trace.exponentials, (300, 5, 5)), root=2))
    e = A.conditional_sample(trace, theta, rng=5)
    y2, trace2 = A.run(e, root=2)
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(trace2.choices, trace.choices)
    np.testing.assert_array_equal(trace2.active, trace.active)
    assert np.any(trace.choices[:, 4:] >= 0)  # some samples contracted a cycle
    assert np.any(trace.choices[:, -1] < 0)  # and some were padded


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="root"):
        A.sample(np.zeros((3, 3)), root=3, rng=0)
    with pytest.raises(ValueError, match="square"):
        A.sample(np.zeros((3, 4)), rng=0)
    with pytest.raises(ValueError, match="NaN"):
        A.sample(np.full((3, 3), np.nan), rng=0)


def test_log_prob_vjp_with_padding_and_unbiased_reinforce() -> None:
    n, root = 3, 0
    theta = np.random.default_rng(6).normal(size=(n, n))
    _, trace = A.sample(theta, root=root, rng=7, num_samples=6)
    assert np.any(trace.choices < 0)
    g = np.random.default_rng(8).normal(size=6)
    _, vjp = dc.value_and_vjp(dc.structured.log_prob, trace, theta.reshape(-1))
    h, fd = 1e-6, np.zeros(n * n)
    for i in range(n * n):
        d = np.zeros(n * n)
        d[i] = h
        up = A.log_prob(trace, (theta.reshape(-1) + d).reshape(n, n))
        dn = A.log_prob(trace, (theta.reshape(-1) - d).reshape(n, n))
        fd[i] = np.sum(g * (up - dn)) / (2 * h)
    np.testing.assert_allclose(vjp(g), fd, atol=1e-7)
    # leave-one-out REINFORCE against the exact gradient of E[f], f = y[0, 2] + 2 y[1, 2]
    y, tr = A.run(_orderings(n, root, None), root=root)
    first: dict[tuple, int] = {}
    for i, c in enumerate(tr.choices):
        first.setdefault(tuple(c), i)
    idx = np.array(list(first.values()))
    p = np.exp(A.log_prob(tr[idx], theta))
    f = y[idx, 0, 2] + 2 * y[idx, 1, 2]
    exact = np.sum((f * p)[:, None, None] * A.score(tr[idx], theta), axis=0)
    groups, k = 3000, 3
    ys, trs = A.sample(theta, root=root, rng=9, num_samples=groups * k)
    loss = (ys[:, 0, 2] + 2 * ys[:, 1, 2]).reshape(groups, k)
    sc = A.score(trs, theta).reshape(groups, k, n, n)
    draws = np.stack([dc.structured.estimators.reinforce(loss[i], sc[i], baseline="loo") for i in range(groups)])
    se = draws.std(0, ddof=1) / np.sqrt(groups)
    valid = ~np.eye(n, dtype=bool)
    valid[:, root] = False
    assert np.all(np.abs(draws.mean(0) - exact)[valid] <= 5 * se[valid])
    np.testing.assert_array_equal(draws[:, ~valid], 0.0)  # unused arcs get no gradient
