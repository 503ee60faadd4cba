"""The relaxed-algorithm examples in their short modes: relaxed Levenshtein equals the exact
edit distance and the traced-back shortest path equals Dijkstra's as beta grows; the
silhouette fits run for two distribution x T-conorm pairs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"example_relax_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_levenshtein_and_traceback_reach_the_exact_answers() -> None:
    ex = _load("relaxed_algorithms")
    rng = np.random.default_rng(3)
    words = rng.integers(0, 3, size=(6, 2, 5))
    exact = np.array([ex.exact_levenshtein(list(w[0]), list(w[1])) for w in words])
    assert exact.min() < exact.max()  # not a degenerate sample
    got = ex.relaxed_levenshtein(words[:, 0].astype(float), words[:, 1].astype(float), 200.0)
    np.testing.assert_allclose(got, exact, atol=1e-9)
    soft = ex.relaxed_levenshtein(words[:, 0].astype(float), words[:, 1].astype(float), 1.0)
    assert np.abs(soft - exact).max() > 0.1  # a real relaxation at small beta
    for seed in range(2):
        cost = ex.random_grid(np.random.default_rng(seed))
        path = ex.exact_shortest_path(cost)
        for name, p in (("probabilistic", None), ("hamacher", 5.0), ("yager", 1.0)):
            d, mask = ex.relaxed_shortest_path(cost, 1e3, name, p)
            np.testing.assert_array_equal(mask > 0.5, path > 0.5)
        np.testing.assert_allclose(d, ex.exact_grid_distances(cost), atol=1e-2)


def test_relaxed_algorithms_quick_main(capsys: pytest.CaptureFixture[str]) -> None:
    res = _load("relaxed_algorithms").main(quick=True)
    assert res["path_cells_wrong"] == 0 and res["levenshtein_err"] < 1e-9
    assert "Levenshtein" in capsys.readouterr().out


def test_raster_fit_quick() -> None:
    pytest.importorskip("torch")
    ex = _load("raster_fit")
    res = ex.run(("uniform",), ("probabilistic",), n_per_bucket=1, n_poly=1, steps=40, progress=False)
    row = res[("uniform", "probabilistic")]
    assert set(row) == {"pose 15-35", "pose 35-55", "pose 55-75", "polygon"}
    assert row["pose 15-35"] == 1.0  # small initial errors are recovered
