"""The README's promises: CI runs its test command, and its code examples run.

Quickstart command 1 (install, then ``dopt demo``) shares its install steps with
command 2, which CI runs; its last step runs here, as written.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest

from dopt_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    commands = _bash_blocks()
    assert len(commands) == 2, "the Quickstart has exactly two commands"
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci_lines == [commands[1]]
    assert "pytest" in commands[1]


def _install_steps(command: str) -> tuple[list[str], set[str]]:
    """A Quickstart command's steps, the install's extras replaced by ``EXTRAS``."""
    steps = command.split(" && ")
    extras = set(re.search(r"-e '\.\[([\w,]+)\]'", steps[1]).group(1).split(","))  # type: ignore[union-attr]
    steps[1] = re.sub(r"-e '\.\[[\w,]+\]'", "-e '.[EXTRAS]'", steps[1])
    return steps, extras


def test_command_1_installs_as_command_2_then_runs_the_demo() -> None:
    first, second = _bash_blocks()
    steps1, extras1 = _install_steps(first)
    steps2, extras2 = _install_steps(second)
    assert steps1[:2] == steps2[:2]  # the venv and the editable install CI runs
    assert {"torch", "jax"} <= extras1 <= extras2
    assert steps1[2:] == [".venv/bin/dopt demo"]
    assert "`.venv/bin/dopt conformance`" in README  # the full suite, one command away


@pytest.mark.slow  # the full demo: ~15 s on an idle machine (one JAX compilation), ~40 s loaded
def test_command_1_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The last step of command 1, as written (in this process; the console script is
    exercised from an installed wheel in tests/test_packaging.py)."""
    last = _bash_blocks()[0].split(" && ")[-1]
    program, *argv = shlex.split(last)
    assert program == ".venv/bin/dopt"
    assert main(argv) == 0
    out = capsys.readouterr().out
    curves = {
        name: [float(r) for r in re.findall(r"normalized regret ([0-9.]+)", block)]
        for name, block in re.findall(r"^(\w+):\n(.*?)\n\n", out, flags=re.M | re.S)
    }
    assert "numpy" in curves, out
    for name, curve in curves.items():
        assert len(curve) == 9 and curve[-1] < 0.3 * curve[0], (name, curve)  # 8 epochs
    assert re.search(r": \d+ passed, 0 failed", out)


BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_examples_run(index: int) -> None:
    code = BLOCKS[index]
    for framework in ("torch", "jax", "cupy"):
        if re.search(rf"^import {framework}\b", code, flags=re.M) and importlib.util.find_spec(framework) is None:
            pytest.skip(f"{framework} not installed")
    if "import cupy" in code:
        pytest.skip("no CUDA device")
    exec(compile(code, f"README[{index}]", "exec"), {})
