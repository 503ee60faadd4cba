"""Differentiable k-nearest-neighbours on scikit-learn's bundled 8×8 digits.

The stochastic kNN of Grover et al. (ICLR 2019) and Xie & Ermon (IJCAI 2019): an
embedding network φ maps images to R^d; for a batch of queries and a random set of
``N`` labelled candidates, the scores ``s_j = -‖φ(q) - φ(x_j)‖²`` choose a relaxed
set of ``k`` neighbours, ``w = relaxed_subset(s, k, tau)`` (rows sum to k), and the
loss rewards neighbours with the query's label: ``-Σ_j w_j 1[y_j = y_q] / k``. The
same model is also trained with NeuralSort (the first ``k`` rows of the relaxed
descending permutation matrix summed, ``neural_sort(s)[:k].sum(0)``), the relaxation
the paper compares with. Test accuracy: a plain (hard) k-NN vote in the learned
embedding over the whole training set, against a k-NN on the raw pixels.

    python examples/knn.py [--quick] [--steps 3000] [--k 9]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

import dopt_core as dc


def load(seed: int = 0) -> tuple[np.ndarray, ...]:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return tuple(train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y))


def _net(d: int = 32) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, d)
    )


def neighbour_weights(s: torch.Tensor, k: int, tau: float, method: str, gen: torch.Generator) -> torch.Tensor:
    """Relaxed k-hot choice of neighbours from the scores ``s`` (…, N)."""
    if method == "relaxed_subset":
        return dc.relax.relaxed_subset(s, k, tau=tau, rng=gen)
    if method == "neural_sort":
        return dc.relax.neural_sort(s, tau=tau)[..., :k, :].sum(-2)
    raise ValueError(f"unknown method {method!r}")


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int) -> float:
    clf = KNeighborsClassifier(n_neighbors=k).fit(train_x, train_y)
    return float(clf.score(test_x, test_y))


def purity(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int) -> float:
    """Mean fraction of each test point's k nearest training points sharing its label."""
    clf = KNeighborsClassifier(n_neighbors=k).fit(train_x, train_y)
    idx = clf.kneighbors(test_x, return_distance=False)
    return float(np.mean(train_y[idx] == test_y[:, None]))


def train(
    method: str,
    *,
    steps: int = 1000,
    k: int = 9,
    tau: float = 1.0,
    queries: int = 64,
    candidates: int = 100,
    seed: int = 0,
) -> dict[str, float]:
    """Test accuracy of the hard k-NN in the embedding trained with ``method``, and the
    neighbour purity (:func:`purity`) of the embedding before and after training."""
    xtr, xte, ytr, yte = load(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    X, Y = torch.from_numpy(xtr), torch.from_numpy(ytr)

    def embed() -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            return net(X).numpy(), net(torch.from_numpy(xte)).numpy()

    before = purity(*embed()[:1], ytr, embed()[1], yte, k)
    for _ in range(steps):
        idx = torch.randperm(len(Y), generator=gen)[: queries + candidates]
        q, c = idx[:queries], idx[queries:]
        zq, zc = net(X[q]), net(X[c])
        s = -torch.cdist(zq, zc) ** 2
        w = neighbour_weights(s, k, tau, method, gen)
        same = (Y[q][:, None] == Y[c][None, :]).float()
        loss = -(w * same).sum(-1).mean() / k
        opt.zero_grad()
        loss.backward()
        opt.step()
    etr, ete = embed()
    return {
        "accuracy": knn_accuracy(etr, ytr, ete, yte, k),
        "purity_before": before,
        "purity_after": purity(etr, ytr, ete, yte, k),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--k", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = 30 if args.quick else args.steps
    xtr, xte, ytr, yte = load()
    print(f"raw-pixel {args.k}-NN test accuracy      {knn_accuracy(xtr, ytr, xte, yte, args.k):.4f}")
    for method in ("relaxed_subset", "neural_sort"):
        t0 = time.perf_counter()
        r = train(method, steps=steps, k=args.k)
        print(f"learned {args.k}-NN ({method:14s}) {r['accuracy']:.4f}   neighbour purity "
              f"{r['purity_before']:.3f} -> {r['purity_after']:.3f}   ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
