"""The figures of docs/concepts.md: how smoothing trades bias against variance.

* ``concepts_perturbed_argmax.png`` — the first coordinate of a perturbed argmax
  ``y_σ(θ)`` of ``θ = (t, 0, -0.5)`` against ``t``, for several σ (Normal noise,
  Monte Carlo with fixed seeds). σ → 0 gives the step of the exact argmax.
* ``concepts_soft_sort.png`` — soft sort (permutahedron projection, ``l2``) of five
  numbers as ``regularization_strength`` grows, and diffsort's sorting network as
  ``steepness`` falls: both move from the exact sort towards the mean.
* ``concepts_variance.png`` — the summed variance (over coordinates, from 400
  independent replicates) of two estimators against the number of samples M, for
  three σ: the perturbed Fenchel-Young gradient ``y_σ(θ) - y`` (with antithetic pairs
  at σ = 1), whose variance grows with σ, and the score-function VJP of
  ``perturbed`` for a fixed cotangent (with the control variate at σ = 1), whose
  variance grows as σ shrinks (the 1/σ factor). Both fall as 1/M.

All in NumPy with fixed seeds; about 5 s on one CPU core.

    python docs/figures/make_concepts.py [--out docs/figures]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import dopt_core as dc  # noqa: E402

DPI = 110


def perturbed_argmax(out: Path) -> None:
    t = np.linspace(-2.0, 2.0, 161)
    theta = np.stack([t, np.zeros_like(t), np.full_like(t, -0.5)], axis=-1)  # (161, 3)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    exact = dc.solvers.argmax(theta)[:, 0]
    ax.step(t, exact, where="mid", color="k", lw=1.2, label="argmax (σ = 0)")
    for sigma in (0.1, 0.3, 1.0, 3.0):
        f = dc.perturbed(dc.solvers.argmax, sigma=sigma, num_samples=4000)
        ax.plot(t, f(theta, rng=0)[:, 0], label=f"σ = {sigma:g}")
    ax.set_xlabel("θ₁  (θ = (θ₁, 0, −0.5))")
    ax.set_ylabel("y_σ(θ)₁")
    ax.set_title("Perturbed argmax (Normal noise, 4000 samples)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "concepts_perturbed_argmax.png", dpi=DPI)
    plt.close(fig)


def soft_sort(out: Path) -> None:
    x = np.array([[1.5, -0.4, 0.9, -1.2, 0.2]])
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.4), sharey=True)
    eps = np.logspace(-2, 1.5, 80)
    ys = np.concatenate([dc.relax.soft_sort(x, regularization_strength=e) for e in eps])
    a.semilogx(eps, ys)
    a.axhline(x.mean(), color="k", ls=":", lw=1)
    a.set_xlabel("regularization_strength ε")
    a.set_ylabel("sorted value")
    a.set_title("relax.soft_sort (l2)")
    steep = np.logspace(-1, 2, 80)
    zs = np.concatenate([dc.relax.sorting_network(x, steepness=s)[0] for s in steep])
    b.semilogx(steep, zs)
    b.axhline(x.mean(), color="k", ls=":", lw=1)
    b.invert_xaxis()
    b.set_xlabel("steepness (falling →)")
    b.set_title("relax.sorting_network (odd-even, Cauchy)")
    fig.tight_layout()
    fig.savefig(out / "concepts_soft_sort.png", dpi=DPI)
    plt.close(fig)



def _variance_curves(ax, ms, runs, estimate, extra_label: str) -> None:
    """One log-log curve per run: the summed variance over replicates of ``estimate``."""
    for sigma, extra, style, color in runs:
        v = [estimate(sigma, extra, int(m)).var(axis=0, ddof=1).sum() for m in ms]
        label = f"σ = {sigma:g}" + (f", {extra_label}" if extra else "")
        ax.loglog(ms, v, style, ms=3, color=color, label=label)


def variance(out: Path) -> None:
    rng = np.random.default_rng(0)
    d, replicates = 8, 400
    theta0 = rng.normal(size=d)
    y = dc.solvers.top_k(theta0, 3)
    cot0 = rng.normal(size=d)  # a fixed cotangent for the perturbed optimizer's VJP
    # replicates of one instance along a batch axis: independent draws per row
    theta = np.broadcast_to(theta0, (replicates, d)).copy()
    targets = np.broadcast_to(y, (replicates, d)).copy()
    cot = np.broadcast_to(cot0, (replicates, d)).copy()
    ms = np.array([2, 4, 8, 16, 32, 64, 128])
    solver = lambda t: dc.solvers.top_k(t, 3)  # noqa: E731 - a row solver
    fig, (a, b) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    runs = ((0.3, {}, "-o", "C0"), (1.0, {}, "-o", "C1"), (3.0, {}, "-o", "C2"))

    def fy_gradient(sigma: float, extra: dict, m: int) -> np.ndarray:
        loss = dc.fenchel_young_loss(
            solver, sigma=sigma, num_samples=m, reduction="sum", event_ndim=1, **extra
        )
        _, vjp = dc.value_and_vjp(loss, theta, targets, rng=m)
        return vjp(np.array(1.0))  # (replicates, d): y_σ(θ) - y per replicate

    def perturbed_vjp(sigma: float, extra: dict, m: int) -> np.ndarray:
        f = dc.perturbed(solver, sigma=sigma, num_samples=m, event_ndim=1, **extra)
        _, vjp = dc.value_and_vjp(f, theta, rng=m)
        return vjp(cot)  # the score-function estimate of J_σ(θ)ᵀ g per replicate

    _variance_curves(a, ms, runs + ((1.0, {"antithetic": True}, "--s", "C3"),), fy_gradient,
                     "antithetic")
    a.loglog(ms, 0.5 / ms, "k:", lw=1, label="∝ 1/M")
    a.set_xlabel("samples M")
    a.set_ylabel("Σ Var")
    a.set_title("Fenchel-Young gradient y_σ(θ) − y")
    a.legend(fontsize=8)
    _variance_curves(b, ms, runs + ((1.0, {"control_variate": True}, "--s", "C3"),),
                     perturbed_vjp, "control variate")
    b.set_xlabel("samples M")
    b.set_title("Perturbed-optimizer VJP (score function)")
    b.legend(fontsize=8)
    fig.suptitle("Estimator variance, top-3 of 8 (400 independent replicates)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "concepts_variance.png", dpi=DPI)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    perturbed_argmax(args.out)
    soft_sort(args.out)
    variance(args.out)


if __name__ == "__main__":
    main()
