"""Test-suite setup: JAX in float64, a deterministic hypothesis profile, backend fixture."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import HealthCheck, settings

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
