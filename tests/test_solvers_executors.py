"""Scale-out of host solvers over executors: identical results, failures named."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
from dopt_conformance.cases_solvers import oracle_dies_on_7, oracle_fails_on_7

import dopt_core as dc

S = dc.solvers
# spawn, not fork: JAX and torch run threads in this process, and forking them can deadlock
SPAWN = multiprocessing.get_context("spawn")


def _instances() -> dict[str, tuple]:
    rng = np.random.default_rng(0)
    edges = [(u, v) for u in range(8) for v in range(u + 1, 8) if (u + v) % 3]
    return {
        "linear_assignment": (S.linear_assignment, (rng.normal(size=(3, 5, 6, 6)),), {}),
        "shortest_path_grid": (S.shortest_path_grid, (-rng.uniform(size=(13, 6, 7)),), {}),
        "spanning_tree": (S.spanning_tree, (rng.normal(size=(2, 9, len(edges))), edges, 8), {}),
        "arborescence": (S.arborescence, (rng.normal(size=(11, 5, 5)),), {}),
        "linear_program": (
            S.linear_program,
            (rng.normal(size=(10, 4)),),
            {"A_ub": np.ones((1, 4)), "b_ub": [2.0]},
        ),
        "solver": (S.solver(oracle_fails_on_7), (rng.normal(size=(17, 3)),), {}),
    }


@pytest.fixture(scope="module")
def pool():  # type: ignore[no-untyped-def]
    with ProcessPoolExecutor(2, mp_context=SPAWN) as ex:
        yield ex


@pytest.mark.parametrize("name", list(_instances()))
def test_process_pool_gives_serial_results(pool: ProcessPoolExecutor, name: str) -> None:
    fn, args, kwargs = _instances()[name]
    serial = fn(*args, **kwargs)
    np.testing.assert_array_equal(fn(*args, executor=pool, **kwargs), serial)


def test_thread_pool_and_small_chunks() -> None:
    fn, args, kwargs = _instances()["arborescence"]
    with ThreadPoolExecutor(3) as ex:
        np.testing.assert_array_equal(fn(*args, executor=ex, **kwargs), fn(*args, **kwargs))


def test_worker_exception_names_the_instance(pool: ProcessPoolExecutor) -> None:
    f = S.solver(oracle_fails_on_7)
    theta = np.zeros((4, 5, 2))
    theta[2, 3, 0] = 7.0  # flat index 13
    with pytest.raises(
        S.SolverError, match=r"instance \(2, 3\) \(flat index 13\).*ArithmeticError: bad instance"
    ):
        f(theta, executor=pool)


def test_dead_worker_is_an_error_not_a_partial_result() -> None:
    f = S.solver(oracle_dies_on_7)
    theta = np.zeros((6, 2))
    theta[4, 0] = 7.0
    with ProcessPoolExecutor(2, mp_context=SPAWN) as ex:
        with pytest.raises(
            S.SolverError, match=r"executor failed on the chunk from instance \(\d+,\)"
        ):
            f(theta, executor=ex)


def test_dask_local_cluster_on_loopback() -> None:
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        ex = client.get_executor()
        for name in ("shortest_path_grid", "linear_assignment", "spanning_tree"):
            fn, args, kwargs = _instances()[name]
            np.testing.assert_array_equal(fn(*args, executor=ex, **kwargs), fn(*args, **kwargs))
        f = S.solver(oracle_fails_on_7)
        theta = np.zeros((9, 2))
        theta[8, 0] = 7.0
        with pytest.raises(S.SolverError, match=r"instance \(8,\)"):
            f(theta, executor=ex)
