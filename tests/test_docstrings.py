"""Every public function has a numpydoc docstring, and every docstring example runs.

Public functions: the functions and :class:`~dopt_core.op.OpFunction` objects in the
``__all__`` of :mod:`dopt_core`, of every module reachable from it, and the functions
the plugins define themselves (``dopt_torch.apply_op``, ``dopt_jax.host_call``...).
Each needs a one-line summary, a ``Parameters`` section naming every named parameter of
its signature, and an ``Examples`` section with a doctest. The doctests of every module
of the library run here (this is how CI runs them).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import types
from typing import Any

import pytest

import dopt_core as dc
from dopt_conformance.capabilities import public_modules
from dopt_core.op import OpFunction

PLUGINS = ("dopt_torch", "dopt_jax", "dopt_cupy")
FRAMEWORK = {"dopt_torch": "torch", "dopt_jax": "jax", "dopt_cupy": "cupy"}

#: Public functions whose docstring is being rewritten on another branch, with why.
#: ``test_pending_entries_still_fail`` fails once one passes: then delete its entry.
PENDING: dict[str, str] = {}


def _available(modname: str) -> bool:
    top = modname.split(".")[0]
    return top not in FRAMEWORK or importlib.util.find_spec(FRAMEWORK[top]) is not None


def _defined_in(obj: Any) -> str:
    f = obj.bind if isinstance(obj, OpFunction) else obj
    return f.__module__


def public_functions() -> dict[str, Any]:
    """Qualified public name -> function, each object once (its first public name)."""
    modules = list(public_modules())
    modules += [importlib.import_module(p) for p in PLUGINS if _available(p)]
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for mod in modules:
        plugin = mod.__name__.split(".")[0] in PLUGINS
        for n in getattr(mod, "__all__", ()):
            obj = getattr(mod, n)
            if not (inspect.isfunction(obj) or isinstance(obj, OpFunction)) or id(obj) in seen:
                continue
            if plugin and _defined_in(obj).startswith("dopt_core"):
                continue  # a re-export of the core's function: checked under its core name
            seen.add(id(obj))
            out[f"{mod.__name__}.{n}"] = obj
    return out


_HEADER = re.compile(r"^(\w[\w ]*)\n(-+)$", re.M)


def sections(doc: str) -> dict[str, str]:
    """numpydoc sections: title -> body (``""`` holds the text before the first title)."""
    out: dict[str, str] = {}
    pos, title = 0, ""
    for m in _HEADER.finditer(doc):
        if len(m.group(2)) != len(m.group(1)):
            continue
        out[title] = doc[pos : m.start()]
        title, pos = m.group(1), m.end()
    out[title] = doc[pos:]
    return out


def documented_parameters(body: str) -> set[str]:
    names: set[str] = set()
    for line in body.splitlines():
        if line and not line[0].isspace():
            head = line.split(" : ", 1)[0].rstrip(":").strip()
            names.update(n.strip().lstrip("*") for n in head.split(","))
    return names


def signature_parameters(obj: Any) -> list[str]:
    params = inspect.signature(obj).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def problems(obj: Any) -> list[str]:
    """What is missing from ``obj``'s docstring (empty when it is complete)."""
    doc = inspect.getdoc(obj)
    if not doc:
        return ["no docstring"]
    secs = sections(doc)
    out = []
    summary = secs.get("", "").strip().split("\n\n")[0]
    if not summary:
        out.append("no summary line")
    params = signature_parameters(obj)
    if params:
        if "Parameters" not in secs:
            out.append("no Parameters section")
        else:
            undocumented = [p for p in params if p not in documented_parameters(secs["Parameters"])]
            if undocumented:
                out.append(f"Parameters section misses {undocumented}")
    examples = secs.get("Examples", secs.get("Example"))
    if examples is None or ">>>" not in examples:
        out.append("no Examples section with a doctest")
    return out


FUNCTIONS = public_functions()


@pytest.mark.parametrize("name", [n for n in FUNCTIONS if n not in PENDING])
def test_public_function_docstring(name: str) -> None:
    assert not problems(FUNCTIONS[name]), f"{name}: {problems(FUNCTIONS[name])}"


@pytest.mark.parametrize("name", list(PENDING))
def test_pending_entries_still_fail(name: str) -> None:
    assert name in FUNCTIONS, f"{name} is no longer public: delete its PENDING entry"
    assert problems(FUNCTIONS[name]), f"{name}'s docstring is complete now: delete its PENDING entry"


def test_the_walk_reaches_factories_subpackages_and_plugins() -> None:
    assert {"dopt_core.perturbed", "dopt_core.relax.soft_max", "dopt_core.solvers.spanning_tree",
            "dopt_core.testing.gradcheck", "dopt_core.relax.cdfs.cdf"} <= set(FUNCTIONS)
    if _available("dopt_torch"):
        assert "dopt_torch.apply_op" in FUNCTIONS and "dopt_torch.perturbed" not in FUNCTIONS


def test_checker_reports_what_is_missing() -> None:
    def bare(theta: Any, *, k: int = 1) -> None:
        """Summary.

        Parameters
        ----------
        theta : array
            Scores.
        """

    assert problems(bare) == ["Parameters section misses ['k']", "no Examples section with a doctest"]
    assert problems(lambda: None) == ["no docstring"]
    assert documented_parameters("x, y : array\n    text\n*args\n    more\n") == {"x", "y", "args"}


# --- the doctests of every library module -------------------------------------------------
def _library_modules() -> list[str]:
    names = []
    for top in ("dopt_core", *PLUGINS):
        if not _available(top):
            continue
        pkg = importlib.import_module(top)
        names.append(top)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, prefix=top + ".")]
    return sorted(set(names))


MODULES = _library_modules()


@pytest.mark.parametrize("module", MODULES)
def test_module_doctests(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples of {module} failed"


def test_doctests_cover_every_module_defining_a_public_function() -> None:
    finder = doctest.DocTestFinder()
    defining = {_defined_in(f) for n, f in FUNCTIONS.items() if n not in PENDING}
    without = [m for m in sorted(defining)
               if not any(t.examples for t in finder.find(importlib.import_module(m)))]
    assert not without, without
    assert isinstance(dc.solvers, types.ModuleType) and set(defining) <= set(MODULES)
