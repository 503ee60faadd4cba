"""Conformance cases of the perturbed optimizers, perturbed maxima and Fenchel-Young losses.

Every backend receives the same pre-drawn standard noise (``noise=``), so values and
VJPs must agree with the NumPy reference up to floating-point rounding.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import dopt_core as dc

from ._cases import Case, register_case

S = dc.solvers
M = 8
BATCH = (2, 3, 6)
NOISE_AXES = {"noise": 1}  # (num_samples, *theta.shape): the batch axis is 1


def _draw(rng: np.random.Generator, kind: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    z = rng.standard_normal(shape) if kind == "normal" else -np.log(rng.standard_exponential(shape))
    return z.astype(dtype)


def _theta_noise(kind: str, *, negative: bool = False, shape: tuple[int, ...] = BATCH) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        theta = rng.normal(size=shape).astype(dtype)
        if negative:  # scores of constant sign (θ = -cost) for multiplicative noise
            theta = -rng.uniform(0.5, 2.0, size=shape).astype(dtype)
        return (theta,), {"noise": _draw(rng, kind, (M, *shape), dtype)}

    return make


def _theta_target_noise(kind: str, target: Any, *, negative: bool = False) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        (theta,), kw = _theta_noise(kind, negative=negative)(rng, dtype)
        y = target(rng.normal(size=BATCH)).astype(dtype)
        return (theta, y), kw

    return make


def _add(name: str, fn: Any, make: Any, **kw: Any) -> None:
    register_case(Case(name, fn, make, differentiable=True, tolerance="float", vmap_axes=NOISE_AXES, **kw))


_add("perturbed[argmax,gumbel]", dc.perturbed(S.argmax, sigma=0.5, num_samples=M, noise="gumbel"), _theta_noise("gumbel"))
_add(
    "perturbed[argmax,gumbel,rao_blackwell]",
    dc.perturbed(S.argmax, sigma=0.5, num_samples=M, noise="gumbel", rao_blackwell=True),
    _theta_noise("gumbel"),
)
_add("perturbed[argmax,normal]", dc.perturbed(S.argmax, sigma=1.0, num_samples=M), _theta_noise("normal"))
_add(
    "perturbed[top_k,control_variate]",
    dc.perturbed(functools.partial(S.top_k, k=2), sigma=0.7, num_samples=M, control_variate=True),
    _theta_noise("normal"),
)
_add(
    "perturbed[argmax,multiplicative]",
    dc.perturbed(S.argmax, sigma=0.5, num_samples=M, multiplicative=True),
    _theta_noise("normal", negative=True),
)
_add("perturbed[rank]", dc.perturbed(S.rank, sigma=0.3, num_samples=M, chunk_size=3), _theta_noise("normal"))
_add("perturbed[permutation]", dc.perturbed(S.permutation, sigma=0.3, num_samples=M), _theta_noise("normal"))
_add("perturbed_max[argmax,gumbel]", dc.perturbed_max(S.argmax, sigma=0.5, num_samples=M, noise="gumbel"), _theta_noise("gumbel"))
_add(
    "perturbed_max[top_k,multiplicative]",
    dc.perturbed_max(functools.partial(S.top_k, k=3), sigma=0.5, num_samples=M, multiplicative=True),
    _theta_noise("normal", negative=True),
)
_add(
    "fenchel_young_loss[argmax,mean]",
    dc.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=M, noise="gumbel"),
    _theta_target_noise("gumbel", S.argmax),
    vmap=False,
)
_add(
    "fenchel_young_loss[top_k,none]",
    dc.fenchel_young_loss(functools.partial(S.top_k, k=2), sigma=1.0, num_samples=M, reduction="none"),
    _theta_target_noise("normal", lambda t: S.top_k(t, 2)),
)
_add(
    "fenchel_young_loss[argmax,multiplicative,sum]",
    dc.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=M, multiplicative=True, reduction="sum"),
    _theta_target_noise("normal", S.argmax, negative=True),
    vmap=False,
)


def _matrix_noise(n: int) -> Any:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Any:
        theta = rng.normal(size=(2, n, n)).astype(dtype)
        return (theta,), {"noise": rng.standard_normal((M, 2, n, n)).astype(dtype)}

    return make


# event_ndim = 2 solvers (one instance is a matrix): the estimator sums over both axes
_add("perturbed[linear_assignment]", dc.perturbed(S.linear_assignment, sigma=0.5, num_samples=M), _matrix_noise(4))
_add(
    "fenchel_young_loss[linear_assignment,none]",
    dc.fenchel_young_loss(S.linear_assignment, sigma=0.5, num_samples=M, reduction="none"),
    lambda rng, dtype: (
        (rng.normal(size=(2, 4, 4)).astype(dtype), S.linear_assignment(rng.normal(size=(2, 4, 4))).astype(dtype)),
        {"noise": rng.standard_normal((M, 2, 4, 4)).astype(dtype)},
    ),
)
