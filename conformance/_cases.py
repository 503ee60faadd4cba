"""The registry of conformance cases.

A :class:`Case` names a public dopt function, a generator of NumPy inputs and static
keyword arguments, and what to check: values always; the VJP when the op has a
non-zero gradient; native autodiff of the forward against the explicit VJP when the
forward is made of differentiable array operations. Later features add their cases
with :func:`register_case`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import dopt_core as dc

__all__ = ["CASES", "Case", "register_case"]

Inputs = tuple[tuple[np.ndarray, ...], dict[str, Any]]


@dataclass(frozen=True)
class Case:
    """One function on one kind of input.

    ``make_inputs(rng, dtype)`` returns ``(arrays, kwargs)``: NumPy arrays converted to
    each backend (the first is θ, the input gradients are taken with respect to) and
    keyword arguments; keyword values that are NumPy arrays (e.g. pre-drawn
    ``noise=``) are converted to the backend too, the others passed unchanged.
    ``tolerance`` is a kind of :func:`dopt_core.testing.tolerance` ("exact" for
    solvers). ``vmap_axes`` gives the batch axis of each array keyword under
    ``jax.vmap`` (default 0; 1 for noise shaped ``(num_samples, *theta.shape)``);
    ``vmap=False`` skips the vmap check (e.g. for losses reduced over the batch).
    """

    name: str
    fn: Callable[..., Any]
    make_inputs: Callable[[np.random.Generator, np.dtype], Inputs]
    differentiable: bool = False
    native_autodiff: bool = False
    tolerance: str = "exact"
    dtypes: tuple[str, ...] = ("float32", "float64")
    vmap_axes: dict[str, int] = field(default_factory=dict)
    vmap: bool = True
    tags: frozenset[str] = field(default_factory=frozenset)


CASES: dict[str, Case] = {}


def register_case(case: Case) -> Case:
    if case.name in CASES:
        raise ValueError(f"a conformance case named {case.name!r} is already registered")
    CASES[case.name] = case
    return case


def tied_scores(shape: tuple[int, ...]) -> Callable[[np.random.Generator, np.dtype], np.ndarray]:
    """Scores on a coarse grid (multiples of 1/2 in [-2, 2]): ties are frequent, so
    every backend must break them the same way."""

    def make(rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
        return (rng.integers(-4, 5, size=shape) / 2).astype(dtype)

    return make


def _theta_only(
    shape: tuple[int, ...], **kwargs: Any
) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    gen = tied_scores(shape)
    return lambda rng, dtype: ((gen(rng, dtype),), dict(kwargs))


_BATCHED = (2, 3, 7)
_S = dc.solvers

register_case(Case("argmax", _S.argmax, _theta_only(_BATCHED)))
register_case(Case("argmax[unbatched]", _S.argmax, _theta_only((9,))))
register_case(Case("top_k", _S.top_k, _theta_only(_BATCHED, k=3)))
register_case(Case("top_k[k=n]", _S.top_k, _theta_only((4, 5), k=5)))
register_case(Case("rank", _S.rank, _theta_only(_BATCHED)))
register_case(Case("permutation", _S.permutation, _theta_only(_BATCHED)))
register_case(Case("sort", _S.sort, _theta_only(_BATCHED), differentiable=True, native_autodiff=True))
register_case(
    Case(
        "sort[descending]",
        _S.sort,
        _theta_only(_BATCHED, descending=True),
        differentiable=True,
        native_autodiff=True,
    )
)
