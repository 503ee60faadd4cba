"""Learning to read numbers from ranking supervision only (the sorting-network benchmark).

The four-digit-number task of Petersen et al. (ICML 2021, after NeuralSort), built from
scikit-learn's bundled 8×8 digits (no download): each "number" is four digit images
side by side (an 8×32 image); a set of ``n`` numbers is shown to a small MLP, which
outputs one scalar per number. The only supervision is the *order* of the set: the
scores go through a differentiable sorting network (:func:`dopt_core.relax.sorting_network`)
and the relaxed permutation matrix is trained with :func:`dopt_core.relax.permutation_loss`
against the true ranks. Reported on held-out digit images: the exact-match accuracy
(the whole set ordered correctly) and the element-wise accuracy (numbers in their
correct slot) of the recovered orders.

    python examples/sort_digits.py [--steps 3000] [--n 5] [--network odd_even]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits

import dopt_core as dc


def make_sets(
    images: np.ndarray,
    labels: np.ndarray,
    num_sets: int,
    n: int,
    rng: np.random.Generator,
    digits: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """``(num_sets, n, 8·8·digits)`` images of ``digits``-digit numbers and their values."""
    idx = rng.integers(0, len(labels), size=(num_sets, n, digits))
    x = (
        images[idx]
        .reshape(num_sets, n, digits, 8, 8)
        .transpose(0, 1, 3, 2, 4)
        .reshape(num_sets, n, -1)
    )
    values = (labels[idx] * 10 ** np.arange(digits - 1, -1, -1)).sum(-1)
    return x.astype(np.float32), values


def accuracies(scores: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Exact-match and element-wise accuracy of the orders given by ``scores``.

    Equal values may come in either order: the true order breaks their ties by score.
    """
    pred = np.argsort(np.argsort(scores, -1, kind="stable"), -1)
    true = np.argsort(np.lexsort((scores, values), axis=-1), -1)
    ok = pred == true
    return float(ok.all(-1).mean()), float(ok.mean())


def train(
    steps: int = 3000,
    n: int = 5,
    batch: int = 100,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    lr: float = 10**-3.5 * 3,
    seed: int = 0,
    log_every: int = 0,
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    perm = rng.permutation(len(images))
    train_idx, test_idx = perm[:1400], perm[1400:]
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for step in range(1, steps + 1):
        x, values = make_sets(images[train_idx], digits.target[train_idx], batch, n, rng)
        scores = model(torch.from_numpy(x)).squeeze(-1)  # (batch, n)
        _, P = dc.relax.sorting_network(
            scores, network=network, steepness=steepness, sigmoid=sigmoid
        )
        ranks = torch.from_numpy(dc.solvers.rank(values.astype(np.float64)))
        loss = dc.relax.permutation_loss(P, ranks.to(P.dtype))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if log_every and step % log_every == 0:
            print(f"step {step:5d}  loss {float(loss.detach()):.4f}")
    x, values = make_sets(
        images[test_idx], digits.target[test_idx], 1000, n, np.random.default_rng(seed + 1)
    )
    with torch.no_grad():
        scores = model(torch.from_numpy(x)).squeeze(-1).numpy()
    return accuracies(scores, values)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--network", default="odd_even", choices=("odd_even", "bitonic"))
    ap.add_argument("--sigmoid", default="cauchy")
    ap.add_argument("--steepness", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    em, ew = train(
        args.steps,
        args.n,
        network=args.network,
        sigmoid=args.sigmoid,
        steepness=args.steepness,
        seed=args.seed,
        log_every=max(1, args.steps // 10),
    )
    print(f"held-out digits, n = {args.n}: exact match {em:.3f}, element-wise {ew:.3f}")


if __name__ == "__main__":
    main()
