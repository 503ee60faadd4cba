"""Imports point down: the layering of dopt_core and its plugins, read from the source.

Every module is parsed with :mod:`ast` (nothing is imported), so the rules hold for
code paths no test runs, ``if TYPE_CHECKING:`` blocks included:

* ``dopt_core._lib`` imports nothing from ``dopt_core`` outside ``_lib``;
* the module import graph of ``dopt_core`` has no cycle (so ``backend`` never imports
  ``op``, which imports it);
* no module imports another module's private (underscore) names, nor reads them as
  attributes of an imported module;
* no function body re-imports a ``dopt_core`` module; other function-local imports
  are lazy on purpose and say why in a ``# lazy:`` comment, except SciPy's (the host
  kernels import it when they first run, so that ``import dopt_core`` never loads it).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: importable name -> source directory (the conformance suite installs as dopt_conformance)
PACKAGES = {
    "dopt_core": ROOT / "dopt_core",
    "dopt_torch": ROOT / "dopt_torch",
    "dopt_jax": ROOT / "dopt_jax",
    "dopt_cupy": ROOT / "dopt_cupy",
    "dopt_conformance": ROOT / "conformance",
}


def _modules() -> dict[str, Path]:
    """Every module of our packages: dotted name -> file."""
    out = {}
    for pkg, directory in PACKAGES.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


@functools.cache
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"))


def _resolve(node: ast.Import | ast.ImportFrom, module: str) -> Iterator[tuple[str, str | None]]:
    """``(target module, imported name or None)`` for each name of one import statement.

    Relative imports are resolved; ``from pkg import sub`` with ``sub`` a submodule
    yields the target ``pkg.sub`` and no name.
    """
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
        return
    if node.level:
        here = module if _is_package(module) else module.rpartition(".")[0]
        base = here.split(".")
        target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        yield (sub, None) if sub in MODULES else (target, alias.name)


def _imports(module: str) -> Iterator[tuple[ast.stmt, str, str | None]]:
    """``(node, target module, imported name or None)`` for every import in ``module``."""
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target, name in _resolve(node, module):
                yield node, target, name


def _ours(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_the_scan_sees_the_modules() -> None:
    """The parser finds the modules and their imports (the rules below are not vacuous)."""
    assert {"dopt_core.op", "dopt_core.backend", "dopt_core._lib._checks"} <= set(MODULES)
    targets = {t for _, t, _ in _imports("dopt_core.op")}
    assert {"dopt_core.backend", "dopt_core._lib._checks"} <= targets
    assert ("dopt_core._lib._registry", "backend_for") in {
        (t, n) for _, t, n in _imports("dopt_core._lib._checks")
    }


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("dopt_core._lib")))
def test_lib_imports_nothing_above_it(module: str) -> None:
    above = sorted(
        {t for _, t, _ in _imports(module) if t.startswith("dopt_core") and not t.startswith("dopt_core._lib")}
    )
    assert not above, f"{module} imports {above}: dopt_core._lib must import only itself and third parties"


def _graph() -> dict[str, set[str]]:
    return {
        m: {t for _, t, _ in _imports(m) if t in MODULES and t.startswith("dopt_core") and t != m}
        for m in MODULES
        if m.startswith("dopt_core")
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (found := visit(t)) is not None:
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)) is not None:
            return found
    return None


def test_cycle_finder() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_core_imports_form_no_cycle() -> None:
    graph = _graph()
    assert "dopt_core.op" not in graph["dopt_core.backend"]  # typed against _lib._typing.OpLike
    assert "dopt_core.backend" in graph["dopt_core.op"]
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_of_another_module(module: str) -> None:
    bad = [
        f"line {node.lineno}: {name} from {target}"
        for node, target, name in _imports(module)
        if _ours(target) and name is not None and _private(name) and target != module
    ]
    # attributes read off an imported module of ours: `mod._name`
    tree = _tree(module)
    aliases: dict[str, str] = {}  # local name -> the module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _ours(a.name):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            for a, (target, name) in zip(node.names, _resolve(node, module), strict=True):
                if name is None and _ours(target):
                    aliases[a.asname or a.name] = target
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
            and f"{aliases[node.value.id]}.{node.attr}" not in MODULES
        ):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, f"{module} uses private names of other modules: {bad}"


def _function_local_imports(module: str) -> list[ast.Import | ast.ImportFrom]:
    found: dict[int, ast.Import | ast.ImportFrom] = {}
    for fn in ast.walk(_tree(module)):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    found.setdefault(id(node), node)
    return sorted(found.values(), key=lambda n: n.lineno)


def test_local_import_finder() -> None:
    """The finder sees the lazy imports the core has (SciPy in the host kernels)."""
    nodes = _function_local_imports("dopt_core.solvers._graphs")
    assert any(t.startswith("scipy") for n in nodes for t, _ in _resolve(n, "dopt_core.solvers._graphs"))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("dopt_core")))
def test_function_local_imports_are_lazy_on_purpose(module: str) -> None:
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    bad = []
    for node in _function_local_imports(module):
        targets = [t for t, _ in _resolve(node, module)]
        text = f"line {node.lineno}: {ast.unparse(node)}"
        if any(t.startswith("dopt_core") for t in targets):
            bad.append(f"{text} (a dopt_core module: import it at the top)")
        elif not all(t.startswith("scipy") for t in targets) and "# lazy:" not in lines[node.lineno - 1]:
            bad.append(f"{text} (say why it is lazy in a '# lazy: <why>' comment)")
    assert not bad, f"{module} imports inside functions: {bad}"
