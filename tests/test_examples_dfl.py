"""examples/pyepo_methods.py runs every method in its quick mode (one batch each)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyepo_methods_quick_mode() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    if str(ROOT / "examples") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples"))
    spec = importlib.util.spec_from_file_location("example_pyepo_methods", ROOT / "examples" / "pyepo_methods.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    results = module.main(["--quick"])
    assert set(results) == set(module.METHODS)
    for name, (regrets, seconds) in results.items():
        assert len(regrets) == 1 and math.isfinite(regrets[0]) and 0.0 <= regrets[0] < 2.0, name
        assert seconds[0] > 0, name
