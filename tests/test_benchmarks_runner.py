"""The benchmark runner (``python -m benchmarks``) and its harness: the JSON it writes,
peers reported as skipped when absent, ratios and medians on fake timings, the log-log
slope. No timing assertions (speed lives in benchmarks/)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import _harness as H  # noqa: E402

# the peers made absent in the child run, whatever is installed
ABSENT = ("torchsort", "diffsort", "jaxopt", "optax", "pyepo", "gurobipy", "networkx")

CHILD = """
import sys
from benchmarks import _harness as H
real = H.missing
ABSENT = {absent!r}
def missing(*modules):
    gone = [m for m in modules if m in ABSENT]
    return f"not installed: {{', '.join(gone)}}" if gone else real(*modules)
H.missing = missing
from benchmarks.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("bench") / "run.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD.format(absent=ABSENT), "--quick", "--only", "softsort_l2,structured",
         "--json", str(out), "--no-figures"],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_quick_run_writes_the_expected_json(quick_run: tuple) -> None:
    proc, data = quick_run
    assert set(data) >= {"header", "rows", "targets", "curves"}
    assert data["header"]["threads"]["OMP_NUM_THREADS"] == "1"
    assert data["header"]["threads"]["torch.get_num_threads()"] == "1"
    assert "threads pinned: OMP_NUM_THREADS=1" in proc.stdout
    rows = data["rows"]
    assert {r["workload"] for r in rows} == {"softsort_l2", "structured"}
    dopt = [r for r in rows if r["workload"] == "softsort_l2" and r["role"] == "dopt"]
    # soft_sort and soft_rank at the two quick sizes, each timed and with its saved bytes
    assert sorted(r["case"] for r in dopt) == ["soft_rank n=32", "soft_rank n=64", "soft_sort n=32", "soft_sort n=64"]
    for r in dopt:
        assert r["seconds"] > 0 and r["memory_bytes"] > 0 and r["memory_kind"] == "saved"
    floors = [r for r in rows if r["role"] == "floor"]
    assert len(floors) == 4 and all(r["ratio"] > 0 for r in floors)
    # every measured row has a memory figure and says what it counts
    assert all(r["memory_kind"] for r in rows if r["skipped"] is None)
    # one curve per op and implementation measured (dopt only: torchsort is absent)
    labels = sorted(c["label"] for c in data["curves"])
    assert labels == ["soft_rank dopt", "soft_sort dopt"]
    assert all(c["x"] == [32, 64] for c in data["curves"])


def test_absent_peers_are_skipped_with_a_reason(quick_run: tuple) -> None:
    proc, data = quick_run
    rows = data["rows"]
    ts = [r for r in rows if r["impl"] == "torchsort"]
    assert len(ts) == 4
    assert all(r["skipped"] == "not installed: torchsort" and r["seconds"] is None for r in ts)
    nx = [r for r in rows if r["impl"] == "networkx per sample"]
    assert len(nx) == 1 and nx[0]["skipped"] == "not installed: networkx"
    assert "skipped  (not installed: torchsort)" in proc.stdout
    # the target needing torchsort is reported as not measured, with the reason
    (l2,) = [t for t in data["targets"] if t["label"].startswith("L2 soft_sort, n = 32")]
    assert l2["value"] is None and l2["met"] is None and "torchsort" in l2["note"]
    # a target of a workload not run says so
    (dag,) = [t for t in data["targets"] if t["label"].startswith("NumPy shortest_path_dag")]
    assert dag["met"] is None and "not run" in dag["note"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, durations: list[float]) -> object:
        it = iter(durations)

        def fn() -> None:
            self.calls.append(name)
            self.now += next(it)

        return fn


def test_alternate_interleaves_and_takes_medians_on_fake_timings() -> None:
    clock = FakeClock()
    # warm-up call first, then the samples: medians 2.0 and 0.5 (not the means 8/3, 0.9)
    a = clock.work("a", [100.0, 1.0, 5.0, 2.0])
    b = clock.work("b", [100.0, 0.5, 0.4, 1.8])
    samples = H.alternate([a, b], repeat=3, warmup=1, clock=clock)
    assert samples[0] == pytest.approx([1.0, 5.0, 2.0]) and samples[1] == pytest.approx([0.5, 0.4, 1.8])
    assert clock.calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert H.timed([clock.work("c", [9.0, 3.0, 1.0, 2.0])], repeat=3, clock=clock) == pytest.approx([2.0])
    assert H.timed([clock.work("d", [9.0, 3.0, 1.0, 2.0])], stat="best", repeat=3, clock=clock) == pytest.approx([1.0])
    # a sample loops a call until it lasts min_time: 0.25 s calls, 1 s samples -> 4 calls each
    clock.calls.clear()
    e = clock.work("e", [0.25] * 10)
    assert H.alternate([e], repeat=2, warmup=0, min_time=1.0, clock=clock)[0] == pytest.approx([0.25, 0.25])
    assert len(clock.calls) == 1 + 1 + 2 * 4  # warm-up, calibration, two samples of four


def test_ratios_and_targets_from_fake_timings() -> None:
    rows = [
        H.Row("w", "c", "dopt", seconds=0.5),
        H.Row("w", "c", "peer", role="peer", seconds=3.0),
        H.Row("w", "c", "floor", role="floor", seconds=0.25),
        H.Row("w", "c", "dopt alt", seconds=1.5, ref="dopt"),
        H.skipped("w", "c", "gone", "not installed: gone"),
        H.Row("w", "c2", "dopt", seconds=1.0),
        H.Row("w", "c2", "peer", role="peer", seconds=4.0),
    ]
    H.fill_ratios(rows)
    assert rows[1].ratio == pytest.approx(6.0) and rows[1].ref == "dopt"
    assert rows[2].ratio == pytest.approx(0.5)
    assert rows[3].ratio == pytest.approx(3.0)
    assert math.isnan(rows[0].ratio) and math.isnan(rows[4].ratio)
    assert rows[6].ratio == pytest.approx(4.0)
    # the worst case counts: case c gives 6, case c2 gives 4
    met = H.ratio_target("t", ">= 3", "w", lambda c: True, "peer", "dopt", ">=", 3.0, "floor").evaluate(rows)
    assert met["value"] == pytest.approx(4.0) and met["met"] is True and "c2" in met["note"]
    # missed in case c only: the value at the floor is peer / floor = 3 / 0.25 = 12
    miss = H.ratio_target("t", ">= 10", "w", lambda c: c == "c", "peer", "dopt", ">=", 10.0, "floor").evaluate(rows)
    assert miss["value"] == pytest.approx(6.0) and miss["met"] is False and miss["floor"] == pytest.approx(12.0)
    # an upper bound on dopt / peer takes the largest case: 1/4 in c2 against 1/6 in c
    up = H.ratio_target("t", "<= 0.2", "w", lambda c: True, "dopt", "peer", "<=", 0.2).evaluate(rows)
    assert up["value"] == pytest.approx(0.25) and up["met"] is False
    assert H.speedup(3.0, 0.0) != H.speedup(3.0, 0.0)  # NaN when a time is missing


def test_loglog_slope_of_a_power_law() -> None:
    ns = [16, 32, 64, 128, 256]
    assert H.loglog_slope(ns, [3e-6 * n**2 for n in ns]) == pytest.approx(2.0, abs=1e-12)
    assert H.loglog_slope(ns, [0.7 * n**1.5 for n in ns]) == pytest.approx(1.5, abs=1e-12)
    assert math.isnan(H.loglog_slope([16], [1.0]))


def test_saved_bytes_counts_what_autograd_keeps() -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(64, 32, requires_grad=True)
    # x * x saves x twice (one storage: counted once); exp saves its output
    assert H.saved_bytes(lambda: (x * x).sum()) == 64 * 32 * 4
    assert H.saved_bytes(lambda: torch.exp(x * 2.0).sum()) == 64 * 32 * 4
    with torch.no_grad():
        assert H.saved_bytes(lambda: torch.exp(x)) == 0


def test_traced_peak_sees_a_numpy_temporary() -> None:
    np = pytest.importorskip("numpy")
    peak = H.traced_peak(lambda: np.ones(1_000_000).sum())
    assert 8_000_000 <= peak < 8_200_000
