"""The sdist and the wheel ship every package of the source tree, and nothing else.

Builds the sdist from a copy of the worktree (offline, through setuptools' PEP 517
hook ``build_meta.build_sdist``; a copy, so that a stale ``build/`` directory cannot
hide a missing file), then the wheel from the unpacked sdist (as pip does from PyPI:
``--no-build-isolation`` with the setuptools and wheel of the test extra), installs the
wheel with ``--no-deps`` into a fresh venv, imports every subpackage found in the
source tree from there and runs ``dopt demo --quick`` with the venv's ``dopt`` script,
the working directory outside the source tree (numpy, scipy, torch, jax come from
this interpreter's site-packages through ``PYTHONPATH``). The version is written once,
as ``dopt_core.__version__``: the sdist, the wheel and the installed plugins report it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

import dopt_core

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
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sdist")
    src = tmp / "src"
    ignore = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis")
    shutil.copytree(ROOT, src, ignore=ignore)
    build = f"from setuptools import build_meta; build_meta.build_sdist({str(tmp / 'dist')!r})"
    subprocess.run([sys.executable, "-c", build], cwd=src, check=True, capture_output=True,
                   text=True, timeout=300)
    (archive,) = (tmp / "dist").glob("dopt-*.tar.gz")
    return archive


@pytest.fixture(scope="module")
def wheel(sdist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the unpacked sdist."""
    tmp = tmp_path_factory.mktemp("wheel")
    with tarfile.open(sdist) as tar:
        # the "data" filter (Python >= 3.11.4) refuses links and paths out of the target
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp / "unpacked", **safe)  # noqa: S202 - our own freshly built archive
    (src,) = (tmp / "unpacked").iterdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp / "dist"), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (whl,) = (tmp / "dist").glob("dopt-*.whl")
    return whl


def test_version_is_written_once() -> None:
    """pyproject.toml reads the version from dopt_core.__version__ (no second copy)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dopt_core.__version__"}
    pep440 = r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?"
    assert re.fullmatch(pep440, dopt_core.__version__)
    init = (ROOT / "dopt_core" / "__init__.py").read_text(encoding="utf-8")
    assert init.count(dopt_core.__version__) == 1
    for plugin in ("dopt_torch", "dopt_jax", "dopt_cupy"):  # re-exported, never written again
        text = (ROOT / plugin / "__init__.py").read_text(encoding="utf-8")
        assert dopt_core.__version__ not in text, plugin


def test_sdist_holds_every_source_file_and_reports_the_version(sdist: Path) -> None:
    top = f"dopt-{dopt_core.__version__}"
    assert sdist.name == f"{top}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = set(tar.getnames())
        pkg_info = tar.extractfile(f"{top}/PKG-INFO").read().decode()  # type: ignore[union-attr]
    assert f"\nVersion: {dopt_core.__version__}\n" in pkg_info
    sources = [f"{top}/{src}/{path.split('/', 1)[1]}"
               for src, dst in PACKAGES.items()
               for path in _source_modules().values() if path.split("/", 1)[0] == dst]
    missing = sorted(p for p in sources if p not in names)
    assert not missing, f"source files missing from the sdist: {missing}"
    for name in ("pyproject.toml", "setup.py", "README.md", "CHANGELOG.md"):
        assert f"{top}/{name}" in names
    dirs = {n.split("/")[1] for n in names if n.count("/") >= 2}
    assert dirs == {*PACKAGES, "dopt.egg-info"}, dirs  # no tests, examples, benchmarks, docs


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
    assert wheel.name == f"dopt-{dopt_core.__version__}-py3-none-any.whl"
    info = f"dopt-{dopt_core.__version__}.dist-info"
    metadata = zipfile.ZipFile(wheel).read(f"{info}/METADATA").decode()
    assert f"\nVersion: {dopt_core.__version__}\n" in metadata


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding the wheel: ``(its bin directory, the environment to run in)``."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(bindir / "python"), "install", "--no-deps",
         "--no-index", "-q", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    # this interpreter's site directories (the dependencies), never the source tree
    site_dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site_dirs)}
    env.pop("PYTHONHOME", None)
    return bindir, env


@pytest.mark.slow  # ~12 s alone, ~20 s on a loaded machine; `slow` is not deselected: CI runs it
def test_installed_wheel_imports_every_subpackage(installed: tuple[Path, dict[str, str]],
                                                  tmp_path: Path) -> None:
    bindir, env = installed
    venv = bindir.parent
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
        "        mod = importlib.import_module(name)\n"
        "        if '.' not in name and name != 'dopt_conformance':\n"
        f"            assert mod.__version__ == {dopt_core.__version__!r}, \\\n"
        "                (name, mod.__version__)\n"
        "import dopt_conformance, dopt_core\n"
        "assert len(dopt_conformance.CASES) > 50\n"
        "print('imported', len(" + repr(wanted) + "))\n"
    )
    out = subprocess.run([str(bindir / "python"), "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"imported {len(wanted)}"
    assert {"dopt_core.solvers", "dopt_core.relax", "dopt_core._lib", "dopt_conformance"} <= set(wanted)


@pytest.mark.slow  # ~12 s CPU (torch and JAX imports, JAX compilations); ~40 s on a loaded machine
def test_installed_wheel_runs_the_demo(installed: tuple[Path, dict[str, str]],
                                       tmp_path: Path) -> None:
    """``dopt demo --quick`` from the venv's console script, outside the source tree:
    exit 0, and the held-out regret of every framework it trained falls."""
    bindir, env = installed
    out = subprocess.run([str(bindir / "dopt"), "demo", "--quick"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"dopt {dopt_core.__version__} demo")
    trained = re.findall(r"^(\w+):$", out.stdout, flags=re.M)
    installed_fw = [fw for fw in ("torch", "jax") if importlib.util.find_spec(fw) is not None]
    expected = ["numpy", *installed_fw]
    assert trained == expected, out.stdout
    for framework in trained:
        block = out.stdout.split(f"\n{framework}:\n", 1)[1].split("\n\n", 1)[0]
        curve = [float(r) for r in re.findall(r"normalized regret ([0-9.]+)", block)]
        assert len(curve) == 4 and curve[-1] < 0.5 * curve[0], (framework, curve)
    smoke = r"on " + ", ".join(trained) + r": \d+ passed, 0 failed"
    assert re.search(smoke, out.stdout), out.stdout
