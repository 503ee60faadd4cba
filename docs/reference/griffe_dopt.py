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

The docstrings are written for Sphinx (reST roles inside NumPy-style sections); the
extension also rewrites the roles that Markdown would show verbatim: ``:math:`x```
becomes ``$x$`` and a ``.. math::`` block becomes ``$$ ... $$`` (rendered by
MathJax through ``pymdownx.arithmatex``), and ``:func:`~a.b```, ``:class:``,
``:mod:``, ``:meth:``, ``:data:``, ``:attr:``, ``:obj:`` become code spans.
"""

from __future__ import annotations

import functools
import importlib
import re
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
    if obj.package.name != "dopt_core":  # never import a framework for the docs
        return None
    try:
        mod = importlib.import_module(obj.module.path)
    except ImportError:  # pragma: no cover - the docs build imports dopt_core
        return None
    return getattr(mod, obj.name, None) if obj.parent is obj.module else None


_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc):`~?([^`]+)`")
_MATH = re.compile(r":math:`([^`]+)`")


def _role(m: re.Match[str]) -> str:
    target = m.group(1)
    if "`~" in m.group(0):  # :func:`~a.b.c` shows the last name only
        target = target.rsplit(".", 1)[-1]
    return f"``{target}``"


def markdown_from_rest(text: str) -> str:
    """The reST roles and ``.. math::`` blocks of a docstring, in Markdown."""
    text = _MATH.sub(lambda m: f"${m.group(1).strip()}$", text)
    text = _ROLE.sub(_role, text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(".. math::"):
            indent = line[: len(line) - len(stripped)]
            body = [stripped[len(".. math::") :].strip()]
            i += 1
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
            ):
                body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            math = "\n".join(b for b in body if b)
            out += ["", f"{indent}$$", *(indent + b for b in math.splitlines()), f"{indent}$$", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


class DoptDocstrings(griffe.Extension):
    """Fill in the docstrings that static analysis cannot see."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg)

    def _walk(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_from_rest(obj.docstring.value)
        for member in list(obj.members.values()):
            if member.is_alias:
                continue
            if (member.is_attribute or member.is_function) and member.docstring is None:
                text = self._docstring(member)
                if text:
                    member.docstring = griffe.Docstring(text, parent=member)
            if member.is_module or member.is_class or member.is_function or member.is_attribute:
                self._walk(member)

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
