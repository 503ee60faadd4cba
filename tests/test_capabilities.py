"""The capability table (``dopt_conformance.capabilities``) and every public op's conformance cases.

The table is derived from the Ops (``Op.host``, ``Op.nondiff``, the explicit VJP); these
tests check that those declarations are true (a device-resident Op makes no host call,
a host Op makes one, a ``nondiff`` input gets no gradient), that the committed docs page
is the generated one, and that no public op lacks a conformance case.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc
from dopt_conformance import capabilities as cap
from dopt_core.backend import Backend

PAGE = Path(__file__).resolve().parents[1] / "docs" / "supported-backends.md"
CASE_NAMES = list(conformance.CASES)
#: cases whose host use is their own Op's declaration: a host Op, or one holding no
#: user solver (a device Op wrapping a solver does what the solver does)
OWN_HOST_USE = [
    n for n in CASE_NAMES
    if type(op := cap.bound_op(conformance.CASES[n])[0]).host or not cap.wraps_solver(op)
]


class _HostCalled(Exception):
    pass


@pytest.fixture
def host_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the host functions passed to ``Backend.host_call`` (which the NumPy
    adapter inherits); the calls still run."""
    calls: list[str] = []
    original = Backend.host_call

    def spy(self, func, *inputs, shape, dtype):  # type: ignore[no-untyped-def]
        calls.append(getattr(func, "__qualname__", "?"))
        return original(self, func, *inputs, shape=shape, dtype=dtype)

    monkeypatch.setattr(Backend, "host_call", spy)
    return calls


def _run(case: conformance.Case) -> None:
    arrays, kwargs = case.make_inputs(np.random.default_rng(1), np.dtype(case.dtypes[-1]))
    case.fn(*arrays, **kwargs)


# --- the generated page -------------------------------------------------------------------
def test_docs_page_is_generated() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert cap.render_page(text) == text, (
        "docs/supported-backends.md is stale: run "
        "python -m dopt_conformance.capabilities --write docs/supported-backends.md"
    )


def test_check_command_detects_a_stale_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# title\n\n{cap.BEGIN}\n| old | table |\n{cap.END}\n\nprose\n", encoding="utf-8")
    assert cap.main(["--check", str(page)]) == 1
    assert "is stale" in capsys.readouterr().out
    assert cap.main(["--write", str(page)]) == 0
    assert cap.main(["--check", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# title\n") and text.endswith("\n\nprose\n") and "`relax.soft_max`" in text
    with pytest.raises(ValueError, match="no capabilities block"):
        cap.render_page("no markers here")


def test_wrapper_detection() -> None:
    assert {"relax.softmax", "linear_assignment", "solver[host]"} <= set(OWN_HOST_USE)
    assert not {"perturbed[argmax,gumbel]", "imle[argmax]", "solver[device]"} & set(OWN_HOST_USE)


def test_rows_read_the_op_declarations() -> None:
    rows = {r.name: r for r in cap.capabilities()}
    assert rows["solvers.linear_assignment"].host == "yes"
    assert rows["solvers.argmax"].host == "no" and rows["solvers.argmax"].gradient == "zero"
    assert rows["solvers.sort"].gradient == "explicit VJP"
    assert rows["perturbed"].host == "as the solver" and rows["perturbed"].nondiff == ("z",)
    assert rows["fenchel_young_loss"].nondiff == ("y", "z")
    grid = rows["solvers.shortest_path_grid"].host
    assert grid == "yes (shortest_path_grid); no (shortest_path_grid[device])"


# --- the declarations are true ------------------------------------------------------------
@pytest.mark.parametrize("name", OWN_HOST_USE)
def test_host_flag_matches_host_calls(name: str, host_calls: list[str]) -> None:
    """``Op.host`` False: no ``host_call`` at all; True: at least one. (Ops wrapping a
    solver: test_wrapper_host_use_is_the_solvers.)"""
    case = conformance.CASES[name]
    op, _ = cap.bound_op(case)
    _run(case)
    if type(op).host:
        assert host_calls, f"{name}: {type(op).__name__}.host is True but no host_call was made"
    else:
        assert not host_calls, f"{name}: {type(op).__name__} is device-resident but called {host_calls}"


def test_device_resident_op_runs_when_host_calls_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise _HostCalled

    monkeypatch.setattr(Backend, "host_call", refuse)
    theta = np.array([[3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(dc.relax.soft_argmax(theta, beta=1e3), [[1.0, 0.0, 0.0]])
    with pytest.raises(_HostCalled):
        dc.relax.soft_sort(theta)


def test_wrapper_host_use_is_the_solvers(host_calls: list[str]) -> None:
    theta = np.random.default_rng(0).normal(size=(2, 3, 3))
    dc.perturbed(dc.solvers.argmax, num_samples=4)(theta, rng=0)
    assert host_calls == []
    dc.perturbed(dc.solvers.linear_assignment, num_samples=4)(theta, rng=0)
    assert len(host_calls) == 1  # the M perturbed problems go to the host in one call


@pytest.mark.parametrize("name", CASE_NAMES)
def test_nondiff_inputs_get_no_gradient(name: str) -> None:
    case = conformance.CASES[name]
    op, inputs = cap.bound_op(case)
    xp = dc.backend_for(inputs[0]).namespace(inputs[0])
    y, residuals = op.forward(*inputs, xp=xp)
    grads = op.vjp(residuals, xp.ones_like(y), xp=xp)
    assert len(grads) == len(inputs), f"{type(op).__name__}.vjp: one gradient per input"
    for i in type(op).nondiff:
        if i < len(inputs):
            assert grads[i] is None, f"{type(op).__name__} input {i} is nondiff but got a gradient"


@pytest.mark.parametrize("name", CASE_NAMES)
def test_zero_gradient_matches_the_case(name: str) -> None:
    """The table's "zero" (θ gets ``None`` from the VJP) agrees with the case's
    ``differentiable`` flag, which decides whether the VJP check runs."""
    case = conformance.CASES[name]
    op, inputs = cap.bound_op(case)
    assert cap.theta_gradient_is_zero(op, inputs) == (not case.differentiable)


# --- every public op has a conformance case -----------------------------------------------
def test_every_public_op_has_a_case_or_a_reasoned_exemption() -> None:
    ops = cap.public_ops()
    names = {op.name for op in ops}
    # the walk reaches the subpackages and the factories (it cannot silently find nothing)
    assert {"relax.soft_max", "relax.soft_argmax", "solvers.argmax", "projections.project",
            "perturbed", "fenchel_young_loss", "solvers.solver"} <= names
    missing = [op.name for op in ops if op.name not in cap.EXEMPT and not cap.cases_for(op)]
    assert not missing, f"public ops without a conformance case (add one to conformance/cases_*.py): {missing}"
    stale = sorted(set(cap.EXEMPT) - names)
    assert not stale, f"exemptions for names that are not public ops: {stale}"
    for name, reason in cap.EXEMPT.items():
        assert len(reason) > 20, f"exemption of {name} needs a reason"


def test_coverage_check_fails_when_a_case_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in conformance.CASES if n.startswith("relax.soft_argmax")]:
        monkeypatch.delitem(conformance.CASES, name)
    op = next(op for op in cap.public_ops() if op.name == "relax.soft_argmax")
    assert cap.cases_for(op) == []
    with pytest.raises(LookupError, match="relax.soft_argmax has no conformance case"):
        cap.capability(op)


def test_factory_cases_are_built_by_the_factory() -> None:
    """A factory's cases (matched by name) are OpFunctions whose Op the factory builds."""
    ops = {op.name: op for op in cap.public_ops()}
    expected = {"perturbed": {"PerturbedOp", "GumbelArgmaxRaoBlackwellOp"},  # rao_blackwell=True
                "imle": {"IMLEOp"}, "spo_plus_loss": {"SPOPlusOp"}}
    for name, op_types in expected.items():
        cases = cap.cases_for(ops[name])
        assert cases and {type(cap.bound_op(c)[0]).__name__ for c in cases} == op_types
    f = dc.perturbed(functools.partial(dc.solvers.top_k, k=2), num_samples=2)
    assert type(f.bind(np.zeros((2, 4)), rng=0).op).__name__ == "PerturbedOp"
