"""Regression tests for problems found in review: each failed before its fix."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import dopt_core as dc

S = dc.solvers


def test_float32_gumbel_draws_are_finite() -> None:
    """E ~ Exp(1) rounds to 0 about once in 10^7 float32 draws; -log E must stay finite.
    (Seed 0 gave 3 infinities in these 3·10^7 draws before the clamp.)"""
    like = np.zeros(1, np.float32)
    z = dc.noise.GUMBEL.sample(dc.backend_for(like), 0, (30_000_000,), like=like)
    assert np.isfinite(z).all()
    assert z.max() <= -np.log(np.finfo(np.float32).tiny) + 1e-3


def test_second_derivatives_raise_instead_of_lying() -> None:
    # perturbed_max is second-order capable since issue 21 (tests/test_second_order.py);
    # the perturbed optimizer's own Hessian is not estimated, and raises
    F = dc.perturbed(S.argmax, sigma=1.0, num_samples=10, noise="gumbel")
    torch = pytest.importorskip("torch")
    t = torch.tensor([0.1, 0.5, -0.3], requires_grad=True)
    (g,) = torch.autograd.grad((F(t, rng=0) ** 2).sum(), t, create_graph=True)
    with pytest.raises(RuntimeError, match="first-order"):
        g.sum().backward()
    jax = pytest.importorskip("jax")
    x = jax.numpy.array([0.1, 0.5, -0.3])
    with pytest.raises(NotImplementedError, match="first-order"):
        jax.jacrev(jax.jacrev(lambda u: (F(u, rng=jax.random.key(0)) ** 2).sum()))(x)


def test_regret_reads_the_solver_event_ndim() -> None:
    rng = np.random.default_rng(0)
    truth, pred = rng.normal(size=(4, 3, 3)), rng.normal(size=(4, 3, 3))
    r = dc.regret(S.linear_assignment, pred, truth)
    assert r.shape == (4,)
    expected = np.sum(truth * S.linear_assignment(truth), axis=(1, 2)) - np.sum(truth * S.linear_assignment(pred), axis=(1, 2))
    np.testing.assert_allclose(r, expected)
    with pytest.raises(ValueError, match="event_ndim must be >= 1"):
        dc.regret(S.argmax, pred, truth, event_ndim=0)
    with pytest.raises(ValueError, match="event_ndim must be >= 1"):
        dc.spo_plus_loss(S.argmax, event_ndim=-1)


def test_identity_refuses_noise_it_would_ignore() -> None:
    f = dc.identity(S.argmax)
    with pytest.raises(ValueError, match="adds no noise"):
        f(np.zeros((2, 3)), noise=np.zeros(7))
    with pytest.raises(ValueError, match="adds no noise"):
        f(np.zeros((2, 3)), rng=0)


def test_straight_through_draws_relaxation_noise_once() -> None:
    theta = np.random.default_rng(1).normal(size=(3, 5))
    gen = np.random.default_rng(2)
    relax = functools.partial(dc.relax.gumbel_softmax, tau=0.5, rng=gen)
    y, vjp = dc.value_and_vjp(dc.straight_through(S.argmax, relax), theta)
    vjp(np.ones_like(y))
    reference = np.random.default_rng(2)
    reference.gumbel(size=theta.shape)  # exactly one draw of theta's shape
    assert gen.bit_generator.state == reference.bit_generator.state


def test_numpy_scalars_are_accepted_as_parameters() -> None:
    f = dc.perturbed(S.argmax, sigma=np.float32(0.5), num_samples=np.int64(4))
    assert f.perturbation.sigma == 0.5
    dc.interpolation(S.argmax, lam=np.float32(2.0))


def test_hessians_raise_in_torch_and_jax() -> None:
    """Second derivatives through explicit VJPs would treat residuals as constants;
    every route to them raises (double backward, functional.hessian, jacrev∘jacrev)."""
    F = dc.perturbed(S.argmax, sigma=1.0, num_samples=10, noise="gumbel")
    torch = pytest.importorskip("torch")
    a = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    for fn in (lambda t: (S.sort(t) ** 2).sum(), lambda t: (F(t, rng=0) ** 2).sum()):
        with pytest.raises(RuntimeError, match="first-order"):
            torch.autograd.functional.hessian(fn, a)
    x = a.clone().requires_grad_(True)
    w = np.array([1.0, 2.0, 3.0])
    (g,) = torch.autograd.grad((F(x, rng=0) * torch.from_numpy(w)).sum(), x, create_graph=True)  # first order still works
    (g1,) = torch.autograd.grad((F(x, rng=0) * torch.from_numpy(w)).sum(), x)  # the same noise
    np.testing.assert_allclose(g.detach().numpy(), g1.numpy())
    jax = pytest.importorskip("jax")
    u = jax.numpy.array([0.3, -0.2, 0.5])
    with pytest.raises(NotImplementedError, match="first-order"):
        jax.jacrev(jax.grad(lambda t: (F(t, rng=jax.random.key(0)) ** 2).sum()))(u)


def test_backend_lookup_does_not_deadlock_with_a_concurrent_plugin_import() -> None:
    """One thread imports dopt_torch while another resolves a tensor's backend."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("torch")
    code = textwrap.dedent(
        """
        import threading, torch, dopt_core
        out = []
        t1 = threading.Thread(target=lambda: __import__("dopt_torch"))
        t2 = threading.Thread(target=lambda: out.append(dopt_core.backend_for(torch.ones(3)).name))
        t1.start(); t2.start(); t1.join(30); t2.join(30)
        print(out)
        """
    )
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == "['torch']", result.stderr


def test_spanning_tree_tiny_scores_and_device_oracle_shapes() -> None:
    edges = np.array([[0, 1], [1, 2], [0, 2]])
    for scale in (1e-17, 1.0, 1e17):
        y = S.spanning_tree(np.array([1.0, 2.0, 3.0]) * scale, edges, 3)
        np.testing.assert_array_equal(y, [0.0, 1.0, 1.0])
    seen = []

    def fn(block):  # type: ignore[no-untyped-def]
        seen.append(block.shape)
        return np.eye(block.shape[-1])[np.argmax(block, axis=1)]

    lifted = S.solver(fn, host=False, batched=True)
    theta = np.random.default_rng(0).normal(size=(2, 3, 4))
    np.testing.assert_array_equal(lifted(theta), S.argmax(theta))
    np.testing.assert_array_equal(lifted(theta[0, 0]), S.argmax(theta[0, 0]))
    assert seen == [(6, 4), (1, 4)]


def test_sparsemax_large_float32_inputs() -> None:
    """1 + z > z fails in float32 for z >= 2^24: centring on the max keeps the support."""
    for theta, tau in ((np.float32([3, 1, 0.5]), 1e-7), (np.float32([3e7, 1, 0.5]), 1.0)):
        y = dc.relax.sparsemax(theta, tau=tau)
        np.testing.assert_allclose(y, [1.0, 0.0, 0.0])
        _, vjp = dc.value_and_vjp(dc.relax.sparsemax, theta, tau=tau)
        assert np.isfinite(vjp(np.float32([1.0, 2.0, 3.0]))).all()


def test_relaxations_under_default_jax_raise_no_int64_warning() -> None:
    """Run in a fresh process with x64 off (the default); warnings are errors."""
    import subprocess
    import sys
    import textwrap

    pytest.importorskip("jax")
    code = textwrap.dedent(
        """
        import warnings; warnings.simplefilter("error")
        import jax.numpy as jnp, dopt_core as dc
        x = jnp.array([[0.3, -1.0, 2.0, 0.5]])
        dc.relax.sparsemax(x); dc.relax.soft_sort(x); dc.relax.soft_rank(x)
        dc.relax.permutation_loss(dc.relax.network_permutation(x), jnp.array([[2.0, 1.0, 4.0, 3.0]]))
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
