"""The suite's pytest plugin: options for ``pytest -p dopt_conformance.pytest_plugin
--pyargs dopt_conformance``.

``--dopt-env MODULE:FACTORY`` (repeatable)
    Import a third-party backend environment (a :class:`dopt_conformance.Env`
    subclass or a factory returning one; its module registers the
    :class:`dopt_core.Backend` adapter) and run the suite against it. With this option
    alone, only the given backends run.
``--dopt-backend NAME`` (repeatable)
    Restrict the run to these backends (built-in or registered); by default every
    built-in backend runs, missing ones as skips with their reason.
``--dopt-case NAME`` (repeatable)
    Restrict the run to these cases of :data:`dopt_conformance.CASES`.

Without the plugin, ``pytest --pyargs dopt_conformance`` runs every built-in backend.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pytest_addoption", "selected_backends", "selected_cases"]


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("dopt_conformance", "dopt conformance suite")
    group.addoption("--dopt-env", action="append", default=[], metavar="MODULE:FACTORY",
                    help="add a backend environment of your own (repeatable)")
    group.addoption("--dopt-backend", action="append", default=[], metavar="NAME",
                    help="restrict to these backends (repeatable)")
    group.addoption("--dopt-case", action="append", default=[], metavar="NAME",
                    help="restrict to these conformance cases (repeatable)")


def selected_backends(config: Any) -> list[str]:
    """The backends chosen by the options (see the module docstring)."""
    import dopt_conformance as conformance  # lazily: the plugin loads before collection

    extra = [conformance.load_env(t) for t in config.getoption("dopt_env", default=None) or []]
    names = list(config.getoption("dopt_backend", default=None) or [])
    unknown = [n for n in names if n not in conformance.backend_names()]
    if unknown:
        raise ValueError(f"unknown conformance backend(s) {unknown}; known: "
                         f"{', '.join(conformance.backend_names())}")
    if not names:
        names = [] if extra else list(conformance.BACKEND_NAMES)
    return list(dict.fromkeys(names + extra))


def selected_cases(config: Any) -> list[str]:
    """The cases chosen by ``--dopt-case`` (default: every registered case)."""
    import dopt_conformance as conformance

    names = list(config.getoption("dopt_case", default=None) or [])
    unknown = [n for n in names if n not in conformance.CASES]
    if unknown:
        raise ValueError(f"unknown conformance case(s) {unknown}; see dopt_conformance.CASES")
    return names or list(conformance.CASES)
