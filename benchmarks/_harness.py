"""The benchmarks' shared harness: thread pinning, interleaved timing, medians, memory,
result rows, targets, log-log slopes and JSON (one helper per rule).

Only the standard library is imported at module level, so that :func:`pin_threads`
can set the thread variables before NumPy, torch or JAX are loaded. Run as
``python -m benchmarks._harness child MODULE:FACTORY ARGS_JSON`` it is the child
process of :func:`child_peak_kib`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# read by OpenMP, MKL, OpenBLAS and XLA when they load: set before importing them
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def pin_threads() -> dict[str, str]:
    """Pin every numeric library to one thread; returns what was set (for the header).

    The environment variables only act on libraries not yet loaded, so call this before
    importing NumPy, torch or JAX; ``torch.set_num_threads(1)`` is called when torch is
    installed.
    """
    for k, v in THREAD_ENV.items():
        if k == "XLA_FLAGS" and os.environ.get(k) and v not in os.environ[k]:
            os.environ[k] = f"{os.environ[k]} {v}"
        else:
            os.environ[k] = v
    info = {k: os.environ[k] for k in THREAD_ENV}
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
        info["torch.get_num_threads()"] = str(torch.get_num_threads())
    return info


# --- timing ---------------------------------------------------------------------------------
def alternate(
    fns: Sequence[Callable[[], Any]],
    *,
    repeat: int,
    warmup: int = 1,
    min_time: float = 0.0,
    clock: Callable[[], float] = time.perf_counter,
) -> list[list[float]]:
    """Seconds per call of each of ``fns``, ``repeat`` samples each, measured interleaved.

    Every round times each function once in turn (dopt, then the peer, then the floor,
    ...), so that a change in the machine's load hits all of them alike. A sample
    loops a function ``k`` times, with ``k`` chosen after the warm-up so that one
    sample lasts at least ``min_time`` (sub-millisecond calls); ``min_time = 0`` times
    single calls. Returns the samples (seconds per call) of each function.
    """
    loops = []
    for fn in fns:
        for _ in range(max(warmup, 1 if min_time > 0 else 0)):
            fn()
        k = 1
        if min_time > 0:
            t0 = clock()
            fn()
            k = max(1, int(min_time / max(clock() - t0, 1e-9)))
        loops.append(k)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, (fn, k) in enumerate(zip(fns, loops, strict=True)):
            t0 = clock()
            for _ in range(k):
                fn()
            samples[i].append((clock() - t0) / k)
    return samples


def median(samples: Iterable[float]) -> float:
    """The median of timing samples (the runner's statistic)."""
    return float(statistics.median(list(samples)))


def timed(fns: Sequence[Callable[[], Any]], *, stat: str = "median", **kw: Any) -> list[float]:
    """:func:`alternate`, each function's samples summarised by ``stat``: ``"median"``
    (the runner's) or ``"best"`` (the smallest sample)."""
    if stat not in ("median", "best"):
        raise ValueError(f"stat must be 'median' or 'best', got {stat!r}")
    return [median(s) if stat == "median" else min(s) for s in alternate(fns, **kw)]


def speedup(other_seconds: float, dopt_seconds: float) -> float:
    """``other / dopt``: above 1, dopt is faster (NaN when either is missing)."""
    if not (other_seconds > 0 and dopt_seconds > 0):
        return math.nan
    return other_seconds / dopt_seconds


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (t ∝ n^slope)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len(pts) < 2:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


# --- memory ---------------------------------------------------------------------------------
def saved_bytes(fn: Callable[[], Any]) -> int:
    """Bytes torch autograd saves for backward while ``fn`` runs (each storage once).

    ``torch`` has no CPU allocator statistics; what ``save_for_backward`` and the
    built-in ops keep is the part of a step's memory that a VJP design controls.
    """
    import torch

    total = 0
    seen: set[int] = set()

    def pack(x: Any) -> Any:
        nonlocal total
        storage = x.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn()
    return total


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated through Python's allocators (NumPy included) while ``fn`` runs."""
    import tracemalloc

    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        if not was:
            tracemalloc.stop()


def compiled(jitted: Any, *args: Any) -> Any:
    """The compiled program of a jitted JAX function for ``args`` (call it like the
    function; :func:`xla_bytes` reads its memory), compiled once."""
    return jitted.lower(*args).compile()


def xla_bytes(program: Any) -> int:
    """Temporary + output bytes of a compiled JAX program (XLA's own count)."""
    stats = program.memory_analysis()
    if stats is None:
        return 0
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def child_peak_kib(factory: str, *args: Any, warm: Sequence[Any] | None = None) -> float:
    """Growth of the peak resident set (KiB) of one call of ``factory(*args)()``, measured
    in a fresh process (imports, inputs and the allocator's baseline cancel).

    ``factory`` is ``"module:function"`` returning the step to measure. Lazy state
    (torch's, caches) is initialised first by one call of the step itself, or, when
    ``warm`` is given, of the smaller step ``factory(*warm)`` (so that a cached
    allocation of the measured size does not hide the peak). The child resets the peak (``VmHWM``) to the current
    resident set after building its inputs, and a low mmap threshold makes freed
    arrays leave the resident set. Linux only (``/proc``); NaN elsewhere.
    """
    if not Path("/proc/self/clear_refs").exists():
        return math.nan
    payload = json.dumps({"args": list(args), "warm": None if warm is None else list(warm)})
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_="65536",
        MALLOC_TRIM_THRESHOLD_="0",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [sys.executable, "-m", "benchmarks._harness", "child", factory, payload]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900, env=env)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_kib"])


def _child(factory: str, payload: str) -> None:
    pin_threads()
    spec = json.loads(payload)
    module, name = factory.split(":")
    make = getattr(importlib.import_module(module), name)
    step = make(*spec["args"])
    (step if spec["warm"] is None else make(*spec["warm"]))()
    # writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kib("VmRSS")
    step()
    print(json.dumps({"peak_kib": _status_kib("VmHWM") - base}))


# --- rows, targets, JSON --------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    """One measured implementation of one case of a workload.

    ``role``: ``"dopt"``, ``"peer"`` or ``"floor"``; ``ref``: the ``impl`` of the dopt
    row of the same case it is compared with (default: the case's first dopt row);
    ``ratio``: ``seconds / ref seconds`` (for a peer: above 1, dopt is faster), filled
    by :func:`fill_ratios`. ``memory_kind`` says what ``memory_bytes`` counts
    (``saved``: bytes saved for backward; ``tracemalloc``; ``xla``: compiled temp +
    output; ``rss``: a child's peak RSS growth). ``skipped``: why it was not measured.
    """

    workload: str
    case: str
    impl: str
    role: str = "dopt"
    seconds: float = math.nan
    memory_bytes: float = math.nan
    memory_kind: str = ""
    ratio: float = math.nan
    ref: str | None = None
    skipped: str | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


def skipped(workload: str, case: str, impl: str, reason: str, role: str = "peer") -> Row:
    """A row that was not measured, with the reason printed and written to JSON."""
    return Row(workload, case, impl, role=role, skipped=reason)


def missing(*modules: str) -> str | None:
    """``None`` when every module is importable, else the reason naming the missing ones."""
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(gone)}" if gone else None


def fill_ratios(rows: list[Row]) -> list[Row]:
    """Set ``ratio = seconds / reference dopt seconds`` on every row of every case."""
    for row in rows:
        if row.role == "dopt" and row.ref is None:
            continue
        same = [r for r in rows if r.workload == row.workload and r.case == row.case and r.role == "dopt"]
        ref = next((r for r in same if r.impl == row.ref), None) if row.ref else (same[0] if same else None)
        if ref is not None and ref is not row and row.skipped is None:
            row.ref = ref.impl
            row.ratio = speedup(row.seconds, ref.seconds)
    return rows


def find(rows: Sequence[Row], workload: str, case: str, impl: str) -> Row | None:
    """The measured row ``(workload, case, impl)``, or ``None`` (absent or skipped)."""
    for r in rows:
        if (r.workload, r.case, r.impl) == (workload, case, impl) and r.skipped is None:
            return r
    return None


@dataclasses.dataclass
class Target:
    """A row of the issue's target table: ``measure(rows) -> (value, floor value, note)``.

    ``value`` is compared with ``threshold`` by ``op`` (``">="`` or ``"<="``); ``floor``
    is the same quantity had dopt run at the floor measured in the same run (shown
    for missed rows).
    """

    label: str
    target: str
    op: str
    threshold: float
    measure: Callable[[Sequence[Row]], tuple[float | None, float | None, str]]

    def evaluate(self, rows: Sequence[Row]) -> dict[str, Any]:
        value, floor, note = self.measure(rows)
        if value is None or math.isnan(value):
            return {"label": self.label, "target": self.target, "value": None, "met": None,
                    "floor": None, "note": note or "not measured"}
        met = value >= self.threshold if self.op == ">=" else value <= self.threshold
        return {"label": self.label, "target": self.target, "value": value, "met": bool(met),
                "floor": floor, "note": note}


def ratio_target(
    label: str, target: str, workload: str, cases: Callable[[str], bool], num: str, den: str,
    op: str, threshold: float, floor: str | None = None,
) -> Target:
    """A target on ``num seconds / den seconds`` over the workload's cases selected by
    ``cases`` (the worst case counts: the smallest for ``">="``, the largest for ``"<="``).

    With ``floor``, the floor row's time replaces dopt's (the ``num`` or ``den`` row whose
    role is ``"dopt"``) in the worst case: the value dopt would reach at the floor.
    """

    def measure(rows: Sequence[Row]) -> tuple[float | None, float | None, str]:
        worst: tuple[float, str] | None = None
        for case in dict.fromkeys(r.case for r in rows if r.workload == workload and cases(r.case)):
            a, b = find(rows, workload, case, num), find(rows, workload, case, den)
            if a is None or b is None:
                continue
            v = a.seconds / b.seconds
            if worst is None or (v < worst[0] if op == ">=" else v > worst[0]):
                worst = (v, case)
        if worst is None:
            reasons = {r.skipped for r in rows if r.workload == workload and r.skipped and cases(r.case)}
            return None, None, "; ".join(sorted(reasons)) or "not run (no such case in this run)"
        fl = None
        if floor is not None:
            a, b = find(rows, workload, worst[1], num), find(rows, workload, worst[1], den)
            f = find(rows, workload, worst[1], floor)
            if f is not None and a is not None and b is not None:
                fl = (f.seconds if a.role == "dopt" else a.seconds) / (f.seconds if b.role == "dopt" else b.seconds)
        return worst[0], fl, f"worst case: {worst[1]}"

    return Target(label, target, op, threshold, measure)


def _fmt_num(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:.3g}"


def print_rows(rows: Sequence[Row]) -> None:
    """Each workload's rows: median time, time relative to dopt, memory."""
    last = None
    for r in rows:
        if r.workload != last:
            last = r.workload
            print(f"\n[{r.workload}]")
            print(f"  {'case':<36} {'impl':<34} {'median ms':>10} {'x dopt':>8} {'memory':>12}  kind")
        if r.skipped:
            print(f"  {r.case:<36} {r.impl:<34} {'skipped':>10}  ({r.skipped})")
            continue
        ratio = "" if math.isnan(r.ratio) else f"{r.ratio:.2f}"
        mem = "" if math.isnan(r.memory_bytes) else f"{r.memory_bytes / 2**20:.3f} MiB"
        print(f"  {r.case:<36} {r.impl:<34} {r.seconds * 1e3:10.3f} {ratio:>8} {mem:>12}  {r.memory_kind}")


def print_targets(results: Sequence[dict[str, Any]]) -> None:
    """The issue's target table: measured value, target, met/missed, the floor for misses."""
    print("\n| workload | measured | target | met | floor (same run) | note |")
    print("|---|---|---|---|---|---|")
    for t in results:
        met = "—" if t["met"] is None else ("met" if t["met"] else "missed")
        floor = _fmt_num(t["floor"]) if t["met"] is False else ""
        print(f"| {t['label']} | {_fmt_num(t['value'])} | {t['target']} | {met} | {floor} | {t['note']} |")


def write_json(path: str | os.PathLike[str], **content: Any) -> None:
    """Write the run (header, rows, targets, slopes) as JSON; NaN becomes ``null``."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return clean(dataclasses.asdict(x))
        return x

    Path(path).write_text(json.dumps(clean(content), indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "child":
        _child(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit("usage: python -m benchmarks._harness child MODULE:FACTORY ARGS_JSON")
