"""Timings of the issue-18 problem solvers (by hand; not a test): python benchmarks/dfl_problems.py

Held-Karp on the device against HiGHS with subtour cuts for the TSP; the knapsack's
multi-dimensional dynamic program against HiGHS; Clarabel's portfolio per instance.
Best of ``REPS`` calls after a warm-up call (JAX: compiled once by the warm-up).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc

REPS = 3


def best(f: Callable[[], Any]) -> float:
    f()
    times = []
    for _ in range(REPS):
        t = time.perf_counter()
        out = f()
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    S = dc.solvers
    print("| problem | method | B | time per call |\n|---|---|---|---|")
    for n in (8, 10, 12):
        theta = rng.normal(size=(32, n, n))
        for method in ("dp", "milp"):
            t = best(lambda th=theta, m=method: S.tsp(th, method=m))
            print(f"| tsp n={n} | {method} (NumPy) | 32 | {t * 1e3:.1f} ms |")
        if importlib.util.find_spec("torch"):
            torch = importlib.import_module("torch")
            torch.set_num_threads(1)  # the shared 2-core machines: threads only contend
            tt = torch.asarray(theta)
            print(
                f"| tsp n={n} | dp (PyTorch CPU) | 32 | {best(lambda: S.tsp(tt, method='dp')) * 1e3:.1f} ms |"
            )
        if importlib.util.find_spec("jax"):
            jax = importlib.import_module("jax")
            f = jax.jit(lambda u: S.tsp(u, method="dp"))
            tj = jax.numpy.asarray(theta, dtype=jax.numpy.float32)
            print(
                f"| tsp n={n} | dp (JAX jit, float32) | 32 | {best(lambda: f(tj)) * 1e3:.1f} ms |"
            )
    w, _, v = dc.data.knapsack(32, 5, 12, dim=2, deg=2, seed=0)
    wi = np.round(w * 10)  # one decimal: a DP table of 12·(C+1)² cells
    caps = np.full(2, np.floor(0.3 * wi.sum(axis=1).min()))
    for method in ("dp", "milp"):
        t = best(lambda m=method: S.knapsack(v, wi, caps, method=m))
        print(f"| knapsack n=12, m=2, C={caps.tolist()} | {method} | 32 | {t * 1e3:.1f} ms |")
    if importlib.util.find_spec("clarabel"):
        cov, _, r = dc.data.portfolio(32, 5, 50, deg=2, seed=0)
        t = best(lambda: S.portfolio(r, cov))
        print(f"| portfolio m=50 | Clarabel | 32 | {t * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
