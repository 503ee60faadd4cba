"""The conformance suite under pytest: every check × case × dtype, over the backend fixture."""

from __future__ import annotations

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc
from dopt_core.op import Bound, Op, op_function


_PAIRS = [
    pytest.param(case, check, id=f"{case}-{check}")
    for case in conformance.CASES
    for check in conformance.CHECKS
    if conformance.applies(conformance.CASES[case], check)
]


@pytest.mark.parametrize("dtype", conformance.DTYPES)
@pytest.mark.parametrize(("case", "check"), _PAIRS)
def test_conformance(backend: conformance.Env, case: str, dtype: str, check: str) -> None:
    try:
        with backend.context():
            conformance.CHECKS[check](backend, conformance.CASES[case], dtype)
    except conformance.Skip as exc:
        pytest.skip(str(exc))


# --- the harness itself must be able to fail ------------------------------------------
class _WrongOnNonNumpy(Op):
    """Sorts correctly in NumPy, returns the input unsorted elsewhere; VJP off by 2x."""

    name = "wrong"

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _WrongOnNonNumpy)

    def forward(self, theta, *, xp):  # type: ignore[no-untyped-def]
        y = np.sort(theta, axis=-1) if isinstance(theta, np.ndarray) else theta * 1
        return y, ()

    def vjp(self, residuals, g, *, xp):  # type: ignore[no-untyped-def]
        return (g if isinstance(g, np.ndarray) else 2 * g,)


@op_function
def _wrong(theta):  # type: ignore[no-untyped-def]
    return Bound(_WrongOnNonNumpy(), (theta,))


def test_harness_reports_disagreement() -> None:
    case = conformance.Case(
        "wrong", _wrong, lambda rng, dt: ((rng.normal(size=(3, 5)).astype(dt),), {}), differentiable=True
    )
    env = conformance.setup("torch") if _has("torch") else None
    if env is None:
        pytest.skip("torch not installed")
    with pytest.raises(AssertionError, match="forward"):
        conformance.CHECKS["forward"](env, case, "float64")
    with pytest.raises(AssertionError, match="vjp"):
        conformance.CHECKS["vjp"](env, case, "float64")


def test_runner_table_marks_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    case = conformance.Case("wrong", _wrong, lambda rng, dt: ((rng.normal(size=(3, 5)).astype(dt),), {}))
    monkeypatch.setitem(conformance.CASES, "wrong", case)
    results = conformance.run(backends=["numpy", "array_api_strict"], cases=["wrong", "sort"], checks=["forward"])
    table = conformance.format_table(results)
    failed = {(r.backend, r.case) for r in results if r.status == "fail"}
    assert failed == {("array_api_strict", "wrong")}
    assert sum(r.status == "fail" for r in results) == 2  # float32 and float64
    assert "2 failed" in table and "FAIL array_api_strict wrong" in table


def test_output_on_nondefault_device_is_checked() -> None:
    """array_api_strict's fixture device is 'device1': outputs must stay there."""
    env = conformance.setup("array_api_strict")
    x = env.asarray(np.array([[2.0, 1.0, 3.0]]))
    for f in (dc.solvers.argmax, dc.solvers.rank, dc.solvers.permutation, dc.solvers.sort):
        assert f(x).device == env.device


def _has(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def test_torch_vmap_skips_only_torch_vmap_limitations() -> None:
    """torch_vmap turned every RuntimeError into a skip, so a genuine failure under
    vmap (a shape error of the op) passed the suite unseen; only torch's own
    "cannot vmap this" errors (here a data-dependent ``.item()``) are skips."""
    pytest.importorskip("torch")
    env = conformance.setup("torch")

    def shape_bug(theta):  # the kind of error a broken batch rule raises
        if theta.ndim < 2:
            raise RuntimeError("The size of tensor a (3) must match the size of tensor b (7)")
        return theta * 1.0

    def reads_value(theta):
        return theta * float(theta.sum().item())

    make = lambda rng, dtype: ((rng.normal(size=(2, 3)).astype(dtype),), {})  # noqa: E731
    check = conformance.CHECKS["torch_vmap"]
    with pytest.raises(RuntimeError, match="must match"):
        check(env, conformance.Case("planted_shape_bug", shape_bug, make), "float64")
    with pytest.raises(conformance.Skip, match="torch.func.vmap unsupported"):
        check(env, conformance.Case("planted_item", reads_value, make), "float64")


def test_plugin_refuses_unknown_backend_names() -> None:
    """--dopt-case checked its names but --dopt-backend did not: a typo ("toch") made
    every collected test fail with the same setup error instead of one usage error."""
    from dopt_conformance.pytest_plugin import selected_backends, selected_cases

    class Config:
        def __init__(self, **opts: list[str]) -> None:
            self.opts = opts

        def getoption(self, name: str, default: object = None) -> object:
            return self.opts.get(name, default)

    with pytest.raises(ValueError, match=r"unknown conformance backend\(s\) \['toch'\].*numpy"):
        selected_backends(Config(dopt_backend=["toch"]))
    assert selected_backends(Config(dopt_backend=["numpy"])) == ["numpy"]
    with pytest.raises(ValueError, match="unknown conformance case"):
        selected_cases(Config(dopt_case=["nope"]))
