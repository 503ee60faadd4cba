"""dopt_core.testing: gradcheck passes correct layers, catches planted bugs and says where.

Planted bugs, each beside its correct version: a VJP with a flipped sign, a
transposed Jacobian, a missing 1/ε factor, a wrong noise score (Gumbel's replaced by
``z``), a torch plugin whose backward drops the cotangent's batch dimension, and
hand-written torch ``autograd.Function`` and ``jax.custom_vjp`` functions whose
backward is scaled by ½. Then check_solver, InferOpt's identities, argument errors
and the ``dopt gradcheck`` command in a subprocess.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc
from dopt_core.noise import Gumbel
from dopt_core.op import Bound, Op, op_function

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None


# --- user ops: correct and planted-bug VJPs ------------------------------------------
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


cube_ok = _cube(3.0)  # targets of the CLI test
cube_bug = _cube(3.3)

_A = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 3.0], [0.0, 1.5, -2.0]])


@dataclass(frozen=True)
class _Linear(Op):
    """y = θ Aᵀ (row-wise A θ); ``bug``: "" (right), "sign" or "transpose"."""

    bug: str = ""
    name: ClassVar[str] = "linear"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        a = xp.asarray(_A, dtype=theta.dtype)
        return theta @ a.T, (a,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (a,) = residuals
        grad = g @ a.T if self.bug == "transpose" else g @ a
        return (-grad if self.bug == "sign" else grad,)


@dataclass(frozen=True)
class _TemperedSoftmax(Op):
    """y = softmax(θ/ε); ``missing_inv_eps`` forgets the chain rule's 1/ε."""

    eps: float = 0.5
    missing_inv_eps: bool = False
    name: ClassVar[str] = "tempered_softmax"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        e = xp.exp(theta / self.eps - xp.max(theta / self.eps, axis=-1, keepdims=True))
        y = e / xp.sum(e, axis=-1, keepdims=True)
        return y, (y,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (y,) = residuals
        grad = y * (g - xp.sum(g * y, axis=-1, keepdims=True))
        return (grad if self.missing_inv_eps else grad / self.eps,)


def _fn(op: Op) -> Any:
    @op_function
    def f(theta: Any) -> Bound:
        return Bound(op, (theta,))

    f.__name__ = op.name
    return f


def _theta(shape: tuple[int, ...] = (2, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def test_gradcheck_passes_correct_layers(backend: conformance.Env) -> None:
    theta = backend.asarray(_theta((2, 4)))
    for f, args, kwargs in [
        (_cube(3.0), (), {}),
        (dc.projections.project, ("standardize",), {}),
        (dc.relax.softmax, (), {"tau": 0.7}),
        (dc.solvers.sort, (), {}),
    ]:
        report = dc.testing.gradcheck(f, theta, *args, **kwargs)
        assert report.ok and report.passed, str(report)
        assert report.method == "fd+reference"


def test_gradcheck_catches_wrong_vjp() -> None:
    theta = _theta((3, 3), 1)
    report = dc.testing.gradcheck(_cube(3.3), theta)
    assert not report.ok
    text = str(report)
    assert "FAIL" in text and "at entry" in text
    with pytest.raises(AssertionError, match="gradcheck of cube: FAIL"):
        dc.testing.gradcheck(_cube(2.9), theta, raise_on_failure=True)
    with pytest.raises(AssertionError, match="gradcheck of cube: FAIL"):
        report.assert_ok()
    # large inputs: only the random-direction test runs, and it still catches the error
    big = _theta((20, 10), 2)
    report = dc.testing.gradcheck(_cube(3.3), big, max_elementwise=10)
    assert not report.ok and len(report.results) == 2


@pytest.mark.parametrize("bug", ["sign", "transpose"])
def test_flipped_sign_and_transposed_jacobian(bug: str) -> None:
    theta = _theta((2, 3))
    assert dc.testing.gradcheck(_fn(_Linear()), theta).ok
    report = dc.testing.gradcheck(_fn(_Linear(bug)), theta)
    (per_entry,) = [r for r in report.results if r.method.endswith("per entry")]
    assert not per_entry.passed
    # the report points at the worst entry of J^T g, which is where the bug shows most
    g = np.random.default_rng(0).normal(size=(2, 3))  # gradcheck's first draw with rng=None
    right, wrong = g @ _A, (-(g @ _A) if bug == "sign" else g @ _A.T)
    err = np.abs(right - wrong)
    assert per_entry.worst_index is not None
    assert err[per_entry.worst_index] == pytest.approx(err.max(), rel=1e-6)
    assert per_entry.max_error == pytest.approx(err.max(), rel=1e-6)


def test_missing_inverse_epsilon() -> None:
    theta = _theta((2, 4))
    assert dc.testing.gradcheck(_fn(_TemperedSoftmax(0.5)), theta).ok
    report = dc.testing.gradcheck(_fn(_TemperedSoftmax(0.5, missing_inv_eps=True)), theta)
    assert not report.ok
    (per_entry,) = [r for r in report.results if r.method.endswith("per entry")]
    # the VJP is exactly ε times the right one: relative error 1 - ε
    assert per_entry.max_rel_error == pytest.approx(0.5, rel=0.05)


# --- stochastic layers on a user's solver -------------------------------------------
def _best_pair(t: np.ndarray) -> np.ndarray:
    """The user's oracle: the two adjacent entries of largest sum (a 0/1 vector)."""
    k = int(np.argmax(t[:-1] + t[1:]))
    y = np.zeros_like(t)
    y[k : k + 2] = 1
    return y


def best_pair(t: np.ndarray) -> np.ndarray:  # target of the CLI test
    return _best_pair(t)


def _pairs_set(n: int) -> np.ndarray:
    return np.stack([_best_pair(np.eye(n)[k] + np.eye(n)[k + 1]) for k in range(n - 1)])


@dataclass(frozen=True)
class _WrongGumbel(Gumbel):
    """Gumbel noise whose score is wrong: ``z`` (the Normal score) instead of 1 - e^{-z}."""

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        return z


def test_perturbed_user_solver_passes_and_wrong_score_fails() -> None:
    pairs = dc.solvers.solver(_best_pair)
    theta = _theta((2, 5), 3)
    good = dc.perturbed(pairs, sigma=0.5, num_samples=20, noise="gumbel")
    report = dc.testing.gradcheck(good, theta)
    assert report.ok, str(report)
    assert report.method == "reference+statistical+identities"
    bad = dc.perturbed(pairs, sigma=0.5, num_samples=20, noise=_WrongGumbel())
    report = dc.testing.gradcheck(bad, theta)
    failed = {r.method for r in report.failures}
    assert "Monte-Carlo VJP vs FD of smoothed map (CRN)" in failed
    assert "perturbed identity map: Jacobian = I" in failed
    assert "standard errors" in str(report)


def test_fenchel_young_loss_on_user_solver() -> None:
    pairs = dc.solvers.solver(_best_pair)
    theta = _theta((3, 5), 4)
    y = np.stack([_pairs_set(5)[i] for i in (0, 2, 3)])
    loss = dc.fenchel_young_loss(pairs, sigma=0.5, num_samples=10)
    report = dc.testing.gradcheck(loss, theta, y, method="statistical")
    assert report.ok, str(report)
    (stat,) = report.results
    assert stat.tolerance > 0 and "standard errors" in stat.why


def test_statistical_check_catches_missing_inverse_epsilon(monkeypatch: pytest.MonkeyPatch) -> None:
    """A perturbed estimator without its 1/ε (here: ε = 0.5, so twice too large)."""
    perturbed_module = importlib.import_module("dopt_core.perturbed")
    f = dc.perturbed(dc.solvers.solver(_best_pair), sigma=0.5, num_samples=50, control_variate=True)
    theta = _theta((2, 5), 6)
    assert dc.testing.gradcheck(f, theta, method="statistical").ok
    right = perturbed_module.PerturbedOp.vjp
    monkeypatch.setattr(perturbed_module.PerturbedOp, "vjp",
                        lambda self, res, g, *, xp: (right(self, res, g, xp=xp)[0] * self.p.sigma, None))
    report = dc.testing.gradcheck(f, theta, method="statistical")
    assert not report.ok, str(report)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_stochastic_reference_agreement_with_same_noise() -> None:
    import torch

    f = dc.perturbed(dc.solvers.solver(_best_pair), sigma=0.5, num_samples=8)
    theta = torch.asarray(_theta((2, 5), 6))
    noise = np.random.default_rng(1).normal(size=(8, 2, 5))
    report = dc.testing.gradcheck(f, theta, noise=noise, method="reference")
    assert report.ok, str(report)
    assert [r.method for r in report.results] == ["torch forward vs NumPy reference",
                                                  "torch autodiff vs NumPy reference VJP"]
    assert max(r.max_error for r in report.results) < 1e-12  # same noise: equal up to rounding


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_plugin_dropping_the_cotangent_batch_dimension(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch_backend = dc.backend.registered_backends().get("torch") or dc.backend_for(torch.zeros(1))

    class DropsBatch(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, op: Any, theta: Any) -> Any:
            xp = torch_backend.namespace(theta)
            y, res = op.forward(theta, xp=xp)
            ctx.op, ctx.res, ctx.xp = op, res, xp
            return y

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            g0 = g[:1].expand_as(g)  # the bug: every row gets the first row's cotangent
            return None, ctx.op.vjp(ctx.res, g0, xp=ctx.xp)[0]

    theta = torch.asarray(_theta((3, 4), 7))
    assert dc.testing.gradcheck(dc.relax.softmax, theta).ok
    monkeypatch.setattr(torch_backend, "apply_op", lambda op, *inputs: DropsBatch.apply(op, *inputs))
    report = dc.testing.gradcheck(dc.relax.softmax, theta)
    (bad,) = report.failures
    assert bad.method == "torch autodiff vs NumPy reference VJP"
    assert bad.worst_index is not None and bad.worst_index[0] >= 1  # a row other than the first


# --- hand-written torch and JAX functions ---------------------------------------------
@functools.cache
def _torch_square(scale: float) -> Any:
    import torch

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return scale * 2 * x * g

    return Square


def torch_square_ok(x: Any) -> Any:  # targets of the CLI test
    return _torch_square(1.0).apply(x)


def torch_square_half(x: Any) -> Any:
    return _torch_square(0.5).apply(x)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_autograd_function() -> None:
    import torch

    x = torch.asarray(_theta((2, 3), 8), dtype=torch.float32)
    report = dc.testing.gradcheck(torch_square_ok, x, reference=lambda a: a * a)
    assert report.ok, str(report)
    assert {r.method for r in report.results} >= {"forward vs reference", "torch VJP vs finite differences",
                                                   "torch VJP vs FD of reference", "torch VJP in float32 vs float64"}
    report = dc.testing.gradcheck(torch_square_half, x, reference=lambda a: a * a)
    assert not report.ok
    per_entry = next(r for r in report.failures if r.method.endswith("per entry"))
    assert per_entry.max_rel_error == pytest.approx(0.5, rel=1e-4)  # the backward is half the truth


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_function_of_two_inputs_and_outputs() -> None:
    import torch

    class MulAdd(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any) -> Any:
            ctx.save_for_backward(x, w)
            return x * w, x + w

        @staticmethod
        def backward(ctx: Any, g1: Any, g2: Any) -> Any:
            x, w = ctx.saved_tensors
            return g1 * w + g2, g1 * x  # planted: d(x + w)/dw term g2 missing

    x, w = (torch.asarray(_theta((3,), s)) for s in (9, 10))
    report = dc.testing.gradcheck(MulAdd.apply, x, w)
    failed = {r.method.split(":")[0] for r in report.failures}
    assert failed == {"output 1, input 1"}, str(report)


def _jax_cube(scale: float) -> Any:
    import jax

    @jax.custom_vjp
    def cube(x: Any) -> Any:
        return x**3

    def fwd(x: Any) -> Any:
        return x**3, x

    def bwd(x: Any, g: Any) -> Any:
        return (scale * 3 * x**2 * g,)

    cube.defvjp(fwd, bwd)
    return cube


@pytest.mark.skipif(not HAS_JAX, reason="jax not installed")
def test_jax_custom_vjp() -> None:
    import jax.numpy as jnp

    x = jnp.asarray(_theta((2, 3), 11))
    report = dc.testing.gradcheck(_jax_cube(1.0), x, reference=lambda a: a**3)
    assert report.ok, str(report)
    report = dc.testing.gradcheck(_jax_cube(0.5), x, reference=lambda a: a**3)
    assert {r.method for r in report.failures} == {
        "jax VJP vs finite differences", "jax VJP vs finite differences, per entry", "jax VJP vs FD of reference"}


# --- the user's solver ----------------------------------------------------------------
def test_check_solver_passes_and_catches_bugs() -> None:
    theta = _theta((3, 5), 12)
    feasible = _pairs_set(5)
    is_pair = lambda y: y.sum() == 2 and np.abs(np.diff(y)).sum() <= 2  # noqa: E731
    report = dc.testing.check_solver(dc.solvers.solver(_best_pair), theta, feasible_set=feasible, is_feasible=is_pair)
    assert report.ok, str(report)

    def failed(fn: Any, **kw: Any) -> set[str]:
        return {r.method for r in dc.testing.check_solver(fn, theta, **kw).failures}

    worst = dc.solvers.solver(lambda t: _best_pair(-t))  # a minimiser
    assert failed(worst, feasible_set=feasible) == {"optimal (brute force over feasible_set)"}
    soft = dc.solvers.solver(lambda t: np.exp(t) / np.exp(t).sum())
    assert failed(soft, feasible_set=feasible) >= {"integral (returns vertices)", "in feasible_set"}
    rng = np.random.default_rng(0)
    noisy = dc.solvers.solver(lambda t: _best_pair(t + rng.normal(size=t.shape)))
    assert "deterministic (two calls agree)" in failed(noisy)
    assert failed(lambda t: np.asarray(dc.solvers.argmax(t), dtype=np.float32)) == {"keeps the dtype"}
    assert failed(lambda t: dc.solvers.argmax(t)[0]) == {"keeps the batch shape"}
    assert failed(lambda t: np.ones_like(t), is_feasible=is_pair) == {"feasible (is_feasible)"}
    per_batch = lambda t: np.broadcast_to(_best_pair(t.reshape(-1, t.shape[-1])[0]), t.shape).copy()  # noqa: E731
    assert failed(per_batch) == {"batch-consistent (instances alone)"}


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_check_solver_on_torch_keeps_library() -> None:
    import torch

    theta = torch.asarray(_theta((2, 5), 13), dtype=torch.float32)
    assert dc.testing.check_solver(dc.solvers.solver(_best_pair), theta, feasible_set=_pairs_set(5)).ok
    report = dc.testing.check_solver(lambda t: dc.solvers.argmax(t).numpy(), theta)
    assert [r.method for r in report.failures] == ["output is an array of theta's library"]


# --- InferOpt's identities ------------------------------------------------------------
@pytest.mark.parametrize("noise", ["normal", "gumbel"])
def test_identities_hold(noise: str) -> None:
    report = dc.testing.check_perturbed_identities(noise=noise, sigma=0.5, num_samples=20, rng=1)
    assert report.ok, str(report)
    assert len(report.results) == 2


def test_identities_catch_wrong_score() -> None:
    report = dc.testing.check_perturbed_identities(noise=_WrongGumbel(), sigma=0.5, num_samples=20, rng=1)
    ident = report.results[0]
    assert not ident.passed
    # E[(θ + εZ) z]/ε ≠ I: the diagonal gets Var Z + γ² ≈ 1.98 instead of 1
    assert ident.worst_index is not None and ident.max_error > 0.5


# --- argument errors (issue 11 class 13) ---------------------------------------------
def test_gradcheck_argument_errors() -> None:
    theta = _theta((2, 3))
    with pytest.raises(ValueError, match="num_directions must be >= 1, got 0"):
        dc.testing.gradcheck(cube_ok, theta, num_directions=0)
    with pytest.raises(TypeError, match="num_directions must be an integer"):
        dc.testing.gradcheck(cube_ok, theta, num_directions=1.5)
    with pytest.raises(ValueError, match=r"theta is empty \(shape \(0, 3\)\)"):
        dc.testing.gradcheck(cube_ok, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="method must be one of"):
        dc.testing.gradcheck(cube_ok, theta, method="exact")
    with pytest.raises(ValueError, match="method='statistical' needs a perturbed function"):
        dc.testing.gradcheck(cube_ok, theta, method="statistical")
    with pytest.raises(TypeError, match="needs at least one input"):
        dc.testing.gradcheck(cube_ok)
    with pytest.raises(TypeError, match="no autodiff"):
        dc.testing.gradcheck(lambda t: t * 2, theta)
    with pytest.raises(ValueError, match=r"theta is empty \(shape \(0, 5\)\)"):
        dc.testing.check_solver(dc.solvers.argmax, np.zeros((0, 5)))
    with pytest.raises(ValueError, match="num_batches must be >= 2"):
        dc.testing.check_perturbed_identities(num_batches=1)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_gradcheck_empty_torch_input() -> None:
    import torch

    with pytest.raises(ValueError, match=r"inputs\[0\] is empty \(shape \(0, 4\)\)"):
        dc.testing.gradcheck(torch_square_ok, torch.zeros(0, 4))


# --- the dopt gradcheck command ---------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "dopt_core.cli", "gradcheck", *args], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def test_cli_gradcheck_exit_status() -> None:
    """In a subprocess, as from the shell: exit 0 for the right VJP, 1 for the planted bug."""
    ok = _cli("test_gradcheck:cube_ok", "--shape", "3,4")
    assert ok.returncode == 0 and "gradcheck of cube: PASS" in ok.stdout, ok.stdout + ok.stderr
    bad = _cli("test_gradcheck:cube_bug", "--shape", "3,4")
    assert bad.returncode == 1 and "gradcheck of cube: FAIL" in bad.stdout and "at entry" in bad.stdout


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from dopt_core.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    code = main(["gradcheck", *args])
    return code, capsys.readouterr().out


def test_cli_gradcheck_solver_with_sigma(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _main(monkeypatch, capsys, "test_gradcheck:best_pair", "--shape", "2,5", "--sigma", "0.5",
                      "--num-samples", "20")
    assert code == 0, out
    assert "solver best_pair: PASS" in out and "perturbed(best_pair): PASS" in out
    code, out = _main(monkeypatch, capsys, "test_gradcheck:soft_pair", "--shape", "2,5", "--sigma", "0.5")
    assert code == 1 and "FAIL integral (returns vertices)" in out, out


def soft_pair(t: np.ndarray) -> np.ndarray:  # a "solver" that does not return vertices
    return np.exp(t) / np.exp(t).sum()


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_cli_gradcheck_torch_function(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _main(monkeypatch, capsys, "test_gradcheck:torch_square_ok", "--backend", "torch", "--shape", "2,3")
    assert code == 0, out
    code, out = _main(monkeypatch, capsys, "test_gradcheck:torch_square_half", "--backend", "torch", "--shape", "2,3")
    assert code == 1 and "FAIL torch VJP vs finite differences" in out, out


def test_testing_imports_no_framework() -> None:
    code = "import sys, dopt_core.testing; print(sorted(m for m in ('torch', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_replacements_on_user_solver_checked_against_reference(name: str) -> None:
    """identity / imle / straight_through have a VJP that is not their forward's derivative:
    gradcheck compares the backend's with the NumPy reference only (same noise)."""
    try:
        env = conformance.setup(name)
    except conformance.Skip as exc:
        pytest.skip(str(exc))
    pairs = dc.solvers.solver(_best_pair)
    theta = env.asarray(_theta((2, 5), 14))
    for layer, kw in [
        (dc.identity(pairs), {}),
        (dc.imle(pairs, lam=2.0), {"noise": env.asarray(np.zeros((1, 2, 5)))}),
        (dc.straight_through(pairs, dc.relax.softmax), {}),
    ]:
        report = dc.testing.gradcheck(layer, theta, **kw)
        assert report.ok and report.method == "reference", str(report)
        assert report.results[-1].method.endswith("vs NumPy reference VJP")


def test_docstring_examples_of_testing() -> None:
    import doctest

    result = doctest.testmod(importlib.import_module("dopt_core.testing"), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_function_with_an_integer_output() -> None:
    """``torch.topk``-like layers return (values, indices): the integer output has no
    gradient to check (it used to crash gradcheck with torch's "does not require grad");
    the float output is still checked, and a wrong backward on it still fails."""
    import torch

    def top2(x: Any) -> Any:
        return torch.topk(x, 2)

    x = torch.asarray(_theta((2, 5), 11))
    report = dc.testing.gradcheck(top2, x, reference=lambda a: (np.sort(a)[..., ::-1][..., :2],
                                                                np.argsort(-a)[..., :2]))
    assert report.ok, str(report)
    assert any(r.method.startswith("output 0: torch VJP vs finite differences") for r in report.results)
    assert not any(r.method.startswith("output 1: torch VJP") for r in report.results)
    assert any(r.method == "output 1: forward vs reference" for r in report.results)

    class HalfTop2(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, t: Any) -> Any:
            v, i = torch.topk(t, 2)
            ctx.save_for_backward(i)
            ctx.shape = t.shape
            ctx.mark_non_differentiable(i)
            return v, i

        @staticmethod
        def backward(ctx: Any, g: Any, _gi: Any) -> Any:
            (i,) = ctx.saved_tensors
            return torch.zeros(ctx.shape, dtype=g.dtype).scatter(-1, i, 0.5 * g)  # planted ½

    bad = dc.testing.gradcheck(HalfTop2.apply, x)
    per_entry = next(r for r in bad.failures if r.method.endswith("per entry"))
    assert per_entry.max_rel_error == pytest.approx(0.5, rel=1e-4)
    with pytest.raises(TypeError, match="no floating-point output"):
        dc.testing.gradcheck(lambda t: torch.argsort(t), x)


def test_gradcheck_tolerance_and_size_arguments_are_checked() -> None:
    """max_elementwise=-1 or "8", rtol=-1, atol=nan were accepted and silently
    disabled the per-entry check or made every comparison fail."""
    theta = _theta((2, 3))
    with pytest.raises(ValueError, match="max_elementwise must be >= 0"):
        dc.testing.gradcheck(cube_ok, theta, max_elementwise=-1)
    with pytest.raises(TypeError, match="max_elementwise must be an integer"):
        dc.testing.gradcheck(cube_ok, theta, max_elementwise="8")
    for name in ("rtol", "atol"):
        with pytest.raises(ValueError, match=f"{name} must be"):
            dc.testing.gradcheck(cube_ok, theta, **{name: -1.0})
        with pytest.raises(ValueError, match=f"{name} must be"):
            dc.testing.gradcheck(cube_ok, theta, **{name: float("nan")})
    assert dc.testing.gradcheck(cube_ok, theta, rtol=1e-5, atol=0.0).ok


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_function_computing_in_float32_inside() -> None:
    """A layer that casts to float32 (``t.float()``) gives float32 outputs even on the
    float64 copy of its inputs: its right gradient failed (float64 step 1e-6 on a
    float32 function: rel error 1e-2) under a report saying "in float64". Its finite
    differences now use the float32 step and tolerance; a halved backward still fails."""
    import torch

    x = torch.asarray(_theta((2, 3), 12), dtype=torch.float32)
    report = dc.testing.gradcheck(lambda t: torch.sin(t.float()) * 3, x)
    assert report.ok, str(report)
    fd_lines = [r.why for r in report.results if "finite" in r.method]
    assert fd_lines and all("central differences in float32" in w for w in fd_lines)

    class HalfSin(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, t: Any) -> Any:
            ctx.save_for_backward(t)
            return torch.sin(t.float())

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (t,) = ctx.saved_tensors
            return (0.5 * g * torch.cos(t.float())).to(t.dtype)  # planted ½

    bad = dc.testing.gradcheck(HalfSin.apply, x)
    per_entry = next(r for r in bad.failures if r.method.endswith("per entry"))
    assert per_entry.max_rel_error == pytest.approx(0.5, rel=1e-2)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_fd_allowance_covers_rounding_of_large_outputs() -> None:
    """f = t² + 1e6 has gradient 2t ~ 1 but values ~ 1e6: central differences at step
    1e-6 lose 1e6·2.2e-16/1e-6 ~ 2e-4 to rounding, more than rtol 1e-5, so the right
    gradient failed. The allowance now adds the rounding of the differenced values;
    a backward 1 % off still fails."""
    import torch

    x = torch.asarray(_theta((2, 3), 13))
    assert dc.testing.gradcheck(lambda t: t * t + 1e6, x).ok

    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, t: Any) -> Any:
            ctx.save_for_backward(t)
            return t * t + 1e6

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (t,) = ctx.saved_tensors
            return 1.01 * 2 * t * g  # planted 1 %

    bad = dc.testing.gradcheck(Off.apply, x)
    assert {r.method for r in bad.failures} == {"torch VJP vs finite differences",
                                                "torch VJP vs finite differences, per entry"}


def test_reference_line_on_float64_numpy_says_it_compares_nothing() -> None:
    """On float64 NumPy inputs the "reference" line runs the NumPy reference against
    itself (error 0 whatever the VJP): for a gradient replacement it was the only line
    of a PASS report and did not say so. float32 inputs compare two precisions."""
    theta = _theta((2, 4), 15)
    line = dc.testing.gradcheck(dc.identity(dc.solvers.argmax), theta).results[-1]
    assert line.max_error == 0.0 and "compared with itself" in line.detail
    low = dc.testing.gradcheck(dc.identity(dc.solvers.argmax), theta.astype(np.float32)).results[-1]
    assert "compared with itself" not in low.detail
