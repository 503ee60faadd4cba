"""The ``dopt`` command and the runnable examples in docstrings."""

from __future__ import annotations

import doctest
import importlib

import pytest

from dopt_core.cli import main


def test_info(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "dopt 0." in out and "numpy" in out and "backends:" in out


def test_conformance_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--backend", "numpy", "--backend", "array_api_strict", "--case", "sort"]) == 0
    out = capsys.readouterr().out
    assert "sort" in out and "0 failed" in out and "array_api_strict" in out


@pytest.mark.parametrize("module", ["dopt_core.solvers._basic", "dopt_core.op"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(("option", "name"), [("--case", "no_such_case"),
                                              ("--backend", "no_such_backend")])
def test_conformance_command_unknown_name(option: str, name: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown --case used to end in a KeyError traceback, an unknown --backend in a
    FAIL row: both are usage errors naming the option, the value and the known names."""
    with pytest.raises(SystemExit) as exc:
        main(["conformance", option, name])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert option in err and name in err
    assert ("sort" if option == "--case" else "numpy") in err  # the known names


@pytest.mark.parametrize(("args", "words"), [
    (["--sigma", "-1"], "sigma must be"),
    (["--sigma", "1", "--noise", "bogus"], "noise must be"),
    (["--sigma", "1", "--num-samples", "0"], "num_samples"),
])
def test_gradcheck_command_bad_layer_option(args: list[str], words: str) -> None:
    """A bad --sigma/--noise/--num-samples ended in a traceback after the solver check
    had run; it is now a one-line error from the command, before any check."""
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "dopt_core.solvers:argmax", *args])
    assert str(exc.value.code).startswith("dopt gradcheck: ") and words in str(exc.value.code)
