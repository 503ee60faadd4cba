"""Conformance cases of AlgoVision's control flow, the T-norm family and the 2-D
rasteriser (:mod:`dopt_core.relax._flow`, :mod:`~dopt_core.relax.fuzzy`,
:mod:`~dopt_core.relax.raster`); imported by the package ``__init__``.

The fuzzy functions take the family name first: the cases bind it, so that the first
array is the differentiated input. Raster cases are float64 only (eager JAX compiles
each primitive once per dtype; float32 is checked by tests/test_relax_raster.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc
from dopt_core.op import Bound, op_function

from ._cases import Case, Inputs, register_case

R = dc.relax
F = dc.relax.fuzzy
_B = (2, 4)


#: one dtype per case, to bound the suite's time (eager JAX compiles every primitive once
#: per dtype); float32 on every backend: tests/test_relax_{flow,fuzzy,raster}.py
_F64 = ("float64",)


def _smooth(name: str, fn: Any, make: Any, dtypes: tuple[str, ...] = _F64) -> None:
    register_case(
        Case(name, fn, make, differentiable=True, native_autodiff=True, tolerance="float", dtypes=dtypes)
    )


def _make(
    *makers: Callable[[np.random.Generator], np.ndarray], **kwargs: Any
) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return tuple(m(rng).astype(dtype) for m in makers), dict(kwargs)

    return make


def _gauss(shape: tuple[int, ...] = _B) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.normal(size=shape)


def _unit(shape: tuple[int, ...] = _B) -> Callable[[np.random.Generator], np.ndarray]:
    return lambda rng: rng.uniform(0.05, 0.95, size=shape)


# --- control flow ------------------------------------------------------------------------
_smooth("relax.soft_eq", R.soft_eq, _make(_gauss(), _gauss(), beta=1.5))
_smooth("relax.soft_and", R.soft_and, _make(_unit(), _unit()))
_smooth("relax.soft_or", R.soft_or, _make(_unit(), _unit()))
_smooth("relax.soft_not", R.soft_not, _make(_unit()))
_smooth("relax.soft_assign", R.soft_assign, _make(_gauss(), _unit(), _gauss()))
_smooth(
    "relax.soft_index[gamma_rev]",
    R.soft_index,
    _make(_gauss(), lambda rng: rng.uniform(-0.5, 3.5, size=_B[:1]), beta=2.0, distribution=("gamma_rev", 2.5)),
)


@op_function
def _index_weights_of_4(i: Any, /, **kwargs: Any) -> Bound:
    return R.soft_index_weights.bind(i, 4, **kwargs)


_smooth(
    "relax.soft_index_weights",
    _index_weights_of_4,
    _make(lambda rng: rng.uniform(-0.5, 3.5, size=(3,)), beta=1.5),
)


# --- T-norms / T-conorms -----------------------------------------------------------------
def _named(fn: Any, name: str, **fixed: Any) -> Any:
    @op_function
    def bound(*arrays: Any, **kwargs: Any) -> Bound:
        return fn.bind(name, *arrays, **fixed, **kwargs)

    return bound


_smooth("relax.fuzzy.tconorm[frank]", _named(F.tconorm, "frank", p=4.0), _make(_unit(), _unit()))
_smooth("relax.fuzzy.tnorm[dombi]", _named(F.tnorm, "dombi"), _make(_unit(), _unit()))
_smooth(
    "relax.fuzzy.tconorm_reduce[probabilistic]",
    _named(F.tconorm_reduce, "probabilistic"),
    _make(_unit((2, 3, 4)), axis=-2),
)
_smooth("relax.fuzzy.tnorm_reduce[einstein]", _named(F.tnorm_reduce, "einstein"), _make(_unit()))


# --- the rasteriser ----------------------------------------------------------------------
def _tris(rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(0.3, 0.7, size=(2, 3, 1, 2))
    return c + 0.15 * rng.normal(size=(2, 3, 3, 2))


def _round_tris(rng: np.random.Generator) -> np.ndarray:
    """Well-shaped triangles (vertices on a circle of radius 0.12-0.25, at angles 2π/3
    apart ± 0.35 rad; either orientation), overlapping in the unit square.

    The ``hvp`` check takes central differences of the gradient with step 1e-5; their
    error (h²/6 times third derivatives) grows with the inverse powers of a triangle's
    height, and a sliver of :func:`_tris` (height 0.005) makes it 2e-5 on entries of 30
    (tenfold smaller per halving of h: the Hessian itself is right).
    """
    c = rng.uniform(0.35, 0.65, size=(2, 3, 1, 1))
    r = rng.uniform(0.12, 0.25, size=(2, 3, 1, 1))
    ang = rng.uniform(0, 2 * np.pi, size=(2, 3, 1)) + 2 * np.pi / 3 * np.arange(3)
    ang = ang + rng.uniform(-0.35, 0.35, size=(2, 3, 3))
    ang = np.where(rng.uniform(size=(2, 3, 1)) < 0.5, ang, -ang)  # both orientations
    return c + r * np.stack([np.cos(ang), np.sin(ang)], axis=-1)


@op_function
def _silhouette_6(tris: Any, /, **kwargs: Any) -> Bound:
    return R.raster.soft_silhouette.bind(tris, 6, **kwargs)


# no vmap check: the batch axis is already the op's own leading axis, and each JAX
# transformation of this op costs ~10 s of eager compilation
register_case(
    Case(
        "relax.raster.soft_silhouette[logistic]",
        _silhouette_6,
        _make(_round_tris, distribution="logistic", scale=0.1),
        differentiable=True,
        native_autodiff=True,
        tolerance="float",
        dtypes=_F64,
        vmap=False,
    )
)

_POINTS = np.random.default_rng(7).uniform(0, 1, size=(9, 2))


@op_function
def _distance_to_points(tris: Any, /, **kwargs: Any) -> Bound:
    xp = dc.backend_for(tris).namespace(tris)
    pts = xp.asarray(_POINTS, dtype=tris.dtype, device=dc.backend_for(tris).device(tris))
    return R.raster.triangle_signed_distance.bind(pts, tris, **kwargs)


_smooth(
    "relax.raster.triangle_signed_distance",
    _distance_to_points,
    _make(_tris, squared=True),
)
