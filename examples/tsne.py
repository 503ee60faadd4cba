"""Parametric t-SNE-style embedding of the 8×8 digits with a subset-based neighbour loss.

In the spirit of the parametric t-SNE experiment of Xie & Ermon (IJCAI 2019): a network
f maps each image to the plane; the similarity of two embedded points is the log of
t-SNE's Student-t kernel, ``s_ij = -log(1 + ‖f(x_i) - f(x_j)‖²)``. For an anchor ``i``
and a candidate set made of its ``m`` nearest neighbours in pixel space plus random
other points, :func:`dopt_core.relax.relaxed_subset` draws a relaxed set of ``m``
neighbours from the embedded similarities, and the loss rewards the ones that are
true neighbours, ``-Σ_j w_j 1[j ∈ N_m(i)] / m``: true neighbours must come out nearer
than the other candidates (attraction and repulsion in one ranking objective; this
objective is our own reading of the paper's, which trains on the neighbour
distribution of t-SNE). Reported: scikit-learn's ``trustworthiness`` (``n_neighbors``
= m) of the learned embedding, of the untrained network, of scikit-learn's ``TSNE``
and of PCA on the same data. The embedding is saved to
``docs/figures/tsne_subsets.png`` (needs matplotlib; skipped in quick mode).

    python examples/tsne.py [--quick] [--steps 1500]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness
from sklearn.neighbors import NearestNeighbors

import dopt_core as dc

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "tsne_subsets.png"


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 2),
    )


def fit(
    x: np.ndarray,
    *,
    steps: int = 1500,
    m: int = 10,
    random_candidates: int = 40,
    anchors: int = 128,
    tau: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(embedding before training, embedding after)``, each ``(len(x), 2)``."""
    n = len(x)
    nbrs = NearestNeighbors(n_neighbors=m + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    X = torch.from_numpy(x)
    nb = torch.from_numpy(nbrs)
    target = torch.cat([torch.ones(m), torch.zeros(random_candidates)])
    with torch.no_grad():
        before = net(X).numpy()
    for _ in range(steps):
        i = torch.randint(0, n, (anchors,), generator=gen)
        others = torch.randint(0, n, (anchors, random_candidates), generator=gen)
        cand = torch.cat([nb[i], others], dim=1)  # (anchors, m + random)
        z = net(X)  # embedding every point once is cheaper than the 50 candidates of each anchor
        zi, zc = z[i], z[cand]
        s = -torch.log1p(((zc - zi[:, None, :]) ** 2).sum(-1))
        w = dc.relax.relaxed_subset(s, m, tau=tau, rng=gen)
        loss = -(w * target).sum(-1).mean() / m
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = net(X).numpy()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    if args.quick:
        x, y = x[:400], y[:400]
    t0 = time.perf_counter()
    before, after = fit(x, steps=80 if args.quick else args.steps)
    t_fit = time.perf_counter() - t0
    rows = [("subset-loss parametric map", after, t_fit), ("untrained network", before, 0.0)]
    t0 = time.perf_counter()
    rows.append(("sklearn TSNE", TSNE(init="pca", random_state=0).fit_transform(x), time.perf_counter() - t0))
    rows.append(("PCA", PCA(2).fit_transform(x), 0.0))
    print(f"{'embedding':28s} trustworthiness(10)   s")
    for name, emb, sec in rows:
        print(f"{name:28s} {trustworthiness(x, emb, n_neighbors=10):.4f}  {sec:8.1f}")
    if not args.quick:
        try:
            import matplotlib  # lazy: optional, only for the figure

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # lazy: optional, only for the figure
        except ImportError:
            print("matplotlib not installed: no figure")
            return
        fig, ax = plt.subplots(figsize=(5, 5))
        sc = ax.scatter(after[:, 0], after[:, 1], c=y, cmap="tab10", s=4)
        ax.legend(*sc.legend_elements(), fontsize=6, loc="best", title="digit")
        ax.set_title("digits: relaxed-subset neighbour loss", fontsize=10)
        fig.tight_layout()
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(FIGURE, dpi=120)
        print(f"saved {FIGURE}")


if __name__ == "__main__":
    main()
