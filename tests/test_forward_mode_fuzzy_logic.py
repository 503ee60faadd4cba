"""Forward mode and second order of the T-norms and the logic layer (issue 21): the
tangents the conformance checks do not reach (the second T-norm argument, the gate
logits ``W``), against central finite differences in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dopt_core.logic import logic_layer
from dopt_core.relax.fuzzy import tconorm, tnorm

RNG = np.random.default_rng(3)
X = RNG.uniform(0.1, 0.9, size=(3, 4))
IA, IB = np.array([0, 1, 2, 3, 0, 2]), np.array([1, 2, 3, 0, 3, 1])
W0 = RNG.normal(size=(6, 16))
A0, B0 = RNG.uniform(0.1, 0.9, size=5), RNG.uniform(0.1, 0.9, size=5)
H = 1e-6


def _fd(f, z, u):
    return (f(z + H * u) - f(z - H * u)) / (2 * H)


def _layer_w(mode):
    return lambda W: np.asarray(logic_layer(X, IA, IB, W, mode=mode))


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_logic_layer_w_tangent_jax_and_torch(mode):
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    jnp = jax.numpy
    u = RNG.normal(size=W0.shape)
    expected = _fd(_layer_w(mode), W0, u) if mode == "soft" else np.zeros((3, 6))
    xj = jnp.asarray(X)
    _, tj = jax.jvp(lambda W: logic_layer(xj, IA, IB, W, mode=mode), (jnp.asarray(W0),), (jnp.asarray(u),))
    np.testing.assert_allclose(np.asarray(tj), expected, rtol=1e-6, atol=1e-8)
    xt = torch.tensor(X)
    with warnings.catch_warnings():  # torch's own, about torch.jit
        warnings.simplefilter("ignore", DeprecationWarning)
        _, tt = torch.func.jvp(lambda W: logic_layer(xt, IA, IB, W, mode=mode), (torch.tensor(W0),), (torch.tensor(u),))
    np.testing.assert_allclose(tt.numpy(), expected, rtol=1e-6, atol=1e-8)


def test_logic_layer_hessian_in_w_matches_fd_of_gradient():
    torch = pytest.importorskip("torch")
    v = RNG.normal(size=(3, 6))
    u = RNG.normal(size=W0.shape)
    xt, vt = torch.tensor(X), torch.tensor(v)

    def grad(W):
        Wt = torch.tensor(W, requires_grad=True)
        (g,) = torch.autograd.grad((logic_layer(xt, IA, IB, Wt) * vt).sum(), Wt)
        return g.numpy()

    Wt = torch.tensor(W0, requires_grad=True)
    (g,) = torch.autograd.grad((logic_layer(xt, IA, IB, Wt) * vt).sum(), Wt, create_graph=True)
    (hv,) = torch.autograd.grad(g, Wt, grad_outputs=torch.tensor(u))
    np.testing.assert_allclose(hv.numpy(), (grad(W0 + 1e-5 * u) - grad(W0 - 1e-5 * u)) / 2e-5, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("fn", [tnorm, tconorm])
@pytest.mark.parametrize("name", ["probabilistic", "hamacher", "frank", "dombi", "aczel_alsina"])
def test_tnorm_b_tangent_and_hessian_jax(fn, name):
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    ua, ub = RNG.normal(size=5), RNG.normal(size=5)
    _, t = jax.jvp(lambda a, b: fn(name, a, b), (jnp.asarray(A0), jnp.asarray(B0)), (jnp.asarray(ua), jnp.asarray(ub)))
    expected = _fd(lambda z: np.asarray(fn(name, z[0], z[1])), np.stack([A0, B0]), np.stack([ua, ub]))
    np.testing.assert_allclose(np.asarray(t), expected, rtol=1e-6, atol=1e-9)
    # the Hessian of Σ T(a, b) in b (diagonal: elementwise) against FD of the gradient
    hess = jax.hessian(lambda b: fn(name, jnp.asarray(A0), b).sum())(jnp.asarray(B0))

    def grad_b(b):
        return np.asarray(jax.grad(lambda bb: fn(name, jnp.asarray(A0), bb).sum())(jnp.asarray(b)))

    fd = np.stack([(grad_b(B0 + 1e-5 * e) - grad_b(B0 - 1e-5 * e)) / 2e-5 for e in np.eye(5)])
    np.testing.assert_allclose(np.asarray(hess), fd, rtol=1e-5, atol=1e-7)
