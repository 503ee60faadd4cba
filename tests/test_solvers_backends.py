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
