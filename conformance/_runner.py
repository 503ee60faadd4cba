"""Run every check over backends × cases × dtypes and summarise as a table."""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from dataclasses import dataclass

from ._backends import BACKEND_NAMES, Skip, setup
from ._cases import CASES
from ._checks import CHECKS, applies

__all__ = ["Result", "format_table", "run"]

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


def run_one(backend: str, case: str, dtype: str, check: str) -> Result:
    try:
        env = setup(backend)
        with env.context():
            err = CHECKS[check](env, CASES[case], dtype)
    except Skip as exc:
        return Result(backend, case, dtype, check, "skip", message=str(exc))
    except AssertionError as exc:
        return Result(backend, case, dtype, check, "fail", message=str(exc).strip())
    except Exception as exc:  # noqa: BLE001 - a crash is a failure, reported with its cause
        msg = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
        return Result(backend, case, dtype, check, "fail", message=msg)
    return Result(backend, case, dtype, check, "pass", error=err)


def run(
    backends: Iterable[str] | None = None,
    cases: Iterable[str] | None = None,
    dtypes: Iterable[str] = DTYPES,
    checks: Iterable[str] | None = None,
) -> list[Result]:
    """All results; a backend that is not available yields one "skip" per case."""
    out = []
    for b in backends or BACKEND_NAMES:
        try:
            setup(b)
        except Skip as exc:
            out += [Result(b, c, "-", "-", "skip", message=str(exc)) for c in cases or CASES]
            continue
        for c in cases or CASES:
            for d in dtypes:
                for k in checks or CHECKS:
                    if not applies(CASES[c], k):
                        continue
                    out.append(run_one(b, c, d, k))
    return out


def format_table(results: list[Result]) -> str:
    """Backend × case table: ``ok <max error>``, ``FAIL`` or ``skip (<reason>)``."""
    backends = list(dict.fromkeys(r.backend for r in results))
    cases = list(dict.fromkeys(r.case for r in results))
    cell: dict[tuple[str, str], str] = {}
    for b in backends:
        for c in cases:
            rs = [r for r in results if r.backend == b and r.case == c]
            if any(r.status == "fail" for r in rs):
                cell[b, c] = "FAIL"
            elif any(r.status == "pass" for r in rs):
                cell[b, c] = "ok {:.1e}".format(max(r.error or 0.0 for r in rs if r.status == "pass"))
            else:
                cell[b, c] = "skip"
    w0 = max(len(c) for c in cases + ["case"])
    widths = {b: max(len(b), *(len(cell[b, c]) for c in cases)) for b in backends}
    lines = ["case".ljust(w0) + " | " + " | ".join(b.ljust(widths[b]) for b in backends)]
    lines.append("-" * len(lines[0]))
    for c in cases:
        lines.append(c.ljust(w0) + " | " + " | ".join(cell[b, c].ljust(widths[b]) for b in backends))
    absent = {r.backend: r.message for r in results if r.dtype == "-"}
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
