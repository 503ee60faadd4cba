"""Newton losses for ranking supervision (Petersen et al., NeurIPS 2024, arXiv:2410.19055).

The digits-ranking benchmark of ``examples/sort_digits.py`` (sets of ``n = 5`` four-digit
numbers composed from scikit-learn's bundled 8×8 digits, no download; supervision is only
the order of each set), with a small CNN that scores each number image, trained three ways
for each of three relaxations of the sort:

* **baseline** — Adam on the relaxed ranking loss ``ℓ(y) = permutation_loss(P(y), ranks)``
  of the scores ``y`` (one row of ``n`` scores per set);
* **Newton (Hessian)** — Adam on :func:`dopt_core.losses.newton_loss` with
  ``mode="hessian"``: a damped Newton step on ``ℓ`` in score space only,
  ``z* = y − (∇²ℓ + λI)⁻¹∇ℓ`` per set, and the loss ``½ Σ ‖sg(z*) − y‖²``;
* **Newton (Fisher)** — the same with the batch's empirical Fisher matrix
  ``F = mean_i ∇ℓ_i ∇ℓ_iᵀ`` in place of the Hessian.

Relaxations: NeuralSort (:func:`dopt_core.relax.neural_sort`, whose descending
``P[slot, item]`` is flipped and transposed into the ascending ``P[item, slot]`` that
:func:`dopt_core.relax.permutation_loss` expects) and the odd-even differentiable sorting
network (:func:`dopt_core.relax.sorting_network`) with logistic and with Cauchy
comparators. Metrics on sets built from held-out digit images: exact match (the whole set
in order) and element-wise accuracy (numbers in their correct slot), mean ± std over seeds.

λ is chosen as in the paper's spirit — a Tikhonov constant picked once per relaxation and
variant from a log grid on validation data, never on the test set: the default run first
trains one seed per λ (half the steps) on a validation split carved out of the training
digits — the grid ``LAMBDAS`` for the first relaxation, which is also the λ ablation, and
the coarser ``COARSE_LAMBDAS`` for the others (their Hessians have negative eigenvalues
of a few units, so λ < 1 leaves ``H + λI`` indefinite) — then trains the table's seeds
with the best λ (validation exact match).

    python examples/newton_ranking.py            # the full run (table, ablation, figure)
    python examples/newton_ranking.py --quick    # NeuralSort only, 1 seed, a few hundred steps
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

import dopt_core as dc

ROOT = Path(__file__).resolve().parents[1]


def _sort_digits():  # type: ignore[no-untyped-def]
    """The sibling example (its ``make_sets`` and ``accuracies``), loaded by path."""
    name = "sort_digits"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


make_sets = _sort_digits().make_sets
accuracies = _sort_digits().accuracies

RELAXATIONS = ("neural_sort", "logistic_dsn", "cauchy_dsn")
METHODS = ("baseline", "hessian", "fisher")
LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0)  # the ablation grid (first relaxation)
COARSE_LAMBDAS = (1.0, 10.0, 100.0)  # the selection grid of the other relaxations
LABELS = {
    "neural_sort": "NeuralSort",
    "logistic_dsn": "logistic DSN",
    "cauchy_dsn": "Cauchy DSN",
    "baseline": "baseline",
    "hessian": "Newton (Hessian)",
    "fisher": "Newton (Fisher)",
}
TAU = 1.0  # NeuralSort temperature
STEEPNESS = 10.0  # sorting-network inverse temperature (logistic and Cauchy)


def relaxed_permutation(scores: torch.Tensor, relaxation: str) -> torch.Tensor:
    """``P[..., i, j]``: weight of input ``i`` in ascending slot ``j`` (permutation_loss's P)."""
    if relaxation == "neural_sort":
        # NeuralSort's row k is the distribution of the k-th *largest* item: flip the rows
        # to ascending slots, then transpose to (item, slot).
        return dc.relax.neural_sort(scores, tau=TAU).flip(-2).transpose(-1, -2)
    if relaxation in ("logistic_dsn", "cauchy_dsn"):
        _, P = dc.relax.sorting_network(
            scores, network="odd_even", steepness=STEEPNESS, sigmoid=relaxation.split("_")[0]
        )
        return P
    raise ValueError(f"relaxation must be one of {RELAXATIONS}, got {relaxation!r}")


def ranking_loss_fn(relaxation: str, ranks: torch.Tensor):  # type: ignore[no-untyped-def]
    """The algorithmic loss ℓ: scores ``(batch, n)`` → one loss per set ``(batch,)``."""

    def loss_fn(scores: torch.Tensor) -> torch.Tensor:
        return dc.relax.permutation_loss(
            relaxed_permutation(scores, relaxation), ranks, reduction="none"
        )

    return loss_fn


def training_loss(method: str, loss_fn, scores: torch.Tensor, lam: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The scalar that Adam minimises: ``Σ ℓ`` (baseline) or the Newton loss of ``ℓ``.

    ℓ and its curvature are evaluated in float64 (the network runs in float32): once the
    logistic network saturates, the Hessian of the BCE of its ``P`` cancels two large
    terms, which float32 cannot (errors up to 1e5 at unit-scale scores, measured against
    float64), and the cast costs nothing at ``batch × n`` scores.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    y = scores.to(torch.float64)
    if method == "baseline":
        return loss_fn(y).sum()
    return dc.losses.newton_loss(loss_fn, y, mode=method, lam=lam, reduction="sum")


def make_model() -> torch.nn.Module:
    """A small CNN: one 8×32 number image → one scalar score."""
    return torch.nn.Sequential(
        torch.nn.Unflatten(-1, (1, 8, 32)),
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),  # 8 × 4 × 16
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),  # 16 × 2 × 8
        torch.nn.Flatten(),
        torch.nn.Linear(256, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 1),
    )


def _splits(seed: int):  # type: ignore[no-untyped-def]
    """Digit images and labels split into train / validation / test (disjoint images)."""
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(images))
    parts = {"train": perm[:1200], "val": perm[1200:1400], "test": perm[1400:]}
    return {k: (images[v], digits.target[v]) for k, v in parts.items()}


def scores_of(model: torch.nn.Module, x: np.ndarray) -> torch.Tensor:
    """``(sets, n, 256)`` images → ``(sets, n)`` scores."""
    sets, n, d = x.shape
    return model(torch.from_numpy(x).reshape(sets * n, d)).reshape(sets, n)


def train(
    relaxation: str = "neural_sort",
    method: str = "baseline",
    lam: float = 1.0,
    *,
    steps: int = 300,
    n: int = 5,
    batch: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    evaluate_on: str = "test",
    eval_sets: int = 1000,
) -> tuple[float, float]:
    """Train one model; return (exact match, element-wise accuracy) on ``evaluate_on``."""
    if evaluate_on not in ("val", "test"):
        raise ValueError(f"evaluate_on must be 'val' or 'test', got {evaluate_on!r}")
    data = _splits(seed)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        x, values = make_sets(*data["train"], batch, n, rng)
        ranks = torch.from_numpy(dc.solvers.rank(values.astype(np.float64)))
        loss = training_loss(method, ranking_loss_fn(relaxation, ranks), scores_of(model, x), lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, values = make_sets(*data[evaluate_on], eval_sets, n, np.random.default_rng(seed + 1))
    with torch.no_grad():
        return accuracies(scores_of(model, x).numpy(), values)


def _fmt(a: np.ndarray) -> str:
    return f"{100 * a.mean():5.1f} ± {100 * a.std():4.1f}"


def _job(spec: tuple) -> tuple:
    """One training run (a top-level function, so that a process pool can run it)."""
    key, kwargs = spec
    torch.set_num_threads(1)
    t = time.perf_counter()
    out = train(**kwargs)
    return key, out, time.perf_counter() - t


def _map(specs: list, jobs: int) -> dict:
    """Run the specs (in ``jobs`` processes if > 1), printing each result as it arrives."""
    out = {}
    pool = None
    if jobs > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(jobs)
    try:
        for key, acc, dt in pool.imap_unordered(_job, specs) if pool else map(_job, specs):
            out[key] = acc
            em, ew = acc
            print(f"  {_key_str(key)}  exact {em:.3f}  elem {ew:.3f}  ({dt:.0f} s)", flush=True)
    finally:
        if pool:
            pool.close()
            pool.join()
    return out


def _key_str(key: tuple) -> str:
    phase, rel, method, lam, seed = key
    lam_s = f"λ={lam:<6g}" if method != "baseline" else " " * 8
    return f"[{phase:4s}] {LABELS[rel]:13s} {LABELS[method]:17s} {lam_s} seed {seed}"


def run(
    relaxations: tuple[str, ...],
    seeds: int,
    steps: int,
    lambdas: tuple[float, ...],
    batch: int = 32,
    lr: float = 3e-3,
    tune_steps: int | None = None,
    jobs: int = 1,
    coarse: tuple[float, ...] = COARSE_LAMBDAS,
) -> tuple[dict, dict, dict]:
    """λ selection on validation (one seed per λ), then the table over ``seeds`` seeds.

    Returns ``results[(relaxation, method)]`` (an array ``(seeds, 2)`` of exact match and
    element-wise accuracy on the test digits), ``ablation[(relaxation, method, λ)]`` (the
    validation accuracies, baseline under λ = 0) and ``best[(relaxation, method)]`` (λ).
    """
    kw = dict(steps=steps, batch=batch, lr=lr)
    tune_kw = dict(kw, steps=tune_steps or steps, evaluate_on="val", seed=1000)
    grids = {rel: lambdas if k == 0 else coarse for k, rel in enumerate(relaxations)}
    specs = []  # the expensive (Hessian) runs first, for the pool's load balance
    if len(lambdas) > 1:
        for method in ("hessian", "fisher", "baseline"):
            for k, rel in enumerate(relaxations):
                if method == "baseline" and k > 0:
                    continue  # the baseline's validation score is the ablation's reference
                for lam in grids[rel] if method != "baseline" else (0.0,):
                    key = ("val", rel, method, lam, 1000)
                    specs.append((key, dict(tune_kw, relaxation=rel, method=method, lam=lam)))
    ablation = {(k[1], k[2], k[3]): v for k, v in _map(specs, jobs).items()}
    best: dict = {}
    for rel in relaxations:
        for method in ("hessian", "fisher"):
            # the best validation exact match; ties go to the element-wise accuracy
            cands = [lm for lm in grids[rel] if (rel, method, lm) in ablation]
            best[rel, method] = (
                max(cands, key=lambda lm: ablation[rel, method, lm]) if cands else lambdas[0]
            )
            if cands:
                print(f"  λ for {LABELS[rel]}, {LABELS[method]}: {best[rel, method]:g}", flush=True)
    specs = []
    for method in ("hessian", "fisher", "baseline"):
        for rel in relaxations:
            lam = best.get((rel, method), 0.0)
            for seed in range(seeds):
                key = ("test", rel, method, lam, seed)
                specs.append((key, dict(kw, relaxation=rel, method=method, lam=lam, seed=seed)))
    done = _map(specs, jobs)
    results = {
        (rel, method): np.array(
            [done["test", rel, method, best.get((rel, method), 0.0), s] for s in range(seeds)]
        )
        for rel in relaxations
        for method in METHODS
    }
    return results, ablation, best


def print_table(results: dict, best: dict, seeds: int) -> None:
    """Mean ± std over seeds, and the paired difference to the baseline of the same seeds
    (same split, initialisation and data stream)."""
    print(f"\nheld-out digits, n = 5, {seeds} seed(s): exact match / element-wise accuracy (%)")
    print(
        "| relaxation | method | λ | exact match | element-wise | Δ exact vs baseline "
        "(paired) |\n|---|---|---|---|---|---|"
    )
    for (rel, method), a in results.items():
        lam = f"{best[rel, method]:g}" if method != "baseline" else "–"
        d = a[:, 0] - results[rel, "baseline"][:, 0] if (rel, "baseline") in results else None
        delta = f"{100 * d.mean():+5.1f} ± {100 * d.std():4.1f}" if d is not None else "–"
        if method == "baseline":
            delta = "–"
        print(
            f"| {LABELS[rel]} | {LABELS[method]} | {lam} | {_fmt(a[:, 0])} | {_fmt(a[:, 1])} "
            f"| {delta} |"
        )


def _curves(ablation: dict) -> dict:
    """``(relaxation, method) -> sorted λ`` of the Newton runs in the ablation."""
    out: dict = {}
    for rel, method, lam in ablation:
        if method != "baseline":
            out.setdefault((rel, method), []).append(lam)
    return {k: sorted(v) for k, v in out.items()}


def print_ablation(ablation: dict) -> None:
    curves = _curves(ablation)
    if not curves:
        return
    lambdas = sorted({lm for v in curves.values() for lm in v})
    print("\nλ ablation (validation split, one seed): exact match / element-wise (%)")
    print("| relaxation | method | " + " | ".join(f"λ = {lam:g}" for lam in lambdas) + " |")
    print("|---|---|" + "---|" * len(lambdas))

    def cell(a: tuple[float, float]) -> str:
        return f"{100 * a[0]:.1f} / {100 * a[1]:.1f}"

    for rel in dict.fromkeys(k[0] for k in curves):
        if (rel, "baseline", 0.0) in ablation:
            b = cell(ablation[rel, "baseline", 0.0])
            print(f"| {LABELS[rel]} | baseline (no λ) | " + " | ".join([b] * len(lambdas)) + " |")
        for method in ("hessian", "fisher"):
            if (rel, method) in curves:
                cells = [
                    cell(ablation[rel, method, lm]) if (rel, method, lm) in ablation else "–"
                    for lm in lambdas
                ]
                print(f"| {LABELS[rel]} | {LABELS[method]} | " + " | ".join(cells) + " |")


def plot(results: dict, ablation: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    rels = list(dict.fromkeys(k[0] for k in results))
    curves = _curves(ablation)
    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(12 if curves else 6, 4.2))
    axes = np.atleast_1d(axes)
    width = 0.27
    for k, method in enumerate(METHODS):
        a = np.array([results[rel, method][:, 0] for rel in rels]) * 100
        axes[0].bar(
            np.arange(len(rels)) + (k - 1) * width,
            a.mean(1),
            width,
            yerr=a.std(1),
            capsize=3,
            label=LABELS[method],
        )
    axes[0].set_xticks(np.arange(len(rels)), [LABELS[r] for r in rels])
    axes[0].set_ylabel("exact match on held-out digits (%)")
    axes[0].set_title(f"n = 5, mean ± std over {len(next(iter(results.values())))} seeds")
    axes[0].legend(fontsize=8)
    if curves:
        colors = dict(zip(rels, ("C0", "C1", "C2"), strict=False))
        for (rel, method), lambdas in curves.items():
            axes[1].plot(
                lambdas,
                [100 * ablation[rel, method, lm][0] for lm in lambdas],
                "o-" if method == "hessian" else "s--",
                color=colors.get(rel),
                label=f"{LABELS[rel]}, {LABELS[method]}",
            )
            if (rel, "baseline", 0.0) in ablation and method == "hessian":
                axes[1].axhline(
                    100 * ablation[rel, "baseline", 0.0][0], ls=":", color=colors.get(rel)
                )
        axes[1].set_xscale("log")
        axes[1].set_xlabel("λ (Tikhonov)")
        axes[1].set_ylabel("exact match on validation digits (%)")
        axes[1].set_title("λ ablation, one seed (dotted: baseline)")
        axes[1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="NeuralSort, 1 seed, 300 steps, λ = 1")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=None, help="training steps (default 300)")
    ap.add_argument("--tune-steps", type=int, default=None, help="steps of the λ runs (steps/2)")
    ap.add_argument("--batch", type=int, default=32, help="sets per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--relaxations", nargs="+", default=list(RELAXATIONS), choices=RELAXATIONS)
    ap.add_argument("--lambdas", nargs="+", type=float, default=list(LAMBDAS))
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (one thread each)")
    ap.add_argument("--save", default=None, help="write the numbers to this JSON file")
    ap.add_argument("--figure", default=str(ROOT / "docs" / "figures" / "newton_ranking.png"))
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.relaxations, args.lambdas = 1, ["neural_sort"], [1.0]
        args.steps = args.steps or 300
    steps = args.steps or 300
    t0 = time.perf_counter()
    try:
        results, ablation, best = run(
            tuple(args.relaxations),
            args.seeds,
            steps,
            tuple(args.lambdas),
            args.batch,
            args.lr,
            tune_steps=args.tune_steps or max(1, steps // 2),
            jobs=args.jobs,
        )
    finally:
        torch.set_num_threads(threads)
    print_table(results, best, args.seeds)
    print_ablation(ablation)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.save:
        import json

        blob = {
            "args": vars(args),
            "results": {f"{r}/{m}": a.tolist() for (r, m), a in results.items()},
            "ablation": {f"{r}/{m}/{lm:g}": list(v) for (r, m, lm), v in ablation.items()},
            "lambda": {f"{r}/{m}": lm for (r, m), lm in best.items()},
        }
        Path(args.save).write_text(json.dumps(blob, indent=1))
    if not args.quick:
        plot(results, ablation, Path(args.figure))
    return {"results": results, "ablation": ablation, "lambda": best}


if __name__ == "__main__":
    main()
