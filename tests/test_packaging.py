"""The wheel ships every package of the source tree, and nothing else.

Builds the wheel from a copy of the worktree (offline: ``--no-build-isolation`` with the
setuptools and wheel of the test extra; a copy, so that a stale ``build/`` directory
cannot hide a missing file), installs it with ``--no-deps`` into a fresh venv, and
imports every subpackage found in the source tree from there (numpy, scipy, torch, jax
come from this interpreter's site-packages through ``PYTHONPATH``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source directory -> installed top-level package: the core, every plugin, the suite
PACKAGES = {
    **{p.name: p.name for p in sorted(ROOT.glob("dopt_*")) if (p / "__init__.py").is_file()},
    "conformance": "dopt_conformance",
}
NOT_SHIPPED = ("benchmarks", "examples", "tests", "docs", "conformance", "setup")


def _source_modules() -> dict[str, str]:
    """Installed module name -> path inside the wheel, for every .py of the source packages."""
    out = {}
    for src, dst in PACKAGES.items():
        for path in sorted((ROOT / src).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(ROOT / src).with_suffix("")
            parts = [dst, *rel.parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = "/".join([dst, *path.relative_to(ROOT / src).parts])
    return out


def _subpackages() -> list[str]:
    return sorted(m for m, p in _source_modules().items() if p.endswith("/__init__.py"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis")
    shutil.copytree(ROOT, src, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp / "dist"), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (whl,) = (tmp / "dist").glob("dopt-*.whl")
    return whl


def test_wheel_holds_every_source_file_and_no_other_top_level(wheel: Path) -> None:
    assert {"dopt_core", "dopt_torch", "dopt_jax", "dopt_cupy"} <= set(PACKAGES)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(p for p in _source_modules().values() if p not in names)
    assert not missing, f"source files missing from the wheel: {missing}"
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == set(PACKAGES.values()), top
    assert not any(n.split("/", 1)[0] in NOT_SHIPPED for n in names)
    for pkg in PACKAGES.values():
        assert f"{pkg}/py.typed" in names


@pytest.mark.slow  # ~12 s alone, ~20 s on a loaded machine; `slow` is not deselected: CI runs it
def test_installed_wheel_imports_every_subpackage(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    wanted = _subpackages()
    # frameworks that are not installed here: the plugin's presence is checked, not its import
    absent = [pkg for pkg, fw in (("dopt_cupy", "cupy"), ("dopt_torch", "torch"), ("dopt_jax", "jax"))
              if importlib.util.find_spec(fw) is None]
    script = (
        "import importlib, importlib.util, sys\n"
        f"absent = {absent!r}\n"
        f"for name in {wanted!r}:\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    assert spec is not None, name + ' is not installed'\n"
        f"    assert spec.origin.startswith({str(venv)!r}), (name, spec.origin)\n"
        "    if name.split('.')[0] not in absent:\n"
        "        importlib.import_module(name)\n"
        "import dopt_conformance, dopt_core\n"
        "assert len(dopt_conformance.CASES) > 50\n"
        "print('imported', len(" + repr(wanted) + "))\n"
    )
    # this interpreter's site directories (the dependencies), never the source tree
    site_dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site_dirs)}
    env.pop("PYTHONHOME", None)
    out = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"imported {len(wanted)}"
    assert {"dopt_core.solvers", "dopt_core.relax", "dopt_core._lib", "dopt_conformance"} <= set(wanted)
