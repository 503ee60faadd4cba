"""Regression tests for the slimmed per-call path (backend lookup, validation, the torch bridge).

The speed itself lives in benchmarks/ (run by hand); these tests pin the behaviour the
fast paths must keep: the same backend for every array type, the same errors, the
residuals reaching the VJP unchanged, the second-derivative guard, functorch support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.op import Bound, Op, op_function

torch = pytest.importorskip("torch")
import dopt_torch  # noqa: E402
from dopt_torch._autograd import AutogradOp  # noqa: E402

SEEN: list[tuple[Any, ...]] = []


@dataclass(frozen=True)
class _ResidualZoo(Op):
    """y = 2·x·w; residuals: the output itself, an input itself, an integer array, a
    fresh float array. The VJP checks them and records what it received."""

    name: ClassVar[str] = "residual_zoo"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, x: Any, w: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        y = 2.0 * x * w
        idx = xp.reshape(xp.arange(x.shape[-1] * 2), (2, -1))
        return y, (y, w, idx, 2.0 * w)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        SEEN.append(tuple(residuals))
        y, w, idx, two_w = residuals
        return (cotangent * two_w, None)


@op_function
def residual_zoo(x: Any, w: Any, /) -> Bound:
    return Bound(_ResidualZoo(), (x, w))


def test_residuals_round_trip_to_the_vjp() -> None:
    SEEN.clear()
    x = torch.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    w = torch.tensor([0.5, 1.0, 4.0])
    y, residuals = AutogradOp.apply(_ResidualZoo(), x, w)
    assert y is not x and y.requires_grad and y.grad_fn is not None
    assert isinstance(residuals, tuple) and len(residuals) == 4
    assert residuals[0] is y and residuals[1] is w
    assert residuals[2].dtype == torch.int64 and not any(r.requires_grad for r in residuals[1:])
    g = torch.tensor([[1.0, 10.0, 100.0]])
    (y * g).sum().backward()
    assert x.grad.tolist() == [[1.0, 20.0, 800.0]]
    (got,) = SEEN
    assert torch.equal(got[0], y.detach()) and torch.equal(got[1], w)
    assert got[2].tolist() == [[0, 1, 2], [3, 4, 5]] and torch.equal(got[3], 2.0 * w)


def test_an_input_returned_as_the_output_gets_a_new_identity() -> None:
    @dataclass(frozen=True)
    class Identity(Op):
        name: ClassVar[str] = "identity"

        def forward(self, x: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
            return x, (x,)

        def vjp(
            self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any
        ) -> tuple[Any | None, ...]:
            assert residuals[0] is not None
            return (3.0 * cotangent,)

    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = dopt_torch.apply_op(Identity(), x)
    assert y is not x and y.grad_fn is not None
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_residuals_are_version_checked_and_seen_by_saved_tensor_hooks() -> None:
    x = torch.tensor([[1.0, -2.0, 3.0]], requires_grad=True)
    w = torch.tensor([0.5, 1.0, 4.0])
    packed: list[Any] = []

    def pack(t: Any) -> Any:
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = residual_zoo(x, w)
    assert len(packed) == 5  # four residuals and the anchor x
    y2 = residual_zoo(x, w)
    y2.mul_(2.0)  # the output is a residual: modifying it in place must not go unnoticed
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y2.sum().backward()
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 2.0, 8.0]]


def test_unused_output_and_no_grad_inputs() -> None:
    x = torch.tensor([[1.0, -2.0, 3.0]])
    w = torch.tensor([0.5, 1.0, 4.0], requires_grad=True)
    y = residual_zoo(x, w)  # only w requires grad, and the VJP gives it None
    assert y.requires_grad
    with torch.no_grad():
        assert not residual_zoo(x, w).requires_grad


@pytest.mark.parametrize("make", ["soft_rank", "soft_sort", "sort"])
def test_double_backward_guard_still_raises(make: str) -> None:
    f = {"soft_rank": dc.relax.soft_rank, "soft_sort": dc.relax.soft_sort, "sort": dc.solvers.sort}[
        make
    ]
    x = torch.tensor([[0.3, -1.0, 2.0, 0.5]], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    (g,) = torch.autograd.grad((f(x) * w).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        g.sum().backward()


@pytest.mark.parametrize("name", ["soft_rank", "soft_sort"])
def test_functorch_grad_takes_torchs_own_apply_and_agrees(name: str) -> None:
    f = getattr(dc.relax, name)
    x = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    w = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def loss(t: Any) -> Any:
        return (f(t, regularization_strength=0.5) * w).sum()

    xr = x.clone().requires_grad_(True)
    loss(xr).backward()
    np.testing.assert_allclose(
        torch.func.grad(loss)(x).numpy(), xr.grad.numpy(), rtol=1e-12, atol=1e-12
    )
