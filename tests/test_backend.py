"""The backend registry and adapters: lookup, thread safety, random draws, host calls."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc
from dopt_core.backend import backend_for, host_call, registered_backends
from dopt_core.op import Bound, Op, op_function

# Exact moments of the standard draws: (mean, variance, fourth central moment)
EULER_GAMMA = 0.5772156649015329
MOMENTS = {
    "normal": (0.0, 1.0, 3.0),
    "uniform": (0.5, 1 / 12, 1 / 80),
    "exponential": (1.0, 1.0, 9.0),
    "gumbel": (EULER_GAMMA, np.pi**2 / 6, (3 + 12 / 5) * (np.pi**2 / 6) ** 2),  # excess kurtosis 12/5
}


def test_numpy_backend_and_errors() -> None:
    b = backend_for(np.zeros(3))
    assert b.name == "numpy" and b is registered_backends()["numpy"]
    with pytest.raises(TypeError, match="theta must be an array"):
        backend_for([1.0, 2.0])
    with pytest.raises(TypeError, match="theta must be an array"):
        dc.solvers.argmax([1.0, 2.0])


def test_registry_is_thread_safe() -> None:
    """Many threads resolving fresh array types at once agree on one adapter each."""
    xps = [conformance.setup("array_api_strict").asarray(np.zeros(2)), np.zeros(2)]
    barrier = threading.Barrier(16)
    seen: list[Any] = []

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(200):
            seen.append((i % 2, backend_for(xps[i % 2])))

    from dopt_core._lib import _registry

    _registry.clear_cache()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_kind = {k: {id(b) for kk, b in seen if kk == k} for k in (0, 1)}
    assert all(len(v) == 1 for v in by_kind.values())
    assert len(seen) == 16 * 200


@pytest.mark.parametrize("kind", sorted(MOMENTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_draw_moments(backend: conformance.Env, kind: str, dtype: str) -> None:
    """Each backend's native draws have the right law (first two moments).

    Probabilistic with a fixed seed: the tolerance is 5 standard errors of the sample
    mean and of the sample variance, computed from the exact moments.
    """
    like = backend.asarray(np.zeros(1, dtype=dtype))
    b = backend_for(like)
    rng = _native_rng(backend, 1234)
    n = 200_000
    z = _draw(b, rng, kind, (n,), like)
    assert str(b.namespace(z).asarray(z).dtype).endswith(dtype)
    assert b.same_device(b.device(z), b.device(like)) if not b.is_traced(z) else True
    a = backend.to_numpy(z).astype(np.float64)
    assert a.shape == (n,)
    mean, var, m4 = MOMENTS[kind]
    se_mean = np.sqrt(var / n)
    se_var = np.sqrt((m4 - var**2) / n)
    assert abs(a.mean() - mean) < 5 * se_mean
    assert abs(a.var() - var) < 5 * se_var


def test_draws_are_reproducible_and_respect_seeds(backend: conformance.Env) -> None:
    like = backend.asarray(np.zeros(1))
    b = backend_for(like)
    for kind in MOMENTS:
        z1 = backend.to_numpy(_draw(b, _native_rng(backend, 7), kind, (5, 4), like))
        z2 = backend.to_numpy(_draw(b, _native_rng(backend, 7), kind, (5, 4), like))
        z3 = backend.to_numpy(_draw(b, _native_rng(backend, 8), kind, (5, 4), like))
        np.testing.assert_array_equal(z1, z2)
        assert not np.array_equal(z1, z3)
        # a NumPy Generator works on every backend and gives the NumPy reference draws
        zn = backend.to_numpy(_draw(b, np.random.default_rng(3), kind, (5, 4), like))
        ref = _draw(dc.backend_for(np.zeros(1)), np.random.default_rng(3), kind, (5, 4), np.zeros(1))
        np.testing.assert_array_equal(zn, ref)
    with pytest.raises(ValueError, match="noise kind"):
        b.draw(0, "cauchy", (2,), like=like)
    with pytest.raises(TypeError, match="rng must be"):
        b.draw("seed", "normal", (2,), like=like)


def _draw(b: Any, rng: Any, kind: str, shape: tuple[int, ...], like: Any) -> Any:
    """A basic draw of the adapter, or the Gumbel law of dopt_core.noise built on them."""
    if kind == "gumbel":
        return dc.noise.GUMBEL.sample(b, rng, shape, like=like)
    return b.draw(rng, kind, shape, like=like)


def _native_rng(env: conformance.Env, seed: int) -> Any:
    if env.autodiff == "jax":
        import jax

        return jax.random.key(seed)
    if env.autodiff == "torch":
        import torch

        return torch.Generator(device=env.device).manual_seed(seed)
    return seed


def test_torch_generator_on_wrong_device() -> None:
    torch = pytest.importorskip("torch")
    b = backend_for(torch.zeros(1))
    like = torch.zeros(1, device="meta")
    with pytest.raises(ValueError, match="rng is a torch.Generator on cpu"):
        b.draw(torch.Generator(), "normal", (3,), like=like)


def test_jax_needs_explicit_rng() -> None:
    jnp = pytest.importorskip("jax.numpy")
    with pytest.raises(ValueError, match="rng is required"):
        backend_for(jnp.zeros(1)).draw(None, "normal", (2,), like=jnp.zeros(1))


# --- host calls -----------------------------------------------------------------------
@dataclass(frozen=True)
class HostArgmaxOp(Op):
    """argmax through NumPy on the host: exercises host_call on every backend."""

    name: ClassVar[str] = "host_argmax"
    host: ClassVar[bool] = True

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        def solve(t: np.ndarray) -> np.ndarray:
            return np.eye(t.shape[-1])[np.argmax(t, axis=-1)]

        return host_call(solve, theta, shape=tuple(theta.shape), dtype=theta.dtype), ()

    def vjp(self, residuals: Any, g: Any, *, xp: Any) -> Any:
        return (None,)


@op_function
def host_argmax(theta: Any) -> Bound:
    return Bound(HostArgmaxOp(), (theta,))


def test_host_call_on_every_backend(backend: conformance.Env) -> None:
    theta = np.random.default_rng(0).normal(size=(4, 3, 6))
    expected = dc.solvers.argmax(theta)
    y = host_argmax(backend.asarray(theta))
    assert backend_for(y) is backend_for(backend.asarray(theta))
    np.testing.assert_array_equal(backend.to_numpy(y), expected)
    if backend.autodiff == "jax":
        import jax

        x = backend.asarray(theta)
        np.testing.assert_array_equal(np.asarray(jax.jit(host_argmax)(x)), expected)
        np.testing.assert_array_equal(np.asarray(jax.vmap(host_argmax)(x)), expected)
        np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(jax.vmap(host_argmax)))(x)), expected)
        g = jax.grad(lambda t: (host_argmax(t) * t).sum())(x)  # VJP of the op is zero: g = y
        np.testing.assert_array_equal(np.asarray(g), expected)


def test_host_call_checks_declared_shape() -> None:
    with pytest.raises(ValueError, match="declared"):
        host_call(lambda a: a[..., :2], np.zeros((3, 4)), shape=(3, 4), dtype=np.float64)


def test_take_nonnegative_equals_take_on_every_backend(backend) -> None:
    """Backend.take (the torch adapter skips array-api-compat's negative-index remap)
    equals NumPy's take along every axis, negative axis numbers included."""
    from dopt_core.backend import take_nonnegative

    x_np = np.arange(2 * 3 * 4, dtype=np.float64).reshape(2, 3, 4)
    x = backend.asarray(x_np)
    xp = dc.backend_for(x).namespace(x)
    for axis, idx in ((0, [1, 0, 1]), (1, [2, 2, 0, 1]), (2, [3, 0]), (-1, [1, 3, 3]), (-2, [0])):
        ind = xp.asarray(np.asarray(idx), device=dc.backend_for(x).device(x))
        got = backend.to_numpy(take_nonnegative(x, ind, axis))
        np.testing.assert_array_equal(got, np.take(x_np, idx, axis=axis))
