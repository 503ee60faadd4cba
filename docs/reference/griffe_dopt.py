"""A Griffe extension for dopt's API reference (loaded by mkdocs.yml).

Griffe reads the source statically, so two kinds of public names arrive without a
docstring and mkdocstrings would drop them:

* objects whose docstring is set at run time: ``OpFunction`` instances built by
  ``op_function(..., doc=...)`` (``newton_loss``) and functions whose ``__doc__`` is
  assigned after the ``def`` (``solvers.linear_program``, ``solvers.milp``);
* module constants documented by a ``#:`` comment above the assignment (the Sphinx
  convention), or not documented at all.

This extension gives them the run-time docstring, the ``#:`` comment, or (for a
constant with neither) a one-line note of its value, so that every name of every
public ``__all__`` is rendered; ``tests/test_docs_site.py`` checks that.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

import griffe


@functools.cache
def _source_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _comment_above(attr: griffe.Object) -> str | None:
    path = attr.filepath
    if not isinstance(path, Path) or not attr.lineno:
        return None
    lines = _source_lines(path)
    out: list[str] = []
    i = attr.lineno - 2  # the line above the assignment, 0-based
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        out.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(out) or None


def _runtime(obj: griffe.Object) -> Any:
    try:
        mod = importlib.import_module(obj.module.path)
    except ImportError:  # pragma: no cover - the docs build imports dopt_core
        return None
    return getattr(mod, obj.name, None) if obj.parent is obj.module else None


class DoptDocstrings(griffe.Extension):
    """Fill in the docstrings that static analysis cannot see."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg)

    def _walk(self, mod: griffe.Module) -> None:
        for member in list(mod.members.values()):
            if member.is_alias:
                continue
            if member.is_module:
                self._walk(member)
            elif (member.is_attribute or member.is_function) and member.docstring is None:
                text = self._docstring(member)
                if text:
                    member.docstring = griffe.Docstring(text, parent=member)

    def _docstring(self, obj: griffe.Object) -> str | None:
        if obj.is_attribute:
            comment = _comment_above(obj)
            if comment:
                return comment
        value = _runtime(obj)
        if value is None:
            return None
        doc = getattr(value, "__doc__", None)
        if callable(value) and doc and doc != type(value).__doc__:
            return doc
        if obj.is_attribute and obj.name.isupper() or obj.name == "__version__":
            text = repr(value)
            return f"Constant: ``{text if len(text) < 200 else text[:200] + ' ...'}``."
        return None
