"""Conformance cases of the gradient replacements and SPO+."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import dopt_core as dc

from ._cases import Case, register_case

S = dc.solvers
BATCH = (2, 3, 6)


def _theta(rng: np.random.Generator, dtype: np.dtype) -> Any:
    return (rng.normal(size=BATCH).astype(dtype),), {}


def _theta_noise(m: int) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        theta = rng.normal(size=BATCH).astype(dtype)
        return (theta,), {"noise": (-np.log(rng.standard_exponential((m, *BATCH)))).astype(dtype)}

    return make


def _spo_inputs(rng: np.random.Generator, dtype: np.dtype) -> Any:
    return (rng.normal(size=BATCH).astype(dtype), rng.normal(size=BATCH).astype(dtype)), {}


def _add(name: str, fn: Any, make: Any, **kw: Any) -> None:
    register_case(Case(name, fn, make, differentiable=True, tolerance="float", **kw))


for projection in (None, "mean", "norm", "standardize"):
    _add(f"identity[{projection}]", dc.identity(S.argmax, projection=projection), _theta)
_add(
    "identity[noise]",
    dc.identity(functools.partial(S.top_k, k=2), projection="mean", noise="gumbel", noise_sigma=0.5),
    lambda rng, dtype: ((rng.normal(size=BATCH).astype(dtype),), {"noise": rng.gumbel(size=BATCH).astype(dtype)}),
)
_add("interpolation[argmax]", dc.interpolation(S.argmax, lam=3.0), _theta)
_add("interpolation[top_k]", dc.interpolation(functools.partial(S.top_k, k=3), lam=3.0), _theta)
_add("imle[argmax]", dc.imle(S.argmax, lam=2.0, num_samples=4, noise="gumbel"), _theta_noise(4), vmap_axes={"noise": 1})
_add(
    "imle[top_k,two_sided]",
    dc.imle(functools.partial(S.top_k, k=2), lam=2.0, num_samples=4, noise="gumbel", two_sided=True),
    _theta_noise(4),
    vmap_axes={"noise": 1},
)
_add("spo_plus_loss[argmax,none]", dc.spo_plus_loss(S.argmax, reduction="none"), _spo_inputs)
_add("spo_plus_loss[top_k,mean]", dc.spo_plus_loss(functools.partial(S.top_k, k=2)), _spo_inputs, vmap=False)
_add("straight_through[argmax,softmax]", dc.straight_through(S.argmax, dc.relax.softmax), _theta)
_add(
    "straight_through[argmax,sparsemax]",
    dc.straight_through(S.argmax, functools.partial(dc.relax.sparsemax, tau=0.5)),
    _theta,
)



# --- the projections of identity-style backward passes, as layers of their own ---------
def _project_inputs(projection: str, shape: tuple[int, ...] = BATCH, **kw: Any) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        return (rng.normal(size=shape).astype(dtype),), {"projection": projection, **kw}

    return make


def _project(name: str, make: Any) -> None:
    register_case(
        Case(name, dc.projections.project, make, differentiable=True, native_autodiff=True, tolerance="float")
    )


_project("projections.project[mean]", _project_inputs("mean"))
_project("projections.project[norm]", _project_inputs("norm"))
# standardize = norm after mean; one instance is a (3, 4) matrix: the statistics run over
# both trailing axes
_project(
    "projections.project[standardize,event_ndim=2]",
    _project_inputs("standardize", (2, 3, 4), event_ndim=2),
)
