"""Conformance cases of PyEPO's decision-focused-learning methods (issue 18): AI-MLE,
the perturbation-gradient losses, the solution-pool losses, the regularised
Fenchel-Young loss by Frank-Wolfe, and CaVE."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import dopt_core as dc

from ._cases import Case, register_case

S = dc.solvers
M = 4
BATCH = (2, 3, 6)
SP_GRID = (3, 3)
SP = functools.partial(S.shortest_path_dag, grid=SP_GRID)
SP_BATCH = (3, 12)
TOPK = functools.partial(S.top_k, k=2)


def _add(name: str, fn: Any, make: Any, **kw: Any) -> None:
    register_case(Case(name, fn, make, differentiable=True, tolerance="float", **kw))


def _theta_noise(rng: np.random.Generator, dtype: np.dtype) -> Any:
    theta = rng.normal(size=BATCH).astype(dtype)
    return (theta,), {"noise": (-np.log(rng.standard_exponential((M, *BATCH)))).astype(dtype)}


# alpha_step=0: every backend sees the same λ rule (the state would otherwise move between them)
_add("aimle[argmax]", dc.aimle(S.argmax, num_samples=M, noise="gumbel", alpha_step=0.0), _theta_noise,
     vmap=False)
_add("aimle[top_k,two_sided]", dc.aimle(TOPK, num_samples=M, noise="gumbel", two_sided=True, alpha=2.0,
                                        alpha_step=0.0), _theta_noise, vmap=False)


def _scores_pair(shape: tuple[int, ...]) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        return (rng.normal(size=shape).astype(dtype), -rng.uniform(0.5, 1.5, size=shape).astype(dtype)), {}

    return make


_add("perturbation_gradient_loss[shortest_path_dag]", dc.perturbation_gradient_loss(SP, sigma=0.5),
     _scores_pair(SP_BATCH), vmap=False)
_add("perturbation_gradient_loss[top_k,two_sided,none]",
     dc.perturbation_gradient_loss(TOPK, sigma=0.5, two_sided=True, reduction="none"), _scores_pair(BATCH))


def _pool_inputs(solution_target: bool, **kw: Any) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        theta_hat = rng.normal(size=SP_BATCH)
        theta = -rng.uniform(0.5, 1.5, size=SP_BATCH)
        pool = np.unique(SP(rng.normal(size=(8, 12))), axis=0)
        target = SP(theta) if solution_target else theta
        return (theta_hat.astype(dtype), target.astype(dtype), pool.astype(dtype)), dict(kw)

    return make


_add("nce_loss", dc.nce_loss, _pool_inputs(True), vmap=False)
_add("cmap_loss", dc.cmap_loss, _pool_inputs(True, reduction="none"), vmap=False)
for _kind in ("pointwise", "pairwise", "listwise"):
    _add(f"ltr_loss[{_kind}]", dc.ltr_loss, _pool_inputs(False, kind=_kind), vmap=False)
