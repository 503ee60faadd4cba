"""Latent spanning trees: score-function estimators vs a perturbed-optimizer relaxation.

    python examples/latent_structure.py [--quick] [--no-relax] [--structure arborescence]

The toy experiment of Struminsky et al. (2021): learn edge scores θ of the complete
graph on ``n`` nodes so that spanning trees sampled by Kruskal on exponential edge
weights (or, with ``--structure arborescence``, arborescences rooted at 0 sampled by
Chu-Liu/Edmonds) minimise a fixed quadratic loss to a target, ``f(X) = ||X - X*||²``.
Gradients of ``E[f(X)]``:

* T-REINFORCE (score of the trace, ``dopt_core.structured.score``), K samples;
* T-REINFORCE+ (leave-one-out baseline over the K samples);
* E-REINFORCE+ (score of the exponentials);
* RELAX (when torch is installed): conditional exponentials and a
  ``dopt_torch.nn.ExponentialCritic`` trained online to minimise the squared estimate
  (its variance is measured after a short critic warm-up at the initial θ);
* the relaxation-based counterpart: the perturbed Fenchel-Young loss of the
  maximum spanning tree solver (``dopt_core.fenchel_young_loss``) with the target.

Prints the variance of one gradient estimate (built from K samples, summed over the
coordinates) of each estimator at the initial θ and the expected loss after training
(NumPy, plain gradient descent); saves the loss curves to
``docs/figures/latent_<structure>.png`` when matplotlib is available (not in quick mode).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
from pathlib import Path
from typing import Any

import numpy as np

import dopt_core as dc

S = dc.structured


class Problem:
    """One latent structure on flat scores θ of length m: a sampler, a solver, a target."""

    def __init__(self, structure: str, n: int) -> None:
        self.structure, self.n = structure, n
        if structure == "spanning_tree":
            self.edges = np.array(list(itertools.combinations(range(n), 2)))
            self.target = np.zeros(len(self.edges))
            path = [k for k, (u, v) in enumerate(self.edges) if v == u + 1]  # the path 0-1-…-(n-1)
            self.target[path] = 1.0
        else:  # arborescence rooted at 0, target: the chain 0 → 1 → … → n-1
            t = np.zeros((n, n))
            t[np.arange(n - 1), np.arange(1, n)] = 1.0
            self.target = t.ravel()
        self.m = len(self.target)

    def sample(self, theta: Any, rng: Any, k: int | None) -> tuple[Any, Any]:
        """``(y, trace)`` with ``y`` flat ``(..., m)`` (the trace is flat already)."""
        if self.structure == "spanning_tree":
            return S.spanning_tree.sample(theta, self.edges, self.n, rng=rng, num_samples=k)
        y, trace = S.arborescence.sample(theta.reshape(*theta.shape[:-1], self.n, self.n), rng=rng, num_samples=k)
        return y.reshape(*y.shape[:-2], self.m), trace

    def solver(self, theta: np.ndarray) -> np.ndarray:
        if self.structure == "spanning_tree":
            return dc.solvers.spanning_tree(theta, self.edges, self.n)
        y = dc.solvers.arborescence(theta.reshape(*theta.shape[:-1], self.n, self.n))
        return y.reshape(*y.shape[:-2], self.m)


def expected_loss(theta: np.ndarray, prob: Problem, rng: int) -> float:
    y, _ = prob.sample(theta, rng, 2000)
    return float(((y - prob.target) ** 2).sum(-1).mean())


def gradient(method: str, theta: np.ndarray, prob: Problem, k: int, rng: np.random.Generator) -> np.ndarray:
    if method == "fy":
        # high θ_a makes arc/edge a likely in both models (argmin of E = ε·e^{-θ}, argmax of θ·y)
        loss = dc.fenchel_young_loss(prob.solver, sigma=1.0, num_samples=k)
        _, vjp = dc.value_and_vjp(loss, theta, prob.target, rng=rng)
        return vjp(1.0)
    y, trace = prob.sample(theta, rng, k)
    f = ((y - prob.target) ** 2).sum(-1)
    if method == "E-REINFORCE+":
        return S.estimators.reinforce(f, S.score_exponentials(trace.exponentials, theta), baseline="loo")
    baseline = "loo" if method.endswith("+") else None
    return S.estimators.reinforce(f, S.score(trace, theta), baseline=baseline)


class Relax:
    """RELAX with an MLP critic of the exponentials (torch)."""

    def __init__(self, prob: Problem) -> None:
        import torch  # noqa: PLC0415 - lazy: optional, only for RELAX

        import dopt_torch  # noqa: PLC0415,F401 - lazy: optional, only for RELAX

        self.torch = torch
        torch.manual_seed(0)
        self.critic = dopt_torch.nn.ExponentialCritic(prob.m, hidden=32)
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=1e-2)
        self.prob, self.target = prob, torch.tensor(prob.target)

    def __call__(self, theta: np.ndarray, k: int, rng: np.random.Generator, train: bool = True) -> np.ndarray:
        torch = self.torch
        th = torch.tensor(theta).expand(k, len(theta)).clone().requires_grad_(True)
        y, trace = self.prob.sample(th, rng, None)
        e_cond = S.conditional_sample(trace, th, rng=rng)
        c_cond = self.critic(e_cond)
        grad_c = torch.autograd.grad(self.critic(trace.exponentials).sum(), th, create_graph=True)[0]
        grad_cc = torch.autograd.grad(c_cond.sum(), th, create_graph=True)[0]
        f = ((y - self.target) ** 2).sum(-1).detach()
        g = S.estimators.relax(f, S.score(trace, th.detach()), c_cond, grad_c, grad_cc)
        if train:  # the critic minimises the estimator's second moment (= its variance + const)
            self.opt.zero_grad()
            (g**2).sum().backward()
            self.opt.step()
        return g.detach().numpy()


METHODS = ("T-REINFORCE", "T-REINFORCE+", "E-REINFORCE+", "RELAX", "fy")


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-relax", action="store_true", help="skip RELAX (torch)")
    parser.add_argument("--structure", choices=("spanning_tree", "arborescence"), default="spanning_tree")
    args = parser.parse_args(argv)
    n = 5 if args.quick else 7
    steps = 40 if args.quick else 400
    num_draws = 60 if args.quick else 200
    k, lr = 4, 0.1
    prob = Problem(args.structure, n)
    m = prob.m
    theta0 = np.zeros(m)
    results: dict[str, dict[str, float]] = {}
    curves: dict[str, list[float]] = {}
    for method in METHODS:
        rng = np.random.default_rng(0)
        if method == "RELAX":
            if args.no_relax or importlib.util.find_spec("torch") is None:
                print("RELAX skipped (--no-relax or torch not installed)")
                continue
            relax = Relax(prob)
            for _ in range(num_draws):  # critic warm-up at θ0
                relax(theta0, k, rng)

            def grad_fn(t: np.ndarray, relax: Relax = relax) -> np.ndarray:
                return relax(t, k, rng)
        else:

            def grad_fn(t: np.ndarray, method: str = method) -> np.ndarray:
                return gradient(method, t, prob, k, rng)

        # gradient variance at θ0 (sum over coordinates, per estimate of K samples)
        draws = np.stack([grad_fn(theta0) for _ in range(num_draws)])
        theta = theta0.copy()
        curve = [expected_loss(theta, prob, 1)]
        for step in range(steps):
            theta = theta - lr * grad_fn(theta)
            if (step + 1) % max(1, steps // 10) == 0:
                curve.append(expected_loss(theta, prob, step + 2))
        curves[method] = curve
        results[method] = {"variance": float(draws.var(0).sum()), "initial": curve[0], "final": curve[-1]}
        print(f"{method:14s} grad variance {results[method]['variance']:9.3f}   "
              f"E[f]: {curve[0]:.3f} -> {curve[-1]:.3f}")
    if not args.quick:
        try:
            import matplotlib  # noqa: PLC0415 - lazy: optional, only for the figure

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt  # noqa: PLC0415 - lazy: optional
        except ImportError:
            print("matplotlib not installed: no figure")
        else:
            fig, ax = plt.subplots(figsize=(5, 3.5))
            for method, curve in curves.items():
                xs = np.linspace(0, steps, len(curve))
                ax.plot(xs, curve, label=method if method != "fy" else "perturbed FY loss")
            ax.set_xlabel("gradient step")
            ax.set_ylabel("E[ ||X - X*||² ]")
            what = "spanning trees of K" if args.structure == "spanning_tree" else "arborescences, n = "
            ax.set_title(f"latent {what}{n}, K={k} samples")
            ax.legend()
            fig.tight_layout()
            out = Path(__file__).resolve().parents[1] / "docs" / "figures" / f"latent_{args.structure}.png"
            fig.savefig(out, dpi=120)
            print(f"saved {out}")
    return results


if __name__ == "__main__":
    main()
