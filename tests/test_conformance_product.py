"""The conformance suite as a product: tables (Markdown, JSON, the committed docs
page), third-party backends (register_env, the pytest plugin, the docs example) and
the torch.func / torch.compile checks."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dopt_conformance as conformance
from dopt_core.cli import main
from dopt_core.op import Bound, Op, op_function

DOCS = Path(__file__).resolve().parents[1] / "docs" / "conformance.md"
HAS_TORCH = importlib.util.find_spec("torch") is not None
START, END = "<!-- conformance-table:start -->", "<!-- conformance-table:end -->"


def _table_rows_and_columns(markdown: str) -> tuple[list[str], list[str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    header = [c.strip().strip("`") for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        if ln.startswith("| backend |"):
            break
        rows.append(ln.strip("|").split("|")[0].strip().strip("`"))
    return header[1:], rows


def test_markdown_and_json_tables() -> None:
    results = conformance.run(backends=["numpy", "array_api_strict", "cupy"], cases=["sort", "argmax"])
    cols, rows = _table_rows_and_columns(conformance.format_markdown(results))
    assert cols == ["numpy", "array_api_strict", "cupy"] and rows == ["sort", "argmax"]
    md = conformance.format_markdown(results)
    assert "| `sort` | ok 0.0e+00 | ok 0.0e+00 | skip |" in md  # sort is exact on both
    assert "`cupy` skipped:" in md
    doc = json.loads(conformance.format_json(results))
    assert doc["table"]["argmax"]["numpy"] == "ok 0.0e+00" and doc["table"]["sort"]["cupy"] == "skip"
    assert len(doc["results"]) == len(results)
    assert all(r["seconds"] >= 0 for r in doc["results"])
    assert {r["status"] for r in doc["results"] if r["backend"] == "numpy"} <= {"pass", "skip"}


def test_cli_writes_markdown_between_markers_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nintro\n\n{START}\nold table\n{END}\n\nafter\n")
    out_json = tmp_path / "t.json"
    code = main(["conformance", "--backend", "numpy", "--case", "sort",
                 "--markdown", str(page), "--json", str(out_json)])
    assert code == 0
    text = page.read_text()
    assert text.startswith("# Title\n\nintro\n\n" + START) and text.endswith(END + "\n\nafter\n")
    assert "old table" not in text and "| `sort` | ok" in text
    assert json.loads(out_json.read_text())["cases"] == ["sort"]
    capsys.readouterr()


def test_committed_docs_table_matches_registry() -> None:
    """docs/conformance.md holds the table generated on CPU: one row per registered case,
    one column per built-in backend (values and timings are not compared)."""
    text = DOCS.read_text()
    table = text.split(START, 1)[1].split(END, 1)[0]
    cols, rows = _table_rows_and_columns(table)
    hint = "regenerate it with: dopt conformance --markdown docs/conformance.md"
    assert cols == list(conformance.BACKEND_NAMES), hint
    assert sorted(rows) == sorted(conformance.CASES), hint


def test_register_env_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from dopt_conformance import _backends

    monkeypatch.setattr(_backends, "_EXTRA", list(_backends._EXTRA))  # forget what this test registers
    monkeypatch.setattr(_backends, "_FACTORIES", dict(_backends._FACTORIES))
    with pytest.raises(ValueError, match="'numpy' is a built-in backend"):
        conformance.register_env("numpy", conformance.Env)
    with pytest.raises(TypeError, match="factory must be callable"):
        conformance.register_env("mine", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected MODULE:FACTORY"):
        conformance.load_env("no_colon")
    conformance.register_env("not_an_env", lambda: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="must return a dopt_conformance.Env"):
        conformance.setup("not_an_env")
    (row,) = conformance.run(backends=["not_an_env"], cases=["sort"])
    assert row.status == "fail" and "must return a dopt_conformance.Env" in row.message
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        conformance.setup("nope")


def _docs_example(tmp_path: Path) -> Path:
    text = DOCS.read_text()
    block = text.split("<!-- example: my_strict_adapter.py -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code is not None
    (tmp_path / "my_strict_adapter.py").write_text(code.group(1))
    return tmp_path


def test_docs_example_adapter_runs_the_suite(tmp_path: Path) -> None:
    """The user's array_api_strict adapter of docs/conformance.md, through the pytest
    plugin, on two cases: everything that applies passes, and it is the user's adapter
    (not dopt's generic one) that handles the arrays."""
    where = _docs_example(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(where) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "dopt_conformance.pytest_plugin", "-p", "no:cacheprovider",
         "--pyargs", "dopt_conformance", "--dopt-env", "my_strict_adapter:StrictEnv",
         "--dopt-case", "sort", "--dopt-case", "argmax", "-q", "-rs"],
        cwd=where, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", run.stdout)
    assert passed and int(passed.group(1)) >= 4, run.stdout  # forward ×2 dtypes ×2 cases, sort's vjp
    assert "failed" not in run.stdout
    who = subprocess.run(
        [sys.executable, "-c", "import my_strict_adapter, array_api_strict as xp, dopt_core as dc; "
         "print(dc.backend_for(xp.asarray([1.0])).name)"],
        cwd=where, env=env, capture_output=True, text=True, timeout=120, check=True,
    )
    assert who.stdout.strip() == "my_strict"


# --- torch.func / torch.compile checks --------------------------------------------------
class _WrongGrad(Op):
    """Sorts correctly; its VJP is twice the right one outside NumPy."""

    name = "wrong_grad"

    def __hash__(self) -> int:
        return 2

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _WrongGrad)

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        idx = xp.argsort(theta, axis=-1)
        return xp.take_along_axis(theta, idx, axis=-1), (idx, theta)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        idx, theta = residuals
        out = xp.zeros_like(theta)
        rows = np.arange(theta.shape[0])[:, None]
        scale = 1.0 if isinstance(g, np.ndarray) else 2.0
        if isinstance(g, np.ndarray):
            out[rows, idx] = g
            return (out,)
        out = out.scatter(-1, idx, g)  # torch
        return (scale * out,)


@op_function
def _wrong_grad(theta: Any) -> Bound:
    return Bound(_WrongGrad(), (theta,))


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_checks_on_sort_and_a_wrong_vjp() -> None:
    env = conformance.setup("torch")
    case = conformance.CASES["sort"]
    assert conformance.CHECKS["torch_func"](env, case, "float64") == 0.0
    vm = conformance.run_one("torch", "sort", "float64", "torch_vmap")
    assert vm.status in ("pass", "skip"), vm.message  # skip: dopt_torch has no vmap rule yet
    if vm.status == "skip":
        assert vm.message.startswith("torch.func.vmap unsupported")
    comp = conformance.run_one("torch", "sort", "float64", "torch_compile")
    assert comp.status == "pass", comp.message
    assert conformance.run_one("torch", "rank", "float64", "torch_compile").status == "skip"
    wrong = conformance.Case("wrong_grad", _wrong_grad, lambda rng, dt: ((rng.normal(size=(3, 5)).astype(dt),), {}),
                             differentiable=True, tags=frozenset({"compile"}))
    with pytest.raises(AssertionError, match="wrong_grad torch.func.vjp"):
        conformance.CHECKS["torch_func"](env, wrong, "float64")
    with pytest.raises(AssertionError, match="wrong_grad torch.compile vjp"):
        conformance.CHECKS["torch_compile"](env, wrong, "float64")
