"""Test-suite setup: JAX in float64, a deterministic hypothesis profile, backend fixture."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one worker per core (pytest -n auto): each worker's array libraries use one
    # thread, so that the workers do not oversubscribe the cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)

if importlib.util.find_spec("jax") is not None:
    import jax

    jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "dopt",
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("dopt")

import dopt_conformance as conformance  # noqa: E402


@pytest.fixture(params=conformance.BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> conformance.Env:
    """Every backend of the conformance suite; absent ones skip with their reason."""
    try:
        return conformance.setup(request.param)
    except conformance.Skip as exc:
        pytest.skip(str(exc))
