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
TOPK = functools.partial(S.top_k, k=2)


def _add(name: str, fn: Any, make: Any, **kw: Any) -> None:
    register_case(Case(name, fn, make, differentiable=True, tolerance="float", **kw))


def _theta_noise(rng: np.random.Generator, dtype: np.dtype) -> Any:
    theta = rng.normal(size=BATCH).astype(dtype)
    return (theta,), {"noise": (-np.log(rng.standard_exponential((M, *BATCH)))).astype(dtype)}


# alpha_step=0: every backend sees the same λ rule (the state would otherwise move between them)
_add("aimle[argmax]", dc.aimle(S.argmax, num_samples=M, noise="gumbel", alpha_step=0.0), _theta_noise,
     vmap=False)


def _scores_pair(shape: tuple[int, ...]) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        return (rng.normal(size=shape).astype(dtype), -rng.uniform(0.5, 1.5, size=shape).astype(dtype)), {}

    return make


_add("perturbation_gradient_loss[top_k,two_sided,none]",
     dc.perturbation_gradient_loss(TOPK, sigma=0.5, two_sided=True, reduction="none"), _scores_pair(BATCH))


def _pool_inputs(solution_target: bool, **kw: Any) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        theta_hat = rng.normal(size=BATCH)
        theta = -rng.uniform(0.5, 1.5, size=BATCH)
        pool = np.unique(TOPK(rng.normal(size=(8, BATCH[-1]))), axis=0)
        target = TOPK(theta) if solution_target else theta
        return (theta_hat.astype(dtype), target.astype(dtype), pool.astype(dtype)), dict(kw)

    return make


_add("nce_loss", dc.nce_loss, _pool_inputs(True), vmap=False)
_add("cmap_loss", dc.cmap_loss, _pool_inputs(True, reduction="none"), vmap=False)
for _kind in ("pairwise", "listwise"):  # pointwise: a plain quadratic, tested in tests/
    _add(f"ltr_loss[{_kind}]", dc.ltr_loss, _pool_inputs(False, kind=_kind), vmap=False)


def _two_close(rng: np.random.Generator, dtype: np.dtype) -> Any:
    """Scores whose projection lies on an edge of the simplex (two close leaders, the
    rest far below): pairwise Frank-Wolfe lands on it exactly in one step, so every
    backend agrees to rounding (on larger faces the iterates of two backends differ by
    rounding in the choice among equally good away vertices)."""
    theta = rng.normal(size=BATCH) - 3.0
    lead = rng.uniform(0.0, 0.5, size=(*BATCH[:-1], 2))
    theta[..., :2] = lead + 1.0
    return (theta.astype(dtype),), {}


_add("regularized_optimizer[argmax]", dc.regularized_optimizer(S.argmax, max_iter=4), _two_close,
     vmap=False)


def _theta_one_hot(rng: np.random.Generator, dtype: np.dtype) -> Any:
    (theta,), _ = _two_close(rng, dtype)
    return (theta, np.eye(BATCH[-1])[rng.integers(0, BATCH[-1], size=BATCH[:-1])].astype(dtype)), {}


_add("regularized_fenchel_young_loss[argmax]",
     dc.regularized_fenchel_young_loss(S.argmax, max_iter=4), _theta_one_hot, vmap=False)


def _cave_inputs(**kw: Any) -> Any:
    """k-subsets {Σy = 2, 0 ≤ y ≤ 1}: the normals of the constraints binding at the true top-2."""

    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        theta_hat = rng.normal(size=BATCH)
        y = TOPK(rng.normal(size=BATCH))
        normals = dc.binding_normals(y, A_eq=np.ones((1, BATCH[-1])))
        return (theta_hat.astype(dtype), normals.astype(dtype)), dict(kw)

    return make


_add("cave_loss[exact]", dc.cave_loss, _cave_inputs(), vmap=False)
_add("cave_loss[pgd,none]", dc.cave_loss, _cave_inputs(method="pgd", max_iter=10, reduction="none"))
