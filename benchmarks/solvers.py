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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

import numpy as np  # noqa: E402

import dopt_core as dc  # noqa: E402

S = dc.solvers
MIP_REFERENCE_S = 21e-3  # the figure for 320 instances of a commercial MIP solver


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """Best of ``repeat`` calls after a warm-up call (jit compilation, caches)."""
    return H.timed([fn], stat="best", repeat=repeat, warmup=1)[0]


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
    if H.missing("gurobipy") is None:
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


# --- the runner's workloads -----------------------------------------------------------------
def _dag_cost(batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.1, 2.0, size=(batch, len(S.grid_dag_arcs((5, 5)))))


def _solver_call(bname: str, theta_np: np.ndarray, kind: str, method: str = "") -> tuple[Callable[[], Any], Any]:
    """(step, jitted function or None) of a dopt solver call on backend ``bname``."""
    conv, ready = backends()[bname]
    theta = conv(theta_np)
    if kind == "dag":
        def f(t: Any) -> Any:
            return S.shortest_path_dag(t, grid=(5, 5))
    else:
        def f(t: Any) -> Any:
            return S.shortest_path_grid(t, method=method)
    jitted = None
    if bname == "jax" and not (kind == "grid" and method == "device"):
        import jax

        f = jitted = H.compiled(jax.jit(f), theta)
    return (lambda: ready(f(theta))), (jitted, theta)


def dag_step(bname: str, batch: int) -> Callable[[], Any]:
    """One batched DAG solve on ``bname`` (a factory for :func:`H.child_peak_kib`)."""
    return _solver_call(bname, -_dag_cost(batch), "dag")[0]


def grid_step(bname: str, batch: int, method: str) -> Callable[[], Any]:
    cost = np.random.default_rng(1).uniform(0.5, 9.0, size=(batch, 12, 12))
    return _solver_call(bname, -cost, "grid", method)[0]


def _memory(bname: str, step: Callable[[], Any], jit: tuple[Any, Any], quick: bool, factory: str,
            *args: Any) -> tuple[float, str]:
    if bname == "numpy":
        return float(H.traced_peak(step)), "tracemalloc"
    if bname == "jax" and jit[0] is not None:
        return float(H.xla_bytes(jit[0])), "xla"
    if quick:  # a child process per row is too slow for a smoke run
        return float("nan"), "rss (not measured with --quick)"
    return 1024 * H.child_peak_kib(factory, bname, *args), "rss"


def _dag_floor(theta: np.ndarray) -> Callable[[], Any]:
    """The value-only DP on the grid DAG: one batched ``np.maximum`` per node, no argmax
    and no path (a floor for any per-node vectorised DP)."""
    h = w = 5

    def run() -> Any:
        v = [None] * (h * w)
        v[0] = np.zeros(theta.shape[0])
        arcs = S.grid_dag_arcs((h, w))
        into: dict[int, list[int]] = {}
        for a, (_, head) in enumerate(arcs):
            into.setdefault(int(head), []).append(a)
        for node in range(1, h * w):
            vals = [v[int(arcs[a, 0])] + theta[:, a] for a in into[node]]
            v[node] = vals[0] if len(vals) == 1 else np.maximum(vals[0], vals[1])
        return v[-1]

    return run


def rows_dag(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """320 shortest paths on the 5×5 grid DAG: dopt on every backend, per-instance loops."""
    batch = 32 if quick else 320
    case = f"5x5 B{batch}"
    cost = _dag_cost(batch)
    loops = dag_loops(cost, (5, 5))
    bnames = list(backends())
    steps = [_solver_call(b, -cost, "dag") for b in bnames]
    fns = [s for s, _ in steps] + [_dag_floor(-cost)] + list(loops.values())
    times = H.timed(fns, stat=stat, repeat=3 if quick else 5, min_time=0.02)
    out = []
    for b, (step, jit), t in zip(bnames, steps, times, strict=False):
        mem, kind = _memory(b, step, jit, quick, "benchmarks.solvers:dag_step", batch)
        out.append(H.Row("dag", case, f"dopt {b}", seconds=t, memory_bytes=mem, memory_kind=kind,
                         ref=None if b == "numpy" else "dopt numpy", role="dopt"))
    out.append(H.Row("dag", case, "floor: value-only DP (NumPy)", role="floor", seconds=times[len(bnames)],
                     memory_bytes=float(H.traced_peak(fns[len(bnames)])), memory_kind="tracemalloc"))
    for (name, fn), t in zip(loops.items(), times[len(bnames) + 1:], strict=True):
        out.append(H.Row("dag", case, f"{name} loop", role="peer", seconds=t,
                         memory_bytes=float(H.traced_peak(fn)), memory_kind="tracemalloc"))
    if "gurobipy MIP" not in loops:
        out.append(H.skipped("dag", case, "gurobipy MIP loop", H.missing("gurobipy") or ""))
    return out


def rows_grid(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """Warcraft 12×12 shortest paths: dopt (host Dijkstra, device relaxation), loops."""
    batch = 16 if quick else 320
    case = f"12x12 B{batch}"
    cost = np.random.default_rng(1).uniform(0.5, 9.0, size=(batch, 12, 12))
    loops = grid_loops(cost)
    labels, steps = [], []
    for b in backends():
        for method in ("dijkstra", "device"):
            labels.append((b, method))
            steps.append(_solver_call(b, -cost, "grid", method))
    fns = [s for s, _ in steps] + list(loops.values())
    times = H.timed(fns, stat=stat, repeat=3 if quick else 3, min_time=0.02)
    out = []
    for (b, method), (step, jit), t in zip(labels, steps, times, strict=False):
        mem, kind = _memory(b, step, jit, quick, "benchmarks.solvers:grid_step", batch, method)
        jit_note = " (jit)" if jit[0] is not None else (" (eager)" if b == "jax" else "")
        out.append(H.Row("grid", case, f"dopt {b} {method}{jit_note}", seconds=t, memory_bytes=mem,
                         memory_kind=kind, ref=None if (b, method) == ("numpy", "dijkstra") else "dopt numpy dijkstra"))
    for (name, fn), t in zip(loops.items(), times[len(steps):], strict=True):
        out.append(H.Row("grid", case, f"{name} loop", role="peer", seconds=t,
                         memory_bytes=float(H.traced_peak(fn)), memory_kind="tracemalloc"))
    return out


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
