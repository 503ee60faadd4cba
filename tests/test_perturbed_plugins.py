"""Perturbed layers in torch and JAX: autograd, modules, generators, jit/vmap/grad."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import dopt_core as dc

S = dc.solvers


def test_torch_fy_backward_and_modules() -> None:
    torch = pytest.importorskip("torch")
    import dopt_torch as dt

    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    y = dt.solvers.argmax(torch.randn(4, 5, dtype=torch.float64, generator=gen))
    Z = torch.randn(16, 4, 5, dtype=torch.float64, generator=gen)
    loss_fn = dt.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=16)
    loss = loss_fn(theta, y, noise=Z)
    loss.backward()
    y_eps = dt.perturbed(S.argmax, sigma=0.5, num_samples=16)(theta.detach(), noise=Z)
    torch.testing.assert_close(theta.grad, (y_eps - y) / 4)
    # the NumPy reference gives the same loss with the same noise
    ref = dc.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=16)(theta.detach().numpy(), y.numpy(), noise=Z.numpy())
    assert abs(loss.item() - float(ref)) < 1e-12

    module = dt.nn.FenchelYoungLoss(S.argmax, sigma=0.5, num_samples=16, seed=3)
    a = module(theta, y)
    b = module(theta, y)  # the module's generator advances: fresh noise each step
    again = dt.nn.FenchelYoungLoss(S.argmax, sigma=0.5, num_samples=16, seed=3)(theta, y)
    assert a.item() == again.item() and a.item() != b.item()
    layer = dt.nn.PerturbedOptimizer(functools.partial(S.top_k, k=2), sigma=0.5, num_samples=32, seed=0)
    out = layer(theta)
    assert out.shape == (4, 5) and torch.allclose(out.sum(-1), torch.full((4,), 2.0, dtype=torch.float64))
    out.sum().backward()  # differentiable through the module


def test_torch_generator_draws_on_device() -> None:
    torch = pytest.importorskip("torch")
    f = dc.perturbed(S.argmax, sigma=1.0, num_samples=8)
    theta = torch.zeros(3, 4)
    y1 = f(theta, rng=torch.Generator().manual_seed(5))
    y2 = f(theta, rng=torch.Generator().manual_seed(5))
    assert torch.equal(y1, y2) and y1.dtype == torch.float32


def test_jax_jit_grad_vmap() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax as dj

    key = jax.random.key(0)
    theta = jax.random.normal(jax.random.key(1), (4, 5))
    y = dj.solvers.argmax(jax.random.normal(jax.random.key(2), (4, 5)))
    f = dj.perturbed(S.argmax, sigma=0.5, num_samples=32, noise="gumbel")
    np.testing.assert_allclose(np.asarray(jax.jit(f)(theta, rng=key)), np.asarray(f(theta, rng=key)))
    loss = dj.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=32, noise="gumbel")
    g = jax.jit(jax.grad(lambda t: loss(t, y, rng=key)))(theta)
    np.testing.assert_allclose(np.asarray(g), np.asarray((f(theta, rng=key) - y) / 4), atol=1e-12)
    # vmap over instances with per-instance keys
    keys = jax.random.split(key, 4)
    per = jax.vmap(lambda t, k: f(t, rng=k))(theta, keys)
    assert per.shape == (4, 5)
    np.testing.assert_allclose(np.asarray(per.sum(-1)), 1.0, atol=1e-12)
    # explicit noise: the JAX result equals the NumPy reference
    Z = np.random.default_rng(0).gumbel(size=(32, 4, 5))
    ref = dc.perturbed(S.argmax, sigma=0.5, num_samples=32, noise="gumbel")(np.asarray(theta), noise=Z)
    np.testing.assert_allclose(np.asarray(f(theta, noise=jnp.asarray(Z))), ref, atol=1e-12)


def test_jax_training_step_with_optax_style_update() -> None:
    """Plain gradient descent on the FY loss (what optax.sgd does) lowers it."""
    jax = pytest.importorskip("jax")
    import dopt_jax as dj

    theta = jax.random.normal(jax.random.key(3), (8, 6))
    y = dj.solvers.argmax(jax.random.normal(jax.random.key(4), (8, 6)))
    loss = dj.fenchel_young_loss(S.argmax, sigma=0.5, num_samples=64)
    key = jax.random.key(5)
    value_and_grad = jax.jit(jax.value_and_grad(lambda t: loss(t, y, rng=key)))
    v0, g = value_and_grad(theta)
    v1, _ = value_and_grad(theta - 1e-3 * g)
    assert float(v1) < float(v0)
