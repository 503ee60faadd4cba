"""The Op-building kit: op_function's three forms, event_ndim stated once, ZeroGradient."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import dopt_core as dc
from dopt_core._lib._checks import check_linear_output, solver_event_ndim
from dopt_core.op import Bound, Op, OpFunction, ZeroGradient, op_function
from dopt_core.solvers._graphs import ArborescenceOp, LinearAssignmentOp


@dataclass(frozen=True)
class _Scale(Op):
    c: float = 2.0

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return self.c * theta, ()

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return (self.c * g,)


@dataclass(frozen=True)
class _Floor(ZeroGradient, Op):
    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return xp.floor(theta), ()


def test_bare_decorator_keeps_the_binders_name_and_doc() -> None:
    @op_function
    def scale(theta: Any, c: float = 2.0) -> Bound:
        """Multiply by c."""
        return Bound(_Scale(c), (theta,))

    assert isinstance(scale, OpFunction)
    assert (scale.__name__, scale.__doc__, repr(scale)) == ("scale", "Multiply by c.", "<dopt function scale>")
    assert not hasattr(scale, "event_ndim")  # unstated: the readers default to 1
    assert solver_event_ndim(scale) == 1
    np.testing.assert_array_equal(scale(np.array([1.0, -3.0]), 3.0), [3.0, -9.0])
    _, vjp = dc.value_and_vjp(scale, np.array([1.0, -3.0]), 3.0)
    np.testing.assert_array_equal(vjp(np.array([1.0, 2.0])), [3.0, 6.0])


def test_decorator_with_keywords_and_call_form() -> None:
    @op_function(event_ndim=2, name="pairs", doc="Pairs.")
    def f(theta: Any) -> Bound:
        return Bound(_Scale(), (theta,))

    assert (f.__name__, f.__qualname__, f.__doc__, f.event_ndim) == ("pairs", "pairs", "Pairs.", 2)

    def bind(theta: Any) -> Bound:
        return Bound(_Scale(), (theta,))

    g = op_function(bind, name="g(argmax)", doc="From a factory.", event_ndim=3, module="my.mod")
    assert (g.__name__, g.__doc__, g.event_ndim, g.__module__) == ("g(argmax)", "From a factory.", 3, "my.mod")
    # read through functools.partial, as the perturbed estimators do
    assert solver_event_ndim(functools.partial(g)) == 3
    assert solver_event_ndim(functools.partial(g), event_ndim=1) == 1
    np.testing.assert_array_equal(g(np.ones((1, 2, 2))), 2 * np.ones((1, 2, 2)))


def test_op_function_validates_its_keywords() -> None:
    def bind(theta: Any) -> Bound:
        return Bound(_Scale(), (theta,))

    with pytest.raises(ValueError, match="event_ndim must be >= 0, got -1"):
        op_function(bind, event_ndim=-1)
    with pytest.raises(TypeError, match="event_ndim must be an integer, got str"):
        op_function(bind, event_ndim="2")
    with pytest.raises(TypeError, match="binder must be callable, got int"):
        op_function(3)  # type: ignore[call-overload]


def test_solver_event_ndim_is_stated_once() -> None:
    """The public function and the host Op agree, and the estimators read it."""
    S = dc.solvers
    assert S.linear_assignment.event_ndim == LinearAssignmentOp.event_ndim == 2
    assert S.arborescence.event_ndim == ArborescenceOp.event_ndim == 2
    assert S.shortest_path_grid.event_ndim == 2
    for f in (S.argmax, S.top_k, S.sort, S.rank, S.permutation, S.knapsack, S.linear_program):
        assert solver_event_ndim(f) == 1
    p = dc.perturbed(functools.partial(S.linear_assignment, executor=None)).perturbation
    assert p.event_ndim == 2
    lifted = S.solver(lambda t: t, event_ndim=2)
    assert lifted.event_ndim == 2 and solver_event_ndim(lifted) == 2


def test_zero_gradient_mixin() -> None:
    @op_function
    def floor(theta: Any) -> Bound:
        return Bound(_Floor(), (theta,))

    theta = np.array([0.5, 1.7, -2.2])
    assert _Floor().vjp((), theta, xp=np) == (None,)
    y, vjp = dc.value_and_vjp(floor, theta)
    np.testing.assert_array_equal(y, [0.0, 1.0, -3.0])
    np.testing.assert_array_equal(vjp(np.array([1.0, 2.0, 3.0])), np.zeros(3))


@pytest.mark.parametrize(
    "f, args, n",
    [
        (dc.solvers.argmax, (), 3),
        (dc.solvers.top_k, (2,), 3),
        (dc.solvers.rank, (), 3),
        (dc.solvers.knapsack, (np.array([1, 2, 1]), 2), 3),
        (dc.solvers.linear_program, (np.ones((1, 3)), np.ones(1)), 3),
        (dc.solvers.shortest_path_dag, ((2, 2),), 4),
        (dc.solvers.solver(lambda t: t[::-1], host=False), (), 3),
    ],
)
def test_solvers_share_the_zero_vjp(f: OpFunction, args: tuple[Any, ...], n: int) -> None:
    theta = np.random.default_rng(0).normal(size=(2, n))
    op = f.bind(theta, *args).op
    assert type(op).vjp is ZeroGradient.vjp
    _, vjp = dc.value_and_vjp(f, theta, *args)
    np.testing.assert_array_equal(vjp(np.ones_like(f(theta, *args))), np.zeros_like(theta))


def test_check_linear_output() -> None:
    eta = np.zeros((4, 2, 3))
    check_linear_output(np.ones((4, 2, 3)), eta)
    with pytest.raises(ValueError, match=r"theta's shape \(2, 3\); the solver returned \(2, 1\)"):
        check_linear_output(np.ones((4, 2, 1)), eta)
