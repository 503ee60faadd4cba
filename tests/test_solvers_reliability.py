"""Bad inputs get a right answer or a clear error (issue 11 classes 1, 2, 6, 8, 9, 11, 19).

Every test runs on each backend it concerns (NumPy, PyTorch, JAX; skipped when the
framework is missing). The hang test runs in a subprocess with a timeout, so that a
regression fails instead of hanging the suite.
"""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import dopt_core as dc
from dopt_core._lib._limits import check_grid_size
from dopt_core.solvers import SolverError
from dopt_core.solvers._host import HostSolverOp, StaticArray
from dopt_core.solvers._knapsack import KnapsackOp
from dopt_core.solvers._paths import GridDijkstraOp, _dijkstra_block

S = dc.solvers
BACKENDS = ["numpy", "torch", "jax"]


def _to(backend: str, a: Any) -> Any:
    a = np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
    if backend == "numpy":
        return a
    if backend == "torch":
        torch = pytest.importorskip("torch")
        return torch.asarray(a)
    jax = pytest.importorskip("jax")
    return jax.numpy.asarray(a)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


# --- class 1: nothing hangs ------------------------------------------------------------
_HANG_SCRIPT = r"""
import numpy as np, jax, jax.numpy as jnp
import dopt_core as dc
S = dc.solvers

def allnan(y):
    return bool(np.isnan(np.asarray(y)).all())

# the issue's example, and the same through perturbed with additive noise
assert allnan(jax.jit(S.shortest_path_grid)(jnp.ones((1, 4, 6))))
assert allnan(jax.jit(lambda t: S.shortest_path_grid(t, method="device"))(jnp.ones((1, 2, 3))))
f = dc.perturbed(S.shortest_path_grid, sigma=1.0, num_samples=4)
assert allnan(jax.jit(lambda t: f(t, rng=0))(-0.1 * jnp.ones((3, 3))))

# only the bad map of a batch is NaN; the good one is solved
maps = -(np.arange(12.0).reshape(2, 2, 3) % 5)
bad = maps.copy(); bad[1, 0, 0] = 2.0
for method in ("dijkstra", "device"):
    y = np.asarray(jax.jit(lambda t: S.shortest_path_grid(t, method=method))(jnp.asarray(bad)))
    assert np.array_equal(y[0], S.shortest_path_grid(maps[0], method=method)), method
    assert allnan(y[1]) and not np.isnan(y[0]).any(), method

# NaN instances never reach a kernel: NaN rows, traced or not (check_finite=False)
seen = []
def oracle(t):
    seen.append(np.isnan(t).any())
    return (t == t.max()).astype(float)
cases = {
    "linear_assignment": (S.linear_assignment, np.eye(3)),
    "arborescence": (S.arborescence, np.eye(3)),
    "spanning_tree": (lambda t, **k: S.spanning_tree(t, [(0, 1), (1, 2), (0, 2)], 3, **k), np.ones(3)),
    "linear_program": (lambda t, **k: S.linear_program(t, A_ub=[[1.0, 1.0]], b_ub=[1.0], **k), np.ones(2)),
    "milp": (lambda t, **k: S.milp(t, A_ub=[[1.0, 1.0]], b_ub=[1.0], **k), np.ones(2)),
    "grid": (S.shortest_path_grid, -np.ones((3, 3))),
    "solver(fn)": (S.solver(oracle), np.arange(3.0)),
}
for name, (solve, good) in cases.items():
    batch = np.stack([good, np.full_like(good, np.nan)])
    want = np.asarray(solve(good))
    outs = [solve(batch, check_finite=False)]
    if name in ("grid", "linear_program", "solver(fn)"):
        outs.append(np.asarray(jax.jit(solve)(jnp.asarray(batch))))
    for y in outs:
        assert np.array_equal(y[0], want), name
        assert allnan(y[1]), name
assert not any(seen), "the oracle saw a NaN"

# eagerly, positive scores raise, naming the way out under perturbed
for theta in (np.ones((3, 3)), jnp.ones((3, 3))):
    try:
        S.shortest_path_grid(theta)
        raise AssertionError("no error")
    except ValueError as exc:
        assert "theta must be <= 0" in str(exc)
try:
    f(-0.1 * np.ones((3, 3)), rng=0)
    raise AssertionError("no error")
except ValueError as exc:
    assert "multiplicative=True" in str(exc)
print("NO HANG")
"""


def test_no_input_hangs_any_solver() -> None:
    pytest.importorskip("jax")
    try:
        run = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_HANG_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:  # pragma: no cover - the regression this guards
        pytest.fail("a solver hung (300 s) on a bad input")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "NO HANG" in run.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_instances_give_nan_rows(backend: str) -> None:
    # kernels that fail rather than hang on NaN (the hanging ones are in the subprocess)
    good = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [1.0, 0.0, 2.0]])
    batch = _to(backend, np.stack([good, np.full((3, 3), np.nan), good.T]))
    for solve in (S.linear_assignment, S.arborescence):
        y = _np(solve(batch, check_finite=False))
        np.testing.assert_array_equal(y[0], solve(good))
        np.testing.assert_array_equal(y[2], solve(good.T))
        assert np.isnan(y[1]).all()
    with pytest.raises(ValueError, match="theta contains NaN or infinite values"):
        S.linear_assignment(batch)  # checked by default


def test_dijkstra_kernel_refuses_positive_scores() -> None:
    # the Op never passes them (its Domain); the kernel itself refuses them too
    with pytest.raises(ValueError, match="theta must be <= 0"):
        _dijkstra_block(np.ones((1, 2, 2)), shape=(2, 2))
    with pytest.raises(SolverError, match=r"instance \(1,\) \(flat index 1\): theta must be <= 0"):
        GridDijkstraOp().forward(np.array([[[-1.0, -1.0]], [[-1.0, 1.0]]]), xp=np)


def test_milp_time_limit_bounds_the_search() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(50, 100, 40)
    theta = w + rng.integers(-5, 5, 40).astype(float)
    cap = int(w.sum() // 2)
    with pytest.raises(SolverError, match="time_limit"):
        S.milp(theta, A_ub=[w], b_ub=[cap], bounds=(0, 1), time_limit=1e-3)
    y = S.milp(theta, A_ub=[w], b_ub=[cap], bounds=(0, 1), time_limit=60.0)
    assert theta @ y == theta @ S.knapsack(theta, w, cap)  # the DP's optimum
    with pytest.raises(ValueError, match="time_limit must be a finite positive number"):
        S.linear_program(theta[:2], A_ub=[[1.0, 1.0]], b_ub=[1.0], time_limit=0)


# --- class 2: undeclared event_ndim ----------------------------------------------------
def _square_batch(backend: str) -> tuple[Any, np.ndarray]:
    t = np.random.default_rng(1).normal(size=(4, 3, 3))
    return _to(backend, t), t


@pytest.mark.parametrize("backend", BACKENDS)
def test_matrix_solver_without_event_ndim_is_refused(backend: str) -> None:
    theta, t = _square_batch(backend)
    la = lambda u: S.linear_assignment(u)  # noqa: E731 - the issue's example
    y = _to(backend, S.linear_assignment(t))
    calls = {
        "regret": lambda: dc.regret(la, theta, -theta),
        "normalized_regret": lambda: dc.normalized_regret(la, theta, -theta),
        "perturbed": lambda: dc.perturbed(la, num_samples=3)(theta, rng=0),
        "perturbed_max": lambda: dc.perturbed_max(la, num_samples=3)(theta, rng=0),
        "fenchel_young_loss": lambda: dc.fenchel_young_loss(la, num_samples=3)(theta, y, rng=0),
        "imle": lambda: dc.imle(la)(theta, rng=0),
        "spo_plus_loss": lambda: dc.spo_plus_loss(la)(theta, -theta),
        "identity": lambda: dc.identity(la, projection="mean")(theta),
    }
    for name, call in calls.items():
        if backend != "numpy" and name not in ("regret", "perturbed", "fenchel_young_loss"):
            continue  # the same code on every backend: a subset keeps the test fast
        with pytest.raises(ValueError, match="declares no event_ndim.*pass event_ndim=k"):
            call()
    # declared: the per-instance regret over (n, n) matrices
    r = _np(dc.regret(la, theta, -theta, event_ndim=2))
    expected = np.sum(-t * S.linear_assignment(-t), axis=(1, 2)) - np.sum(-t * S.linear_assignment(t), axis=(1, 2))
    np.testing.assert_allclose(r, expected, rtol=1e-12)


def test_grid_solver_without_event_ndim_is_refused_by_values() -> None:
    # accepts one-row maps, so only the values give it away
    maps = -np.random.default_rng(2).uniform(1, 2, size=(2, 4, 4))
    with pytest.raises(ValueError, match="a row of scores solved alone gave another output"):
        dc.regret(lambda u: S.shortest_path_grid(u), maps, maps)
    assert dc.regret(lambda u: S.shortest_path_grid(u), maps, maps, event_ndim=2).shape == (2,)


def test_row_solver_without_event_ndim_passes_once() -> None:
    calls: list[tuple[int, ...]] = []

    def row_argmax(t: np.ndarray) -> np.ndarray:
        calls.append(t.shape)
        return S.argmax(t)

    rng = np.random.default_rng(3)
    pred, truth = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    f = dc.perturbed(row_argmax, num_samples=6)
    Z = rng.standard_normal((6, 5, 4))
    np.testing.assert_array_equal(f(pred, noise=Z), dc.perturbed(S.argmax, num_samples=6)(pred, noise=Z))
    assert calls == [(6, 5, 4), (1, 4), (1, 4), (1, 4)]  # three single rows, the first time only
    calls.clear()
    f(pred, noise=Z)
    assert calls == [(6, 5, 4)]
    calls.clear()  # the check is kept per solver: regret does not repeat it
    np.testing.assert_array_equal(dc.regret(row_argmax, pred, truth), dc.regret(S.argmax, pred, truth))
    assert calls == [(5, 4), (5, 4)]


def test_undeclared_matrix_solver_refused_under_jit() -> None:
    jax = pytest.importorskip("jax")
    theta = jax.numpy.asarray(np.random.default_rng(4).normal(size=(4, 3, 3)))
    f = dc.perturbed(lambda u: S.linear_assignment(u), num_samples=3)
    with pytest.raises(ValueError, match="declares no event_ndim"):
        jax.jit(lambda t: f(t, rng=0))(theta)


# --- class 6: empty batches ------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_mean_of_an_empty_batch_is_refused(backend: str) -> None:
    e = _to(backend, np.zeros((0, 3)))
    P, r = _to(backend, np.zeros((0, 3, 3))), _to(backend, np.zeros((0, 3)))
    losses = {
        "fenchel_young_loss": lambda red: dc.fenchel_young_loss(S.argmax, reduction=red)(e, e, rng=0),
        "spo_plus_loss": lambda red: dc.spo_plus_loss(S.argmax, reduction=red)(e, e),
        "permutation_loss": lambda red: dc.relax.permutation_loss(P, r, reduction=red),
    }
    for name, loss in losses.items():
        with pytest.raises(ValueError, match="reduction='mean' of an empty batch"):
            loss("mean")
        assert float(_np(loss("sum"))) == 0.0, name
        assert _np(loss("none")).shape == (0,), name
    with pytest.raises(ValueError, match="empty batch"):
        dc.normalized_regret(S.argmax, e, e)


# --- class 8: memory that grows with a value -------------------------------------------
def test_knapsack_capacity_is_reduced_without_changing_the_result() -> None:
    rng = np.random.default_rng(5)
    for _ in range(60):
        n = int(rng.integers(1, 7))
        g = int(rng.integers(1, 5))
        w = rng.integers(0, 5, n) * g
        cap = int(rng.integers(0, 3 * g * n + 2))
        theta = rng.integers(-2, 4, size=(3, n)).astype(float)  # ties are common
        unreduced, _ = KnapsackOp(StaticArray(w), cap).forward(theta, xp=np)
        np.testing.assert_array_equal(S.knapsack(theta, w, cap), unreduced)  # same ties
        for i in range(3):
            best = max(
                theta[i, list(s)].sum()
                for k in range(n + 1)
                for s in itertools.combinations(range(n), k)
                if w[list(s)].sum() <= cap
            )
            assert theta[i] @ unreduced[i] == best
    # a huge capacity with small weights: every positive item, at once
    np.testing.assert_array_equal(S.knapsack(np.array([1.0, -1.0, 2.0]), [3, 4, 5], 10**9), [1.0, 0.0, 1.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_sized_tables_are_refused(backend: str) -> None:
    theta = _to(backend, np.ones(3))
    with pytest.raises(ValueError, match=r"capacity: .* more than the 33,554,432 allowed.*milp"):
        S.knapsack(theta, [10**9, 10**9 + 1, 3], 10**9)
    with pytest.raises(ValueError, match=r"grid: a 4096×4096 grid .* more than the 4,194,304"):
        S.grid_dag_arcs((4096, 4096))
    with pytest.raises(ValueError, match=r"grid: a 4096×4096 grid"):
        dc.data.shortest_path(2, 2, grid=(4096, 4096))
    check_grid_size(2048, 2048)  # at the bound: accepted
    assert S.grid_dag_arcs((256, 128)).shape == (256 * 127 + 255 * 128, 2)


# --- class 9: torch meta tensors -------------------------------------------------------
def test_every_host_op_propagates_shapes_on_meta() -> None:
    torch = pytest.importorskip("torch")
    edges = [(0, 1), (1, 2), (0, 2)]
    ops = {
        "linear_assignment": (S.linear_assignment, (2, 3, 3)),
        "arborescence": (S.arborescence, (2, 3, 3)),
        "spanning_tree": (lambda t: S.spanning_tree(t, edges, 3), (2, 3)),
        "linear_program": (lambda t: S.linear_program(t, A_ub=[[1.0, 1.0]], b_ub=[1.0]), (2, 2)),
        "milp": (lambda t: S.milp(t, A_ub=[[1.0, 1.0]], b_ub=[1.0]), (2, 2)),
        "shortest_path_grid": (S.shortest_path_grid, (2, 3, 3)),
        "shortest_path_grid[device]": (lambda t: S.shortest_path_grid(t, method="device"), (2, 3, 3)),
        "knapsack": (lambda t: S.knapsack(t, [1, 2, 3], 3), (2, 3)),
        "solver(fn)": (S.solver(lambda t: t[:2] * 0, output_shape=(2,)), (4, 3)),
        "soft_rank": (dc.relax.soft_rank, (2, 5)),
        "soft_sort": (dc.relax.soft_sort, (2, 5)),
        "perturbed(linear_assignment)": (lambda t: dc.perturbed(S.linear_assignment, num_samples=3)(t, rng=0), (2, 3, 3)),
    }
    for name, (op, shape) in ops.items():
        for dtype in (torch.float32, torch.float64):
            cpu = op(-torch.rand(shape, dtype=dtype))
            meta = op(torch.empty(shape, dtype=dtype, device="meta"))
            assert meta.device.type == "meta", name
            assert (meta.shape, meta.dtype) == (cpu.shape, cpu.dtype), name
    t = torch.empty(2, 3, 3, device="meta", requires_grad=True)
    dc.perturbed(S.linear_assignment, num_samples=3)(t, rng=0).sum().backward()
    assert t.grad is not None and t.grad.shape == t.shape and t.grad.device.type == "meta"
    with pytest.raises(TypeError, match="normalized_regret returns a Python float"):
        dc.normalized_regret(S.argmax, torch.empty(2, 3, device="meta"), torch.empty(2, 3, device="meta"))


# --- class 11: eager JAX host failures raise the library's errors ----------------------
def _boom(t: np.ndarray) -> np.ndarray:
    raise ZeroDivisionError("boom")


def test_eager_jax_host_failures_raise_solver_error() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    with pytest.raises(SolverError, match=r"instance \(1,\) \(flat index 1\).*unbounded"):
        S.linear_program(jnp.array([[-1.0, -1.0], [1.0, -1.0]]))
    with pytest.raises(SolverError, match="ZeroDivisionError: boom"):
        S.solver(_boom)(jnp.ones(3))
    with pytest.raises(SolverError, match=r"returned shape \(2,\), expected \(3,\)"):
        S.solver(lambda t: np.zeros(2))(jnp.ones(3))
    y = S.linear_assignment(jnp.eye(3)[::-1])
    assert isinstance(y, jax.Array) and y.devices() == jnp.eye(3).devices()
    np.testing.assert_array_equal(np.asarray(y), np.eye(3)[::-1])
    # traced: the failing rows are NaN, the others solved
    y = np.asarray(jax.jit(S.linear_program)(jnp.array([[-1.0, -1.0], [1.0, -1.0]])))
    np.testing.assert_array_equal(y[0], [0.0, 0.0])
    assert np.isnan(y[1]).all()


# --- class 19: errors name the user's shapes -------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_under_perturbed_name_thetas_shape(backend: str) -> None:
    theta = _to(backend, np.zeros((3, 5)))
    makers = {
        "perturbed": lambda s: dc.perturbed(s, num_samples=10, event_ndim=2)(theta, rng=0),
        "perturbed_max": lambda s: dc.perturbed_max(s, num_samples=10, event_ndim=2)(theta, rng=0),
        "fenchel_young_loss": lambda s: dc.fenchel_young_loss(s, num_samples=10, event_ndim=2)(theta, theta, rng=0),
        "imle": lambda s: dc.imle(s, num_samples=10, event_ndim=2)(theta, rng=0),
    }
    for name, make in makers.items():
        if backend != "numpy" and name not in ("perturbed", "fenchel_young_loss"):
            continue  # the same code on every backend: a subset keeps the test fast
        with pytest.raises(ValueError, match=r"square on its last two axes \(\.\.\., n, n\), got shape \(3, 5\)") as err:
            make(S.linear_assignment)
        assert "(10, 3, 5)" not in str(err.value) and "sample axis" not in str(err.value), name
        with pytest.raises(ValueError, match=r"n = 5 items \(theta's last axis\), got \(2,\)"):
            make(functools.partial(S.knapsack, weights=[1, 2], capacity=2))
        # a solver dopt cannot validate again: a note says which axis is the samples'
        with pytest.raises(ValueError, match=r"theta's shape \(3, 5\) with a leading sample axis of length 10"):
            make(lambda u: S.linear_assignment(u))


def test_solver_errors_under_perturbed_count_the_sample_axis() -> None:
    theta = np.array([[1.0, 1.0], [-1.0, -1.0]])
    f = dc.perturbed(S.linear_program, sigma=0.01, num_samples=4, chunk_size=2)
    with pytest.raises(SolverError, match=r"instance \(0, 0\).*unbounded.*leading sample axis of length 4 \(samples 0\.\.1"):
        f(theta, rng=0)
    with pytest.raises(ValueError, match=r"keep the batch axes \(2,\) of theta \(shape \(2, 3\).*got an output of shape \(3,\)"):
        dc.perturbed(lambda u: u[:, 0], event_ndim=1, num_samples=3)(np.zeros((2, 3)), rng=0)
    with pytest.raises(ValueError, match=r"imle needs a solver whose output has theta's shape \(4, 3\), got \(4, 2\)"):
        dc.imle(lambda u: u[..., :2], event_ndim=1)(np.ones((4, 3)), rng=0)


# --- issue 10 point 7: the grid op is a HostSolverOp -----------------------------------
def test_grid_dijkstra_uses_the_shared_host_forward() -> None:
    assert issubclass(GridDijkstraOp, HostSolverOp)
    assert GridDijkstraOp.forward is HostSolverOp.forward
    kernel = GridDijkstraOp().kernel((3, 4))
    assert kernel.keywords == {"shape": (3, 4)}
    maps = -np.random.default_rng(6).integers(0, 5, size=(3, 3, 4)).astype(float)
    np.testing.assert_array_equal(kernel(maps), S.shortest_path_grid(maps, method="device"))
