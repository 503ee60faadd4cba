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


@op_function
def _silhouette_6(tris: Any, /, **kwargs: Any) -> Bound:
    return R.raster.soft_silhouette.bind(tris, 6, **kwargs)


# no vmap check: the batch axis is already the op's own leading axis, and each JAX
# transformation of this op costs ~10 s of eager compilation
register_case(
    Case(
        "relax.raster.soft_silhouette[logistic]",
        _silhouette_6,
        _make(_tris, distribution="logistic", scale=0.1),
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
