"""dopt_core.testing.gradcheck: passes correct layers, catches wrong VJPs, reports clearly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc
from dopt_core.op import Bound, Op, op_function


@dataclass(frozen=True)
class _Cube(Op):
    """y = θ³ with a VJP that is right (factor 3) or wrong (factor ``k``)."""

    k: float = 3.0
    name: ClassVar[str] = "cube"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return theta**3, (theta,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (theta,) = residuals
        return (self.k * theta**2 * g,)


def _cube(k: float) -> Any:
    @op_function
    def cube(theta: Any) -> Bound:
        return Bound(_Cube(k), (theta,))

    return cube


def test_gradcheck_passes_correct_layers(backend: conformance.Env) -> None:
    theta = backend.asarray(np.random.default_rng(0).normal(size=(2, 4)))
    for f, args, kwargs in [
        (_cube(3.0), (), {}),
        (dc.projections.project, ("standardize",), {}),
        (dc.relax.softmax, (), {"tau": 0.7}),
        (dc.solvers.sort, (), {}),
    ]:
        report = dc.testing.gradcheck(f, theta, *args, **kwargs)
        assert report.passed, str(report)


def test_gradcheck_catches_wrong_vjp() -> None:
    theta = np.random.default_rng(1).normal(size=(3, 3))
    report = dc.testing.gradcheck(_cube(3.3), theta)
    assert not report.passed
    text = str(report)
    assert "FAIL" in text and "worst entry" in text
    with pytest.raises(AssertionError, match="gradcheck of cube: FAIL"):
        dc.testing.gradcheck(_cube(2.9), theta, raise_on_failure=True)
    # large inputs: only the random-direction test runs, and it still catches the error
    big = np.random.default_rng(2).normal(size=(20, 10))
    report = dc.testing.gradcheck(_cube(3.3), big, max_elementwise=10)
    assert not report.passed and len(report.results) == 2
