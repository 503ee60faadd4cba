"""A logic gate network on scikit-learn's breast-cancer data (Wisconsin diagnostic, 569 × 30).

    python examples/logic_tabular.py [--quick]

Not the paper's breast-cancer set (that one is UCI Ljubljana, 286 rows, categorical).
Split: ``train_test_split(test_size=0.25, stratify=y, random_state=0)`` (426 train,
143 test). Every feature becomes ``n_bits`` thermometer bits at its training-set
quantiles (:func:`dopt_core.logic.quantile_thresholds`), 30·n_bits input bits. The
baseline is scikit-learn's ``LogisticRegression`` on the standardised continuous
features (same split). The logic net is trained soft and tested discretely (bit-packed).
Seeds: split 0, wiring 0.., torch 0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import dopt_core as dc
import dopt_torch as dt
from logic_monk import accuracies, train_logic_net


def data(n_bits: int = 7) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_breast_cancer  # lazy: scikit-learn is an optional dependency
    from sklearn.model_selection import train_test_split

    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    t = dc.logic.quantile_thresholds(Xtr, n_bits)
    return Xtr, Xte, ytr, yte, dc.logic.thermometer(Xtr, t), dc.logic.thermometer(Xte, t)


def logistic_regression_accuracy(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression  # lazy: optional dependency
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(Xtr, ytr)
    return float(clf.score(Xte, yte))


def run(*, quick: bool = False, progress: bool = True) -> dict[str, float]:
    n_bits = 7
    Xtr, Xte, ytr, yte, Btr, Bte = data(n_bits)
    lr_acc = logistic_regression_accuracy(Xtr, ytr, Xte, yte)
    width, depth, tau = (120, 2, 4.0) if quick else (512, 4, 16.0)
    mods: list[torch.nn.Module] = []
    d = Btr.shape[1]
    for i in range(depth):
        mods.append(dt.nn.LogicLayer(d, width, connections="unique" if i == 0 else "random", seed=i))
        d = width
    net = torch.nn.Sequential(*mods, dt.nn.GroupSum(2, tau=tau))
    t = time.perf_counter()
    train_logic_net(net, Btr, ytr, steps=30 if quick else 2000, lr=0.05 if quick else 0.01, batch=None if quick else 128,
                    log=print if progress and not quick else None)
    res = accuracies(net, Bte, yte, (Btr.shape[1],))
    out = {"logistic_regression": lr_acc, "soft": res["soft"], "discrete": res["discrete"], "gates": res["gates"],
           "seconds": time.perf_counter() - t}
    if progress:
        print(f"breast cancer ({Btr.shape[1]} input bits): logistic regression {lr_acc:.3f}; logic net "
              f"soft {out['soft']:.3f}, discrete {out['discrete']:.3f} ({out['gates']} gates, {out['seconds']:.0f} s)")
    return out


def main() -> None:
    torch.set_num_threads(1)  # one core (the throughput is reported per core; small ops do not scale)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small net, few steps (the test's setting)")
    run(quick=ap.parse_args().quick)


if __name__ == "__main__":
    main()
