"""Conformance cases of :mod:`dopt_core.logic` (imported by the package ``__init__``).

The wiring and, for the input-gradient cases, the gate logits are fixed NumPy
constants (the wiring is static data by design); the array argument is the layer's
input ``x`` in ``[0, 1]`` or, for the weight-gradient case, the logits ``W``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

import dopt_core as dc
from dopt_core.backend import backend_for
from dopt_core.op import Bound, Op, op_function

from ._cases import Case, Inputs, register_case

L = dc.logic
_IN, _OUT = 5, 8
_G = np.random.default_rng(14)
_IA, _IB = L.logic_connections(_IN, _OUT, rng=_G)
_W = _G.normal(size=(_OUT, 16)) * 1.5
_X = _G.random((3, _IN))
_LEAVES = L.conv_tree_leaves(2, 2, kernel_size=2, depth=2, rng=_G)
_CW = [_G.normal(size=(4, 16)), _G.normal(size=(2, 16))]



def _const_like(a: np.ndarray, x: Any) -> Any:
    xp = backend_for(x).namespace(x)
    return xp.astype(backend_for(x).from_numpy(a, like=x), x.dtype)


def _layer_of_x(mode: str) -> Any:
    def bind(x: Any, /) -> Bound:
        return L.logic_layer.bind(x, _IA, _IB, _const_like(_W, x), mode=mode)

    return op_function(bind, name=f"logic.logic_layer[{mode}]")


@dataclass(frozen=True)
class _WeightsFirst(Op):
    """The logic layer's Op with the logits first: the case's array is ``W``."""

    inner: Op
    name: ClassVar[str] = "logic.logic_layer"
    nondiff: ClassVar[tuple[int, ...]] = (1, 2, 3, 4)

    def forward(self, W: Any, x: Any, *rest: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return self.inner.forward(x, W, *rest, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        gx, gW, *rest = self.inner.vjp(residuals, cotangent, xp=xp)
        return (gW, None, *rest)


def _layer_of_w(W: Any, /) -> Bound:
    b = L.logic_layer.bind(_const_like(_X, W), _IA, _IB, W)
    x, W, *rest = b.inputs
    return Bound(_WeightsFirst(b.op), (W, x, *rest), b.out_dtype)


def _uniform(shape: tuple[int, ...], **kwargs: Any) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return (rng.uniform(0.05, 0.95, size=shape).astype(dtype),), dict(kwargs)

    return make


def _normal(shape: tuple[int, ...]) -> Callable[[np.random.Generator, np.dtype], Inputs]:
    def make(rng: np.random.Generator, dtype: np.dtype) -> Inputs:
        return (rng.normal(size=shape).astype(dtype),), {}

    return make


def _conv_bind(x: Any, /) -> Bound:
    # the last tree level as the bound op, its input computed by the levels below
    return L.logic_layer.bind(x, *_conv_last_wiring(), _const_like(_CW[1], x))


def _conv_last_wiring() -> tuple[np.ndarray, np.ndarray]:
    levels, _ = L.conv_tree_wiring(_LEAVES, (2, 3, 3), kernel_size=2, padding=0)
    return levels[1]


def _add(name: str, fn: Any, make: Any, **kw: Any) -> None:
    register_case(Case(name, fn, make, differentiable=True, native_autodiff=True, tolerance="float", **kw))


_add("logic.logic_layer[soft,x]", _layer_of_x("soft"), _uniform((2, 3, _IN)))
_add("logic.logic_layer[hard,x]", _layer_of_x("hard"), _uniform((3, _IN)))
_add("logic.logic_layer[soft,W]", op_function(_layer_of_w, name="logic.logic_layer[W]"), _normal((_OUT, 16)),
     vmap=False)
_add("logic.logic_layer[shared,conv]", op_function(_conv_bind, name="logic.logic_layer[conv]"), _uniform((2, 16)))
_add("logic.group_sum", L.group_sum, _uniform((2, 3, 6), k=3, tau=2.0))
_add("logic.or_pool2d", L.or_pool2d, _uniform((2, 2, 5, 4)))
