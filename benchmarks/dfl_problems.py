"""Timings of the issue-18 problem solvers (by hand; not a test): python benchmarks/dfl_problems.py

Held-Karp on the device against HiGHS with subtour cuts for the TSP; the knapsack's
multi-dimensional dynamic program against HiGHS; Clarabel's portfolio per instance.
Best of ``REPS`` calls after a warm-up call (JAX: compiled once by the warm-up).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

if __name__ == "__main__":
    H.pin_threads()  # before NumPy loads (the runner pins before importing this module)

import numpy as np  # noqa: E402

import dopt_core as dc  # noqa: E402

REPS = 3


def _ready(f: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        out = f()
        if hasattr(out, "block_until_ready"):
            out.block_until_ready()
        return out

    return run


def best(f: Callable[[], Any]) -> float:
    """Best of ``REPS`` calls after a warm-up call (JAX: compiled once by the warm-up)."""
    return H.timed([_ready(f)], stat="best", repeat=REPS, warmup=1)[0]


def tsp_torch_step(n: int, B: int) -> Callable[[], Any]:
    """The torch Held-Karp call of :func:`rows` (a factory for the child's peak RSS)."""
    import torch

    theta = torch.asarray(np.random.default_rng(n).normal(size=(B, n, n)))
    return lambda: dc.solvers.tsp(theta, method="dp")


def rows(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """TSP (Held-Karp DP on every backend vs HiGHS with subtour cuts), knapsack DP vs
    HiGHS, portfolio (Clarabel); batch 32."""
    rng = np.random.default_rng(0)
    S = dc.solvers
    out: list[H.Row] = []
    B = 8 if quick else 32
    for n in (6, 8) if quick else (8, 10, 12):
        theta = rng.normal(size=(B, n, n))
        case = f"tsp n={n} B{B}"
        impls: list[tuple[str, Callable[[], Any], tuple[float, str] | None]] = []
        f_np = _ready(lambda th=theta: S.tsp(th, method="dp"))
        impls.append(("dopt dp numpy", f_np, None))
        if H.missing("torch") is None:
            import torch

            tt = torch.asarray(theta)
            impls.append(("dopt dp torch", _ready(lambda tt=tt: S.tsp(tt, method="dp")), (float("nan"), "")))
        if H.missing("jax") is None:
            import jax

            tj = jax.numpy.asarray(theta, dtype=jax.numpy.float32)
            fj = H.compiled(jax.jit(lambda u: S.tsp(u, method="dp")), tj)
            impls.append(("dopt dp jax (jit, f32)", _ready(lambda fj=fj, tj=tj: fj(tj)),
                          (float(H.xla_bytes(fj)), "xla")))
        impls.append(("HiGHS MILP + subtour cuts", _ready(lambda th=theta: S.tsp(th, method="milp")), None))
        times = H.timed([f for _, f, _ in impls], stat=stat, repeat=2 if quick else REPS, warmup=1)
        for (label, f, mem), t in zip(impls, times, strict=True):
            mb, kind = (float(H.traced_peak(f)), "tracemalloc") if mem is None else mem
            if label.endswith("torch"):
                mb, kind = ((float("nan"), "rss (not measured with --quick)") if quick else
                            (1024 * H.child_peak_kib("benchmarks.dfl_problems:tsp_torch_step", n, B), "rss"))
            out.append(H.Row("dfl_problems", case, label, role="peer" if "HiGHS" in label else "dopt",
                             seconds=t, memory_bytes=mb, memory_kind=kind,
                             ref=None if label == "dopt dp numpy" else "dopt dp numpy"))
    w, _, v = dc.data.knapsack(B, 5, 12, dim=2, deg=2, seed=0)
    wi = np.round(w * 10)
    caps = np.full(2, np.floor(0.3 * wi.sum(axis=1).min()))
    case = f"knapsack n=12 m=2 B{B}"
    fns = [lambda m=m: S.knapsack(v, wi, caps, method=m) for m in ("dp", "milp")]
    times = H.timed(fns, stat=stat, repeat=2 if quick else REPS, warmup=1)
    for (label, f), t in zip((("dopt dp numpy", fns[0]), ("HiGHS MILP", fns[1])), times, strict=True):
        out.append(H.Row("dfl_problems", case, label, role="peer" if "HiGHS" in label else "dopt", seconds=t,
                         memory_bytes=float(H.traced_peak(f)), memory_kind="tracemalloc"))
    case = f"portfolio m=50 B{B}"
    if H.missing("clarabel") is None:
        cov, _, r = dc.data.portfolio(B, 5, 50, deg=2, seed=0)
        f = lambda: S.portfolio(r, cov)  # noqa: E731
        t = H.timed([f], stat=stat, repeat=2 if quick else REPS, warmup=1)[0]
        out.append(H.Row("dfl_problems", case, "dopt Clarabel per instance", seconds=t,
                         memory_bytes=float(H.traced_peak(f)), memory_kind="tracemalloc"))
    else:
        out.append(H.skipped("dfl_problems", case, "dopt Clarabel per instance", H.missing("clarabel") or "",
                             role="dopt"))
    return out


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
