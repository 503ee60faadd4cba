"""The suite's pytest plugin, loaded by ``pytest --pyargs dopt_conformance``.

Options:

``--dopt-env MODULE:FACTORY`` (repeatable)
    Import a third-party backend environment (a :class:`dopt_conformance.Env`
    subclass or a factory returning one; the module registers its
    :class:`dopt_core.Backend` adapter) and run the suite against it. With this option
    alone, only the given backends run.
``--dopt-backend NAME`` (repeatable)
    Restrict the run to these backends (built-in or registered); by default every
    built-in backend runs, missing ones as skips with their reason.
"""

from __future__ import annotations

import pytest

import dopt_conformance as conformance


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dopt_conformance", "dopt conformance suite")
    group.addoption("--dopt-env", action="append", default=[], metavar="MODULE:FACTORY",
                    help="add a backend environment of your own (repeatable)")
    group.addoption("--dopt-backend", action="append", default=[], metavar="NAME",
                    help="restrict to these backends (repeatable)")


def selected_backends(config: pytest.Config) -> list[str]:
    """The backends chosen by the options (see the module docstring)."""
    extra = [conformance.load_env(t) for t in config.getoption("dopt_env")]
    names = list(config.getoption("dopt_backend"))
    if not names:
        names = [] if extra else list(conformance.BACKEND_NAMES)
    return list(dict.fromkeys(names + extra))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_backend" in metafunc.fixturenames:
        metafunc.parametrize("conformance_backend", selected_backends(metafunc.config))
