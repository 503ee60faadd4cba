"""Host solvers inside frameworks: JAX errors under jit and eagerly, traced problem data."""

from __future__ import annotations

import numpy as np
import pytest

import dopt_core as dc

S = dc.solvers
jax = pytest.importorskip("jax", reason="jax not installed")
jnp = jax.numpy

UNBOUNDED_ROW_1 = np.array([[-1.0, -1.0], [1.0, -1.0], [-1.0, -2.0]])  # y >= 0: row 1 unbounded


def test_jit_gives_nan_rows_for_failing_instances() -> None:
    y = jax.jit(lambda t: S.linear_program(t))(jnp.asarray(UNBOUNDED_ROW_1))
    y = np.asarray(y)
    assert np.isnan(y[1]).all()
    np.testing.assert_array_equal(y[[0, 2]], np.zeros((2, 2)))


def test_eager_jax_error_carries_the_instance() -> None:
    with pytest.raises(Exception, match=r"instance \(1,\).*unbounded") as info:
        S.linear_program(jnp.asarray(UNBOUNDED_ROW_1))
    assert isinstance(info.value, (S.SolverError, RuntimeError))


def test_traced_problem_data_is_rejected_by_name() -> None:
    def f(t, b):  # type: ignore[no-untyped-def]
        return S.linear_program(t, A_ub=np.ones((1, 2)), b_ub=b)

    with pytest.raises(TypeError, match="b_ub must be concrete"):
        jax.jit(f)(jnp.ones(2), jnp.ones(1))


def test_jit_and_vmap_of_host_solver_match_numpy() -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(4, 3, 5, 5))
    ref = S.arborescence(theta)
    np.testing.assert_array_equal(np.asarray(jax.jit(S.arborescence)(jnp.asarray(theta))), ref)
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(jax.vmap(S.arborescence))(jnp.asarray(theta))), ref
    )
    cost = rng.uniform(size=(3, 2, 4, 4))
    for method in ("dijkstra", "device"):
        f = jax.vmap(lambda c, m=method: S.shortest_path_grid(-c, method=m))
        np.testing.assert_array_equal(np.asarray(f(jnp.asarray(cost))), S.shortest_path_grid(-cost))


def test_device_solvers_under_default_jax_config_without_x64() -> None:
    """Users run JAX in 32 bits: no int64 requests (JAX warns and truncates)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import numpy as np, jax, jax.numpy as jnp
        import dopt_core as dc
        S = dc.solvers
        t = jnp.asarray(np.random.default_rng(0).normal(size=(2, 12)), dtype=jnp.float32)
        cases = [
            (lambda x: S.shortest_path_dag(x, grid=(3, 3)), t),
            (lambda x: S.knapsack(x, [1, 2, 3, 4, 5], 6), t[:, :5]),
            (lambda x: S.shortest_path_grid(x, method="device"), -jnp.abs(t[:, :9].reshape(2, 3, 3))),
        ]
        for f, x in cases:
            ref = f(np.asarray(x))
            y = jax.jit(f)(x)  # traces the same code as eager calls, compiles once
            assert y.dtype == jnp.float32 and np.array_equal(np.asarray(y), ref)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
