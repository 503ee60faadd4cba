"""The README's promises: CI runs its test command, and its code examples run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", README, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    commands = _bash_blocks()
    assert len(commands) == 2, "the Quickstart has exactly two commands"
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith(("#", "set ", "cd "))]
    assert ci_lines == [commands[1]]
    assert "dopt conformance" in commands[0] and "pytest" in commands[1]


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
