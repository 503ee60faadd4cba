"""The runnable examples in the solver docstrings (issue 3 modules)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = {
    "dopt_core.solvers._paths": 3,
    "dopt_core.solvers._graphs": 3,
    "dopt_core.solvers._knapsack": 1,
    "dopt_core.solvers._lp": 2,
    "dopt_core.solvers._oracle": 1,
}


@pytest.mark.parametrize("module", list(MODULES))
def test_docstring_examples(module: str) -> None:
    finder = doctest.DocTestFinder()
    tests = [t for t in finder.find(importlib.import_module(module)) if t.examples]
    assert len(tests) == MODULES[module], [t.name for t in tests]
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
