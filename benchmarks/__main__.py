"""One benchmark runner: every workload of ``benchmarks/`` on every installed backend,
with the installed peers timed on the same work in the same run (interleaved).

    python -m benchmarks [--quick] [--only NAME[,NAME]] [--json FILE] [--figures DIR | --no-figures]

Prints each workload's rows (median seconds per call, time relative to dopt's row of
the same case, memory and what it counts), the issue's target table (measured value,
target, met/missed, and for a missed row the value dopt would reach at the floor
measured in the same run), and the log-log slopes of the scaling curves; writes the
curves as PNG figures (matplotlib, the ``docs`` extra) and everything as JSON.
Threads are pinned to one (OpenMP, MKL, OpenBLAS, XLA, ``torch.set_num_threads``)
before any numeric library is imported. A missing peer's rows are printed as skipped,
with the reason. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import _harness as H

# name -> (module, function(quick, stat) -> rows); the order is the run's. The solver
# workloads come last: their JAX backend switches on 64-bit floats for the process.
WORKLOADS: dict[str, tuple[str, str]] = {
    "perturbed_jax": ("benchmarks.perturbed", "rows_jax"),
    "perturbed_torch": ("benchmarks.perturbed", "rows_torch"),
    "pfyl": ("benchmarks.perturbed", "rows_pfyl"),
    "perturbed_scaling": ("benchmarks.perturbed", "rows_scaling"),
    "networks": ("benchmarks.relax", "rows_networks"),
    "softsort_l2": ("benchmarks.relax", "rows_softsort"),
    "softsort_kl": ("benchmarks.relax", "rows_softsort_kl"),
    "subsets": ("benchmarks.subsets", "rows"),
    "raster": ("benchmarks.raster", "rows"),
    "logic": ("benchmarks.logic", "rows"),
    "structured": ("benchmarks.structured", "rows"),
    "dfl": ("benchmarks.dfl", "rows"),
    "dfl_problems": ("benchmarks.dfl_problems", "rows"),
    "dag": ("benchmarks.solvers", "rows_dag"),
    "grid": ("benchmarks.solvers", "rows_grid"),
}

PEERS = ("jaxopt", "optax", "pyepo", "gurobipy", "diffsort", "torchsort", "networkx", "scipy")


def _n(case: str) -> int | None:
    for part in case.replace(",", " ").split():
        if part.startswith("n="):
            return int(part[2:])
    return None


def _bitonic_memory(rows: Sequence[H.Row]) -> tuple[float | None, float | None, str]:
    vals = [(r.params["residual_n2_floats"], r.params["n"]) for r in rows
            if r.workload == "networks" and r.role == "dopt" and r.skipped is None
            and r.params.get("network") == "bitonic" and r.params.get("with_p")]
    if not vals:
        return None, None, "not run"
    worst = max(vals)
    peer = [r.params["residual_n2_floats"] for r in rows if r.workload == "networks" and r.role == "peer"
            and r.skipped is None and r.params.get("network") == "bitonic" and r.params.get("n") == worst[1]
            and r.params.get("with_p")]
    note = f"worst case: n={worst[1]} ({', '.join(f'n={n}: {v:.2f}' for v, n in sorted(vals, key=lambda t: t[1]))})"
    if peer:
        note += f"; diffsort {peer[0]:.1f} n² floats"
    return worst[0], None, note


def targets() -> list[H.Target]:
    """The issue's target table (issue 19)."""
    rt = H.ratio_target
    return [
        rt("torch perturbed(argmax) value+VJP, Gumbel, B128 d100 M100, f32 (jaxopt time / dopt)",
           "≥ 1.0× jaxopt", "perturbed_torch", lambda c: True,
           "jaxopt make_perturbed_argmax (jit)", "dopt torch", ">=", 1.0, "floor: torch noise + one argmax"),
        rt("JAX perturbed(argmax) jitted, same shape (jaxopt / dopt)", "≥ 1.5× jaxopt", "perturbed_jax",
           lambda c: True, "jaxopt make_perturbed_argmax (vmap)", "dopt jax (jit)", ">=", 1.5,
           "floor: noise + one max-reduce"),
        rt("torch PFYL training step, 5×5 DAG, B32, 10 samples (PyEPO / dopt)", "≥ 30× PyEPO + Gurobi",
           "pfyl", lambda c: True, "PyEPO perturbedFenchelYoung (Gurobi)", "dopt (batched DP solver)", ">=",
           30.0, "floor: noise + one batched solve"),
        rt("NumPy shortest_path_dag, 320 instances, 5×5 (Gurobi loop / dopt)", "≥ 200× Gurobi loop", "dag",
           lambda c: True, "gurobipy MIP loop", "dopt numpy", ">=", 200.0, "floor: value-only DP (NumPy)"),
        rt("KL soft_sort/soft_rank, B128 (torchsort / dopt, worst n)", "≥ 0.5 (within 2×)", "softsort_kl",
           lambda c: True, "torchsort", "dopt", ">=", 0.5, "floor: hard torch.sort"),
        rt("L2 soft_sort, n = 32 (dopt / torchsort)", "≤ 1.5× torchsort's time", "softsort_l2",
           lambda c: c == "soft_sort n=32", "dopt", "torchsort", "<=", 1.5, "floor: hard torch.sort"),
        rt("L2 soft_sort, n ≥ 64 (dopt / torchsort, worst n)", "≤ 1.0× torchsort's time", "softsort_l2",
           lambda c: c.startswith("soft_sort") and (_n(c) or 0) >= 64, "dopt", "torchsort", "<=", 1.0,
           "floor: hard torch.sort"),
        rt("odd-even network with P, fwd+bwd, B128 (diffsort / dopt, worst n ≥ 16)", "≥ 5× at every n ≥ 16",
           "networks", lambda c: c.startswith("odd_even") and c.endswith(" P") and (_n(c) or 0) >= 16,
           "diffsort DiffSortNet", "dopt", ">=", 5.0, "floor: dense P write + backward"),
        rt("bitonic network with P, fwd+bwd, B128, n = 64 (diffsort / dopt)", "≥ 10×", "networks",
           lambda c: c == "bitonic n=64 P", "diffsort DiffSortNet", "dopt", ">=", 10.0,
           "floor: dense P write + backward"),
        rt("bitonic network with P, fwd+bwd, B128, n = 256 (diffsort / dopt)", "≥ 50×", "networks",
           lambda c: c == "bitonic n=256 P", "diffsort DiffSortNet", "dopt", ">=", 50.0,
           "floor: dense P write + backward"),
        H.Target("bitonic P residual memory, saved for backward (n² floats per instance, worst n)",
                 "≤ 1.5 n² floats", "<=", 1.5, _bitonic_memory),
    ]


# --- scaling curves -------------------------------------------------------------------------
def curves(rows: Sequence[H.Row]) -> list[dict[str, Any]]:
    """Time (and memory) against size for each family and implementation, with the
    fitted log-log slope of the time."""
    out: list[dict[str, Any]] = []

    def add(family: str, label: str, pts: list[tuple[float, H.Row]]) -> None:
        pts = sorted((x, r) for x, r in pts if r.skipped is None and r.seconds > 0)
        if len(pts) < 2:
            return
        xs, ts = [x for x, _ in pts], [r.seconds for _, r in pts]
        mem = [r.memory_bytes for _, r in pts]
        out.append({"family": family, "label": label, "x": xs, "seconds": ts, "memory_bytes": mem,
                    "memory_kind": pts[0][1].memory_kind, "slope": H.loglog_slope(xs, ts)})

    def by(workload: str, key: Callable[[H.Row], Any], x: Callable[[H.Row], float]) -> dict[Any, list]:
        groups: dict[Any, list] = {}
        for r in rows:
            if r.workload == workload and r.role != "floor" and r.skipped is None and key(r) is not None:
                groups.setdefault(key(r), []).append((x(r), r))
        return groups

    for (net, impl), pts in by("networks", lambda r: (r.params["network"], r.impl) if r.params.get("with_p")
                                 else None, lambda r: r.params["n"]).items():
        add("networks (with P), time vs n", f"{net} {impl}", pts)
    for w in ("softsort_l2", "softsort_kl"):
        for (op, impl), pts in by(w, lambda r: (r.params["op"], r.impl), lambda r: r.params["n"]).items():
            add(f"soft sort/rank ({w[-2:]}), time vs n", f"{op} {impl}", pts)
    for (axis, impl), pts in by("perturbed_scaling", lambda r: (r.params["axis"], r.impl),
                                lambda r: r.params["num_samples" if r.params["axis"] == "samples" else "batch"]).items():
        add(f"perturbed argmax, time vs {'num_samples' if axis == 'samples' else 'batch'}", impl, pts)
    return out


def print_slopes(cs: Sequence[dict[str, Any]]) -> None:
    print("\nscaling: fitted log-log slope of time (t ∝ x^slope)")
    for c in cs:
        span = f"x = {c['x'][0]:g}..{c['x'][-1]:g}"
        print(f"  {c['family']:<42} {c['label']:<34} slope {c['slope']:5.2f}  ({span})")


def _log_axes(ax: Any, xs: Sequence[float]) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted(set(xs)))
    ax.set_xticklabels([f"{x:g}" for x in sorted(set(xs))], fontsize=7)
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)


def figures(cs: Sequence[dict[str, Any]], directory: Path) -> list[str]:
    """One PNG per family (time vs size, log-log) plus memory vs n; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    fams = list(dict.fromkeys(c["family"] for c in cs))
    groups = {"bench_networks.png": [f for f in fams if f.startswith("networks")],
              "bench_softsort.png": [f for f in fams if f.startswith("soft sort")],
              "bench_perturbed.png": [f for f in fams if f.startswith("perturbed")]}
    mem_fams = [f for f in fams if f.startswith(("networks", "soft sort"))]
    plots = [(name, fs, "seconds") for name, fs in groups.items() if fs]
    if mem_fams:
        plots.append(("bench_memory.png", mem_fams, "memory_bytes"))
    for name, fs, key in plots:
        fig, axes = plt.subplots(1, len(fs), figsize=(5.2 * len(fs), 4), squeeze=False)
        for ax, fam in zip(axes[0], fs, strict=True):
            xs: list[float] = []
            for c in (c for c in cs if c["family"] == fam):
                ys = c[key]
                if key == "memory_bytes":
                    if not all(y is not None and y == y and y > 0 for y in ys):
                        continue
                    ax.plot(c["x"], [y / 2**20 for y in ys], "o-", label=c["label"])
                else:
                    ax.plot(c["x"], [t * 1e3 for t in ys], "o-", label=f"{c['label']} (slope {c['slope']:.2f})")
                xs += c["x"]
            title = fam if key == "seconds" else fam.replace("time vs n", "memory vs n")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(fam.rsplit(" vs ", 1)[-1])
            ax.set_ylabel("median ms per call" if key == "seconds" else "MiB saved for backward")
            if xs:
                _log_axes(ax, xs)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(directory / name, dpi=80)
        plt.close(fig)
        written.append(str(directory / name))
    return written


def header(pinned: dict[str, str], quick: bool) -> dict[str, Any]:
    versions = {}
    for m in ("numpy", "torch", "jax", *PEERS):
        try:
            versions[m] = importlib.metadata.version(m) if H.missing(m) is None else None
        except importlib.metadata.PackageNotFoundError:
            versions[m] = "installed"
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "threads": pinned, "quick": quick, "versions": versions}


def run(names: Sequence[str], quick: bool) -> tuple[list[H.Row], list[str]]:
    rows: list[H.Row] = []
    errors = []
    for name in names:
        module, fn = WORKLOADS[name]
        t0 = time.perf_counter()
        print(f"running {name} ...", flush=True)
        try:
            rows += getattr(importlib.import_module(module), fn)(quick)
        except Exception as e:
            traceback.print_exc()
            errors.append(name)
            rows.append(H.skipped(name, "-", "-", f"error: {type(e).__name__}: {e}", role="dopt"))
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    return H.fill_ratios(rows), errors


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help=f"run only these workloads (repeatable or comma-separated): {', '.join(WORKLOADS)}")
    ap.add_argument("--json", metavar="FILE", help="write header, rows, targets and curves as JSON")
    ap.add_argument("--figures", metavar="DIR", default="docs/figures", help="where the PNG curves go")
    ap.add_argument("--no-figures", action="store_true", help="do not draw the curves")
    args = ap.parse_args(argv)
    names = [n for item in args.only for n in item.split(",") if n] or list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    pinned = H.pin_threads()
    head = header(pinned, args.quick)
    print("dopt benchmarks —", head["date"], f"— {head['cpus']} CPUs, load average "
          + ", ".join(f"{x:.2f}" for x in head["load_average"]))
    print("threads pinned:", ", ".join(f"{k}={v}" for k, v in pinned.items()))
    print("peers:", ", ".join(f"{m} {v}" if v else f"{m} (missing)" for m, v in head["versions"].items()
                              if m in PEERS))
    t0 = time.perf_counter()
    rows, errors = run(names, args.quick)
    H.print_rows(rows)
    results = [t.evaluate(rows) for t in targets()]
    H.print_targets(results)
    cs = curves(rows)
    if cs:
        print_slopes(cs)
    written: list[str] = []
    if not args.no_figures and cs:
        if H.missing("matplotlib") is not None:
            print("\nfigures skipped: matplotlib is not installed (pip install -e '.[docs]')")
        else:
            written = figures(cs, Path(args.figures))
            print("\nfigures:", ", ".join(written))
    head["seconds"] = time.perf_counter() - t0
    print(f"\ntotal {head['seconds']:.0f} s" + (f"; workloads that raised: {errors}" if errors else ""))
    if args.json:
        H.write_json(args.json, header=head, rows=rows, targets=results, curves=cs, figures=written,
                     errors=errors)
        print(f"JSON: {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
