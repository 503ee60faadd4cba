"""Batched dopt solvers against per-instance loops over standard implementations.

Run by hand (not in CI): ``python benchmarks/solvers.py [--batch 320] [--repeat 7]``.

Two workloads, as in the predict-then-optimise literature:

* 320 shortest paths on the 5×5 grid DAG of PyEPO (40 arcs), solved by
  ``dopt_core.solvers.shortest_path_dag`` on every installed backend, against loops
  over networkx's Dijkstra, scipy's csgraph Dijkstra, scipy's HiGHS MILP (a MIP solver
  called per instance, as PyEPO does with Gurobi) and, where installed, gurobipy.
* 320 Warcraft 12×12 maps (8-neighbour, vertex costs), solved by
  ``shortest_path_grid`` (host Dijkstra and device relaxation), against loops over
  networkx and scipy.

Every time is the best of ``--repeat`` runs; every ratio is ``loop time / dopt time``
(above 1: dopt is faster). The issue's reference: a commercial MIP solver takes about
65 µs per 5×5 instance, about 21 ms for 320.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc

S = dc.solvers
MIP_REFERENCE_S = 21e-3  # the figure for 320 instances of a commercial MIP solver


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm-up (jit compilation, caches)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def backends() -> dict[str, tuple[Callable[[np.ndarray], Any], Callable[[Any], Any]]]:
    """name -> (to backend array, block until the result is ready)."""
    out: dict[str, Any] = {"numpy": (lambda a: a, lambda y: y)}
    if importlib.util.find_spec("torch"):
        import torch

        out["torch"] = (lambda a: torch.asarray(a), lambda y: y)
    if importlib.util.find_spec("jax"):
        import jax

        jax.config.update("jax_enable_x64", True)
        out["jax"] = (lambda a: jax.numpy.asarray(a), lambda y: y.block_until_ready())
    return out


# --- 5×5 DAG ----------------------------------------------------------------------------
def dag_loops(cost: np.ndarray, grid: tuple[int, int]) -> dict[str, Callable[[], Any]]:
    import networkx as nx
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    arcs = S.grid_dag_arcs(grid)
    n = grid[0] * grid[1]
    tail, head = arcs[:, 0], arcs[:, 1]

    def networkx_loop() -> None:
        for c in cost:
            g = nx.DiGraph()
            g.add_weighted_edges_from(zip(tail.tolist(), head.tolist(), c.tolist(), strict=True))
            nx.dijkstra_path(g, 0, n - 1)

    def scipy_loop() -> None:
        for c in cost:
            dijkstra(
                csr_matrix((c, (tail, head)), shape=(n, n)), indices=0, return_predecessors=True
            )

    # flow conservation: +1 out of the source, -1 into the sink
    A = np.zeros((n, len(arcs)))
    A[tail, np.arange(len(arcs))] = 1
    A[head, np.arange(len(arcs))] -= 1
    rhs = np.zeros(n)
    rhs[0], rhs[-1] = 1, -1
    cons = LinearConstraint(A, rhs, rhs)

    def highs_mip_loop() -> None:
        for c in cost:
            milp(c, integrality=np.ones(len(arcs)), bounds=Bounds(0, 1), constraints=cons)

    loops = {
        "networkx dijkstra": networkx_loop,
        "scipy csgraph dijkstra": scipy_loop,
        "scipy HiGHS MILP": highs_mip_loop,
    }
    if importlib.util.find_spec("gurobipy"):
        import gurobipy as gp

        model = gp.Model()
        model.Params.OutputFlag = 0
        x = model.addMVar(len(arcs), vtype=gp.GRB.BINARY)
        model.addConstr(A @ x == rhs)

        def gurobi_loop() -> None:
            for c in cost:
                x.Obj = c
                model.optimize()

        loops["gurobipy MIP"] = gurobi_loop
    return loops


def run_dag(batch: int, repeat: int) -> None:
    grid = (5, 5)
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.1, 2.0, size=(batch, len(S.grid_dag_arcs(grid))))
    print(f"\n{batch} shortest paths on the {grid[0]}x{grid[1]} grid DAG ({cost.shape[1]} arcs)")
    loops = {name: best_time(fn, max(1, repeat // 3)) for name, fn in dag_loops(cost, grid).items()}
    for name, t in loops.items():
        print(f"  loop  {name:<24} {t * 1e3:9.2f} ms")
    print(f"  ref   {'commercial MIP (issue)':<24} {MIP_REFERENCE_S * 1e3:9.2f} ms")
    for bname, (conv, ready) in backends().items():
        theta = conv(-cost)
        if bname == "jax":
            import jax

            f = jax.jit(lambda t: S.shortest_path_dag(t, grid=grid))
        else:

            def f(t: Any) -> Any:
                return S.shortest_path_dag(t, grid=grid)

        t = best_time(lambda f=f, theta=theta, ready=ready: ready(f(theta)), repeat)
        ratios = ", ".join(f"{name}: {lt / t:7.1f}x" for name, lt in loops.items())
        print(
            f"  dopt  {bname:<24} {t * 1e3:9.3f} ms | vs {ratios}, MIP reference: {MIP_REFERENCE_S / t:6.1f}x"
        )


# --- Warcraft 12×12 -------------------------------------------------------------------------
def grid_loops(cost: np.ndarray) -> dict[str, Callable[[], Any]]:
    import networkx as nx
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    _, h, w = cost.shape
    n = h * w
    tails, heads = [], []
    for i in range(h):
        for j in range(w):
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    a, b = i + di, j + dj
                    if (di or dj) and 0 <= a < h and 0 <= b < w:
                        tails.append(i * w + j)
                        heads.append(a * w + b)
    tail, head = np.array(tails), np.array(heads)

    def networkx_loop() -> None:
        for c in cost:
            flat = c.reshape(-1)
            g = nx.DiGraph()
            g.add_weighted_edges_from(
                zip(tail.tolist(), head.tolist(), flat[head].tolist(), strict=True)
            )
            nx.dijkstra_path(g, 0, n - 1)

    def scipy_loop() -> None:
        for c in cost:
            flat = c.reshape(-1)
            dijkstra(
                csr_matrix((flat[head], (tail, head)), shape=(n, n)),
                indices=0,
                return_predecessors=True,
            )

    return {"networkx dijkstra": networkx_loop, "scipy csgraph dijkstra": scipy_loop}


def run_grid(batch: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    cost = rng.uniform(0.5, 9.0, size=(batch, 12, 12))
    print(f"\n{batch} Warcraft 12x12 shortest paths (8 neighbours, vertex costs)")
    loops = {name: best_time(fn, max(1, repeat // 3)) for name, fn in grid_loops(cost).items()}
    for name, t in loops.items():
        print(f"  loop  {name:<24} {t * 1e3:9.2f} ms")
    for bname, (conv, ready) in backends().items():
        theta = conv(-cost)
        for method in ("dijkstra", "device"):
            if bname == "jax" and method == "device":
                # under jit the relaxation runs a fixed H·W - 1 sweeps (no data-dependent stop)
                # and compiles slowly for 12x12; time it eagerly
                def f(t: Any, m: str = method) -> Any:
                    return S.shortest_path_grid(t, method=m)

                label = f"{bname} {method} (eager)"
            elif bname == "jax":
                import jax

                f = jax.jit(lambda t, m=method: S.shortest_path_grid(t, method=m))
                label = f"{bname} {method} (jit)"
            else:

                def f(t: Any, m: str = method) -> Any:
                    return S.shortest_path_grid(t, method=m)

                label = f"{bname} {method}"
            t = best_time(
                lambda f=f, theta=theta, ready=ready: ready(f(theta)), max(1, repeat // 2)
            )
            ratios = ", ".join(f"{name}: {lt / t:6.1f}x" for name, lt in loops.items())
            print(f"  dopt  {label:<24} {t * 1e3:9.2f} ms | vs {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    run_dag(args.batch, args.repeat)
    run_grid(args.batch, args.repeat)


if __name__ == "__main__":
    main()
