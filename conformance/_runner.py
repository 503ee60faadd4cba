"""Run every check over backends × cases × dtypes and summarise as a table.

:func:`format_table` is the plain-text table ``dopt conformance`` prints;
:func:`format_markdown` the same table as Markdown (the one in ``docs/conformance.md``),
:func:`format_json` every result with its timing.
"""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from ._backends import Skip, backend_names, setup
from ._cases import CASES
from ._checks import CHECKS, applies

__all__ = ["Result", "format_json", "format_markdown", "format_table", "run", "table_cells"]

DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Result:
    backend: str
    case: str
    dtype: str
    check: str
    status: str  # "pass" | "fail" | "skip"
    error: float | None = None
    message: str = ""
    seconds: float = 0.0


def run_one(backend: str, case: str, dtype: str, check: str) -> Result:
    start = time.perf_counter()
    try:
        env = setup(backend)
        with env.context():
            err = CHECKS[check](env, CASES[case], dtype)
    except Skip as exc:
        return Result(backend, case, dtype, check, "skip", message=str(exc), seconds=time.perf_counter() - start)
    except AssertionError as exc:
        return Result(backend, case, dtype, check, "fail", message=str(exc).strip(),
                      seconds=time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a crash is a failure, reported with its cause
        msg = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        return Result(backend, case, dtype, check, "fail", message=msg, seconds=time.perf_counter() - start)
    return Result(backend, case, dtype, check, "pass", error=err, seconds=time.perf_counter() - start)


def run(
    backends: Iterable[str] | None = None,
    cases: Iterable[str] | None = None,
    dtypes: Iterable[str] = DTYPES,
    checks: Iterable[str] | None = None,
) -> list[Result]:
    """All results; a backend that is not available yields one "skip" per case, one
    whose environment cannot be set up (a broken third-party factory) one "fail"."""
    out = []
    for b in backends or backend_names():
        try:
            setup(b)
        except Skip as exc:
            out += [Result(b, c, "-", "-", "skip", message=str(exc)) for c in cases or CASES]
            continue
        except Exception as exc:  # noqa: BLE001 - a broken (third-party) environment fails its row
            msg = f"setting up the backend failed: {type(exc).__name__}: {exc}"
            out += [Result(b, c, "-", "setup", "fail", message=msg) for c in cases or CASES]
            continue
        for c in cases or CASES:
            for d in dtypes:
                for k in checks or CHECKS:
                    if not applies(CASES[c], k):
                        continue
                    out.append(run_one(b, c, d, k))
    return out


def table_cells(results: list[Result]) -> tuple[list[str], list[str], dict[tuple[str, str], str]]:
    """``(backends, cases, cell)``: ``cell[backend, case]`` is ``ok <max error>``,
    ``FAIL`` or ``skip``, over the dtypes and checks of that pair."""
    backends = list(dict.fromkeys(r.backend for r in results))
    cases = list(dict.fromkeys(r.case for r in results))
    by_pair: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        by_pair.setdefault((r.backend, r.case), []).append(r)
    cell: dict[tuple[str, str], str] = {}
    for b in backends:
        for c in cases:
            rs = by_pair.get((b, c), [])
            if any(r.status == "fail" for r in rs):
                cell[b, c] = "FAIL"
            elif any(r.status == "pass" for r in rs):
                cell[b, c] = "ok {:.1e}".format(max(r.error or 0.0 for r in rs if r.status == "pass"))
            else:
                cell[b, c] = "skip"
    return backends, cases, cell


def format_table(results: list[Result]) -> str:
    """Backend × case table: ``ok <max error>``, ``FAIL`` or ``skip (<reason>)``."""
    backends, cases, cell = table_cells(results)
    w0 = max(len(c) for c in cases + ["case"])
    widths = {b: max(len(b), *(len(cell[b, c]) for c in cases)) for b in backends}
    lines = ["case".ljust(w0) + " | " + " | ".join(b.ljust(widths[b]) for b in backends)]
    lines.append("-" * len(lines[0]))
    for c in cases:
        lines.append(c.ljust(w0) + " | " + " | ".join(cell[b, c].ljust(widths[b]) for b in backends))
    absent = _absent(results)
    if absent:
        lines.append("")
        lines += [f"skip {b}: {reason}" for b, reason in absent.items()]
    fails = [r for r in results if r.status == "fail"]
    n_pass = sum(r.status == "pass" for r in results)
    lines.append("")
    lines.append(f"{n_pass} checks passed, {len(fails)} failed (cell: max abs error over dtypes and checks)")
    for r in fails:
        lines.append(f"FAIL {r.backend} {r.case} {r.dtype} {r.check}: {r.message}")
    return "\n".join(lines)


def _absent(results: list[Result]) -> dict[str, str]:
    return {r.backend: r.message for r in results if r.dtype == "-" and r.status == "skip"}


def format_markdown(results: list[Result]) -> str:
    """The backend × op table as Markdown: one row per case, one column per backend;
    cells ``ok <max abs error>``, ``FAIL`` or ``skip``; then the absent backends and
    which checks passed, failed or were skipped per backend."""
    backends, cases, cell = table_cells(results)
    lines = ["| case | " + " | ".join(f"`{b}`" for b in backends) + " |",
             "|---|" + "---|" * len(backends)]
    lines += [f"| `{c}` | " + " | ".join(cell[b, c] for b in backends) + " |" for c in cases]
    absent = _absent(results)
    if absent:
        lines.append("")
        lines += [f"- `{b}` skipped: {reason}" for b, reason in absent.items()]
    lines.append("")
    lines.append("| backend | check | passed | failed | skipped |")
    lines.append("|---|---|---|---|---|")
    for b in backends:
        if b in absent:
            continue
        for k in CHECKS:
            rs = [r for r in results if r.backend == b and r.check == k]
            if rs:
                n = {s: sum(r.status == s for r in rs) for s in ("pass", "fail", "skip")}
                lines.append(f"| `{b}` | `{k}` | {n['pass']} | {n['fail']} | {n['skip']} |")
    return "\n".join(lines) + "\n"


def format_json(results: list[Result]) -> str:
    """Every result (backend, case, dtype, check, status, error, message, seconds),
    with the table cells and the platform, as JSON."""
    backends, cases, cell = table_cells(results)
    doc = {
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()},
        "backends": backends,
        "cases": cases,
        "checks": list(CHECKS),
        "table": {c: {b: cell[b, c] for b in backends} for c in cases},
        "results": [asdict(r) for r in results],
    }
    return json.dumps(doc, indent=1) + "\n"
