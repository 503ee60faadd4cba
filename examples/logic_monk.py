"""Differentiable logic gate networks on the MONK problems (Petersen et al., NeurIPS 2022).

    python examples/logic_monk.py [--quick]

The three MONK problems (Thrun et al., 1991) are generated from their published rules
over all 432 combinations of six attributes, a1, a2, a4 ∈ {1,2,3}, a3, a6 ∈ {1,2},
a5 ∈ {1,2,3,4}, one-hot encoded into 17 bits:

* MONK-1: (a1 = a2) ∨ (a5 = 1);
* MONK-2: exactly two attributes take their first value;
* MONK-3: (a5 = 3 ∧ a4 = 1) ∨ (a5 ≠ 4 ∧ a2 ≠ 3), with 5 % of the training labels flipped.

As in the original benchmark the training sets are random subsets of 124, 169 and 122
instances (seed 0) and the test set is all 432 instances. The net is trained soft
(cross-entropy on GroupSum(2, τ = 5) scores, Adam, lr 0.05, 150 full-batch steps,
three layers of 64 gates, wiring 'unique') and evaluated discretely: the arg-max
gates, run bit-packed by :func:`dopt_core.logic.compile_logic_net`.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import numpy as np
import torch

import dopt_core as dc
import dopt_torch as dt

SIZES = (3, 3, 2, 3, 4, 2)
TRAIN_SIZES = {1: 124, 2: 169, 3: 122}


def monk(problem: int, *, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(X_train, y_train, X_test, y_test)``: 17-bit one-hot inputs (bool), 0/1 labels."""
    A = np.array(list(itertools.product(*[range(1, s + 1) for s in SIZES])))  # (432, 6)
    a1, a2, a3, a4, a5, a6 = A.T
    if problem == 1:
        y = (a1 == a2) | (a5 == 1)
    elif problem == 2:
        y = (A == 1).sum(axis=1) == 2
    else:
        y = ((a5 == 3) & (a4 == 1)) | ((a5 != 4) & (a2 != 3))
    X = dc.logic.one_hot_bits(A - 1, SIZES)
    rng = np.random.default_rng(seed)
    tr = rng.choice(len(A), TRAIN_SIZES[problem], replace=False)
    y_tr = y[tr].copy()
    if problem == 3:
        flip = rng.choice(len(tr), int(round(0.05 * len(tr))), replace=False)
        y_tr[flip] = ~y_tr[flip]
    return X[tr], y_tr.astype(np.int64), X, y.astype(np.int64)


def train_logic_net(net: torch.nn.Module, X: np.ndarray, y: np.ndarray, *, steps: int, lr: float = 0.01,
                    batch: int | None = None, seed: int = 0, log: Any = None) -> None:
    """Adam on the cross-entropy of the soft net's GroupSum scores (difflogic's recipe)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is faster, and the machine may be shared
    try:
        _train(net, X, y, steps=steps, lr=lr, batch=batch, seed=seed, log=log)
    finally:
        torch.set_num_threads(threads)


def _train(net: torch.nn.Module, X: np.ndarray, y: np.ndarray, *, steps: int, lr: float, batch: int | None,
           seed: int, log: Any) -> None:
    torch.manual_seed(seed)
    Xt, yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        if batch is not None and batch < len(Xt):
            idx = torch.randint(0, len(Xt), (batch,), generator=g)
            xb, yb = Xt[idx], yt[idx]
        else:
            xb, yb = Xt, yt
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        if log is not None and (step + 1) % max(steps // 5, 1) == 0:
            log(f"  step {step + 1}: loss {loss.item():.4f}")


def accuracies(net: torch.nn.Module, X: np.ndarray, y: np.ndarray, in_shape: tuple[int, ...]) -> dict[str, Any]:
    """Soft accuracy (training mode), discrete accuracy (eval mode) and the bit-packed
    net's accuracy, which must equal the discrete one."""
    Xt = torch.as_tensor(X, dtype=torch.float32).reshape(len(X), *in_shape)
    with torch.no_grad():
        soft = (net.train()(Xt).argmax(-1).numpy() == y).mean()
        hard_scores = net.eval()(Xt)
    layers, in_dim, k = dt.nn.logic_gate_layers(net, in_shape)
    compiled = dc.logic.compile_logic_net(layers, in_dim=in_dim, k=k)
    counts = compiled(X.reshape(len(X), -1))
    tau = [m for m in net.modules() if isinstance(m, dt.nn.GroupSum)][0].tau
    assert np.array_equal(counts, np.rint(hard_scores.numpy() * tau).astype(np.int64)), "bit-packed != hard net"
    # ties in the counts go to the first class, as argmax does on the hard scores
    discrete = (counts.argmax(-1) == y).mean()
    return {"soft": float(soft), "discrete": float(discrete), "gates": compiled.num_gates, "compiled": compiled}


def make_net(width: int, depth: int, tau: float, seed: int) -> torch.nn.Sequential:
    mods: list[torch.nn.Module] = []
    d = 17
    for i in range(depth):
        kind = "unique" if width <= d * (d - 1) // 2 else "random"
        mods.append(dt.nn.LogicLayer(d, width, connections=kind, seed=seed + i))
        d = width
    return torch.nn.Sequential(*mods, dt.nn.GroupSum(2, tau=tau))


def run(problems: tuple[int, ...] = (1, 2, 3), *, quick: bool = False, progress: bool = True) -> dict[int, dict]:
    out = {}
    for p in problems:
        Xtr, ytr, Xte, yte = monk(p)
        net = make_net(width=64, depth=3, tau=5.0, seed=10 * p)
        t = time.perf_counter()
        train_logic_net(net, Xtr, ytr, steps=80 if quick else 150, lr=0.05,
                        log=print if progress and not quick else None)
        res = accuracies(net, Xte, yte, (17,))
        res["train_discrete"] = accuracies(net, Xtr, ytr, (17,))["discrete"]
        res["seconds"] = time.perf_counter() - t
        out[p] = res
        if progress:
            print(f"MONK-{p}: test accuracy soft {res['soft']:.3f}, discrete {res['discrete']:.3f} "
                  f"(train discrete {res['train_discrete']:.3f}), {res['gates']} gates, {res['seconds']:.1f} s")
    return out


def main() -> None:
    torch.set_num_threads(1)  # one core (the throughput is reported per core; small ops do not scale)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small net, few steps (the test's setting)")
    args = ap.parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
