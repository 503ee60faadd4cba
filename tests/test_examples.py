"""The end-to-end examples train: regret falls well below the untrained model's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))  # the examples import each other, as when run as scripts


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("framework", ["numpy", "torch", "jax"])
def test_shortest_path_training_lowers_regret(framework: str) -> None:
    if framework != "numpy" and importlib.util.find_spec(framework) is None:
        pytest.skip(f"{framework} not installed")
    example = _load("shortest_path")
    results = example.run([framework], epochs=3, progress=False)
    before, after, _ = results[framework]
    assert before > 0.3  # the untrained linear model decides badly
    assert after < 0.4 * before, (before, after)


def test_every_method_learns() -> None:
    """Each training method of compare_methods.py lowers the test regret (2 epochs)."""
    compare = _load("compare_methods")
    problem = compare.make_problem()
    for method in compare.METHODS:
        curve, seconds = compare.train(problem, method, epochs=2, progress=False)
        assert curve[-1] < 0.5 * curve[0], (method, curve)
        assert seconds > 0
