"""The subset-sampling examples (L2X, stochastic kNN, parametric t-SNE) learn in their
quick settings: numbers that an untrained or random model would not reach."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    """Small models: one intra-op thread is faster than two on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _load(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_l2x_finds_the_relevant_features() -> None:
    l2x = _load("l2x")
    r = l2x.train("xor", "relaxed_subset", n_train=2000, n_test=500, epochs=5)
    # a random ranking of 10 features gives a median rank of ~5.5; the ideal is 1.5
    assert r["median_rank"] <= 2.5, r
    assert r["post_hoc_accuracy"] > 0.8, r  # chance: 0.5


def test_l2x_metric_on_known_rankings() -> None:
    l2x = _load("l2x")
    rel = np.zeros((2, 10), dtype=bool)
    rel[:, :2] = True
    perfect = -np.arange(10.0)[None].repeat(2, 0)
    assert l2x.median_rank(perfect, rel) == 1.5
    assert l2x.median_rank(-perfect, rel) == 9.5


def test_knn_embedding_improves_the_neighbours() -> None:
    knn = _load("knn")
    r = knn.train("relaxed_subset", steps=20)
    assert r["accuracy"] > 0.8, r  # 10 classes: chance is 0.1
    assert r["purity_after"] > r["purity_before"] + 0.005, r


def test_tsne_embedding_becomes_trustworthy() -> None:
    from sklearn.datasets import load_digits
    from sklearn.manifold import trustworthiness

    tsne = _load("tsne")
    x, _ = load_digits(return_X_y=True)
    x = (x[:300] / 16.0).astype(np.float32)
    before, after = tsne.fit(x, steps=40)
    t0, t1 = trustworthiness(x, before, n_neighbors=10), trustworthiness(x, after, n_neighbors=10)
    assert t1 > t0 + 0.1 and t1 > 0.8, (t0, t1)
