"""End-to-end: the digits-sorting example learns from ranking supervision alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
sort_digits = importlib.import_module("sort_digits")


def test_accuracy_metric() -> None:
    values = np.array([[10, 30, 20], [5, 5, 1]])
    assert sort_digits.accuracies(np.array([[0.0, 2.0, 1.0], [0.3, 0.7, 0.1]]), values) == (
        1.0,
        1.0,
    )
    em, ew = sort_digits.accuracies(np.array([[0.0, 1.0, 2.0], [0.3, 0.7, 0.1]]), values)
    assert em == 0.5 and ew == pytest.approx(4 / 6)


@pytest.mark.slow
def test_learns_order_from_ranks() -> None:
    """Probabilistic (fixed seeds): 150 steps lift accuracy well above chance (n = 4: 1/24, 1/4)."""
    em, ew = sort_digits.train(steps=150, n=4, batch=50, seed=0)
    assert em > 0.2 and ew > 0.5
