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


def test_pyepo_methods_figure_labels_follow_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The figure's axis labels state the seeds and epochs actually run (were fixed at 3 and 20)."""
    plt = pytest.importorskip("matplotlib.pyplot")
    if str(ROOT / "examples") not in sys.path:
        sys.path.insert(0, str(ROOT / "examples"))
    path = ROOT / "examples" / "pyepo_methods.py"
    spec = importlib.util.spec_from_file_location("example_pyepo_plot", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    results = {"SPO+": ([0.1, 0.2], [1.0, 1.5]), "PFY": ([0.3, 0.1], [2.0, 2.5])}
    assert module.plot(results, tmp_path / "f.png", epochs=5)
    assert (tmp_path / "f.png").stat().st_size > 0
    labels = [ax.get_xlabel() for ax in figures[0].axes]
    assert "2 seeds" in labels[0] and "5 epochs" in labels[1], labels
