"""Speed of dopt.structured's spanning-tree sampler (run by hand; ratios from one run).

    python benchmarks/structured.py [--quick]

Task: sample ``S`` spanning trees of the complete graph on 20 nodes (190 edges) by
Kruskal on exponential edge weights, with their traces (choices and active sets) and
their log-probabilities, on NumPy (float64). Compared against

* a per-sample loop in the reference code's style (RakitinDen/pytorch-recursive-
  gumbel-max-trick): one Python Kruskal with a union-find per sample, recording the
  active mask of each step, then the log-probability from the masks;
* networkx: ``nx.minimum_spanning_tree(algorithm="kruskal")`` per sample for the tree,
  plus the same per-sample trace reconstruction and log-probability.

dopt runs one vectorised union-find over all samples (a Python loop over the 190
sorted edge positions) and one batched log-probability. The baselines are timed on a
subset and scaled per sample. Threads pinned to 1; times are CPU time of this process
(``time.process_time``), so that a busy machine does not skew the ratios.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

if __name__ == "__main__":
    H.pin_threads()  # before NumPy loads (the runner pins before importing this module)

import numpy as np  # noqa: E402

import dopt_core as dc  # noqa: E402

S = dc.structured


def _logsumexp(x: np.ndarray) -> float:
    top = x.max()
    return float(top + np.log(np.exp(x - top).sum()))


def _trace_log_prob(theta: np.ndarray, choices: list[int], masks: list[np.ndarray]) -> float:
    return sum(theta[c] - _logsumexp(theta[mk]) for c, mk in zip(choices, masks, strict=True))


def reference_one(e: np.ndarray, theta: np.ndarray, edges: np.ndarray, n: int) -> tuple[list[int], float]:
    """One Python Kruskal with a union-find, the active mask of every step, log p."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    choices, masks = [], []
    for k in np.argsort(e, kind="stable"):
        u, v = find(int(edges[k, 0])), find(int(edges[k, 1]))
        if u == v:
            continue
        roots = np.array([find(int(a)) for a in range(n)])
        masks.append(roots[edges[:, 0]] != roots[edges[:, 1]])
        choices.append(int(k))
        parent[u] = v
        if len(choices) == n - 1:
            break
    return choices, _trace_log_prob(theta, choices, masks)


def networkx_one(e: np.ndarray, theta: np.ndarray, edges: np.ndarray, n: int) -> tuple[list[int], float]:
    import networkx as nx  # noqa: PLC0415 - lazy: optional peer

    g = nx.Graph()
    g.add_nodes_from(range(n))
    index = {}
    for k, (u, v) in enumerate(edges):
        g.add_edge(int(u), int(v), weight=float(e[k]))
        index[(int(u), int(v))] = index[(int(v), int(u))] = k
    tree = nx.minimum_spanning_tree(g, algorithm="kruskal")
    choices = sorted((index[(u, v)] for u, v in tree.edges()), key=lambda k: e[k])
    # the trace: components before each step, from the tree's edges in order
    comp = np.arange(n)
    masks = []
    for k in choices:
        masks.append(comp[edges[:, 0]] != comp[edges[:, 1]])
        a, b = comp[edges[k, 0]], comp[edges[k, 1]]
        comp = np.where(comp == b, a, comp)
    return choices, _trace_log_prob(theta, choices, masks)


def rows(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """Spanning trees of K20 with traces and log-probabilities: dopt's vectorised sampler
    against per-sample loops (timed on a subset, scaled to the same number of samples)."""
    n = 20
    edges = np.array(list(itertools.combinations(range(n), 2)))
    num, subset = (500, 20) if quick else (10000, 200)
    theta = np.random.default_rng(0).normal(size=len(edges))
    e = S.exponentials(theta, rng=np.random.default_rng(1), num_samples=subset)

    def dopt_run() -> None:
        _, trace = S.spanning_tree.sample(theta, edges, n, rng=1, num_samples=num)
        S.log_prob(trace, theta)

    def python_loop() -> None:
        for s in range(subset):
            reference_one(e[s], theta, edges, n)

    def nx_loop() -> None:
        for s in range(subset):
            networkx_one(e[s], theta, edges, n)

    have_nx = H.missing("networkx") is None
    fns = [dopt_run, python_loop] + ([nx_loop] if have_nx else [])
    times = H.timed(fns, stat=stat, repeat=3 if quick else 3, warmup=1)
    case = f"K{n} spanning trees, {num} samples"
    scale = num / subset
    out = [H.Row("structured", case, "dopt (vectorised, NumPy)", seconds=times[0],
                 memory_bytes=float(H.traced_peak(dopt_run)), memory_kind="tracemalloc"),
           H.Row("structured", case, "per-sample Python Kruskal", role="peer", seconds=times[1] * scale,
                 memory_bytes=float(H.traced_peak(python_loop)), memory_kind="tracemalloc",
                 params={"timed_samples": subset, "scaled": scale})]
    if have_nx:
        out.append(H.Row("structured", case, "networkx per sample", role="peer", seconds=times[2] * scale,
                         memory_bytes=float(H.traced_peak(nx_loop)), memory_kind="tracemalloc",
                         params={"timed_samples": subset, "scaled": scale}))
    else:
        out.append(H.skipped("structured", case, "networkx per sample", H.missing("networkx") or ""))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="1 000 samples, small baseline subsets")
    args = parser.parse_args()
    n = 20
    edges = np.array(list(itertools.combinations(range(n), 2)))
    m = len(edges)
    num = 1000 if args.quick else 10000
    subset = 50 if args.quick else 500
    theta = np.random.default_rng(0).normal(size=m)

    def dopt_run() -> tuple[np.ndarray, np.ndarray]:
        y, trace = S.spanning_tree.sample(theta, edges, n, rng=1, num_samples=num)
        return trace.choices, S.log_prob(trace, theta)

    dopt_run()  # warm-up
    t0 = time.process_time()
    choices, lp = dopt_run()
    t_dopt = time.process_time() - t0

    # same exponentials for every method: agreement check on the subset
    eps = np.random.default_rng(1)
    e = S.exponentials(theta, rng=eps, num_samples=num)
    _, trace = S.spanning_tree.run(e, edges, n)
    lp_dopt = S.log_prob(trace, theta)
    rows = [("dopt (vectorised, NumPy)", t_dopt / num)]
    t0 = time.process_time()
    for s in range(subset):
        ch, lp_ref = reference_one(e[s], theta, edges, n)
        assert ch == list(trace.choices[s]) and abs(lp_ref - lp_dopt[s]) < 1e-9
    rows.append(("per-sample Python Kruskal", (time.process_time() - t0) / subset))
    if importlib.util.find_spec("networkx") is not None:
        t0 = time.process_time()
        for s in range(subset):
            ch, lp_nx = networkx_one(e[s], theta, edges, n)
            assert ch == list(trace.choices[s]) and abs(lp_nx - lp_dopt[s]) < 1e-9
        rows.append(("networkx per sample", (time.process_time() - t0) / subset))
    print(f"{num} spanning trees of K{n} ({m} edges) with traces and log-probabilities, float64")
    print(f"{'method':32s} {'CPU µs/sample':>14s} {'total (s)':>10s} {'dopt speed-up':>14s}")
    for name, per in rows:
        print(f"{name:32s} {per * 1e6:14.1f} {per * num:10.3f} {per / rows[0][1]:13.1f}×")


if __name__ == "__main__":
    main()
