"""Newton losses (dopt_core.newton): closed forms, the properties of the issue, every route
to the curvature, the hook-up with the relaxed sorts and the perturbed FY loss, errors."""

from __future__ import annotations


import numpy as np
import pytest

import dopt_core as dc
from dopt_core.losses import newton_loss, newton_precondition
from dopt_core.relax import neural_sort, permutation_loss, sorting_network

B, M = 4, 3


def _spd(rng: np.random.Generator, batch: int, m: int) -> np.ndarray:
    a = rng.normal(size=(batch, m, m))
    return a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(m)


def _quadratic(A: np.ndarray, t: np.ndarray):  # type: ignore[no-untyped-def]
    """ℓ_i = ½ (y_i - t_i)ᵀ A_i (y_i - t_i), its gradient, in NumPy."""

    def loss(y):  # type: ignore[no-untyped-def]
        d = y - t
        return 0.5 * np.einsum("...i,...ij,...j->...", d, A, d)

    def grad(y):  # type: ignore[no-untyped-def]
        return np.einsum("...ij,...j->...i", A, y - t)

    return loss, grad


def _smooth(y):  # type: ignore[no-untyped-def]
    """A non-quadratic per-sample loss with a closed-form gradient and Hessian:
    ℓ = logsumexp(y) + ¼ Σ y⁴."""
    p = np.exp(y - y.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    g = p + y**3
    H = np.einsum("...i,ij->...ij", p, np.eye(y.shape[-1])) - p[..., :, None] * p[..., None, :]
    H = H + np.einsum("...i,ij->...ij", 3 * y**2, np.eye(y.shape[-1]))
    return g, H


def _newton_grad(loss, y, **kw):  # type: ignore[no-untyped-def]
    value, vjp = dc.value_and_vjp(newton_loss, loss, y, **kw)
    return value, vjp(1.0)


# --- the properties of the issue ------------------------------------------------------------
@pytest.mark.parametrize("hessian", [None, "given"])
def test_quadratic_with_no_damping_targets_the_minimiser_exactly(hessian: str | None) -> None:
    rng = np.random.default_rng(0)
    A, t, y = _spd(rng, B, M), rng.normal(size=(B, M)), rng.normal(size=(B, M))
    loss, grad = _quadratic(A, t)
    kw = {"hessian": A} if hessian == "given" else {}
    value, g = _newton_grad(loss, y, lam=0.0, gradient=grad, **kw)
    z = y - g  # the target z* = y - ∇ℓ*
    np.testing.assert_allclose(z, t, rtol=0, atol=1e-9)
    np.testing.assert_allclose(value, 0.5 * ((y - t) ** 2).sum(), rtol=1e-9)


def test_gradient_is_the_damped_newton_direction() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(B, M))
    gl, H = _smooth(y)
    for lam in (0.0, 0.3, 5.0):
        _, g = _newton_grad(lambda u: None, y, lam=lam, gradient=lambda u: _smooth(u)[0], hessian=H)
        expected = np.linalg.solve(H + lam * np.eye(M), gl[..., None])[..., 0]
        np.testing.assert_allclose(g, expected, rtol=1e-12, atol=1e-13)
        # the computed (finite-difference) Hessian gives the same direction
        _, g_fd = _newton_grad(lambda u: None, y, lam=lam, gradient=lambda u: _smooth(u)[0])
        np.testing.assert_allclose(g_fd, expected, rtol=1e-7, atol=1e-8)


def test_large_damping_gives_the_gradient_over_lambda() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=(B, M))
    gl, H = _smooth(y)
    errors = []
    for lam in (1e4, 1e6):
        _, g = _newton_grad(lambda u: None, y, lam=lam, gradient=lambda u: _smooth(u)[0], hessian=H)
        err = np.abs(g * lam - gl).max()
        assert err < 2 * np.abs(H).sum(-1).max() * np.abs(gl).max() / lam  # λ(H + λI)^{-1} = I - H/λ + O(λ⁻²)
        errors.append(err)
    assert 0.5e-2 < errors[1] / errors[0] < 2e-2  # the error falls as 1/λ


def test_stationary_points_are_unchanged() -> None:
    rng = np.random.default_rng(3)
    A, t = _spd(rng, B, M), rng.normal(size=(B, M))
    loss, grad = _quadratic(A, t)
    for lam in (0.0, 1.0):
        value, g = _newton_grad(loss, t, lam=lam, gradient=grad)  # ∇ℓ(t) = 0
        assert float(value) == 0.0 and np.all(g == 0.0)
    # elsewhere, with an SPD Hessian, it is a descent direction of ℓ
    y = t + rng.normal(size=(B, M))
    _, g = _newton_grad(loss, y, lam=0.5, gradient=grad)
    assert np.all(np.einsum("bi,bi->b", g, grad(y)) > 0)


def test_fisher_variant_equals_its_definition() -> None:
    # hand-built batch: ℓ_i = ½‖y_i - t_i‖², so ∇ℓ_i = y_i - t_i
    y = np.array([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0], [3.0, 1.0, 0.0]])
    t = np.zeros_like(y)
    grads = y - t
    F = sum(np.outer(g, g) for g in grads) / 3  # F = (1/N) Σ g gᵀ
    lam = 0.25
    _, g = _newton_grad(lambda u: None, y, mode="fisher", lam=lam, gradient=lambda u: u - t)
    np.testing.assert_allclose(g, np.linalg.solve(F + lam * np.eye(3), grads.T).T, rtol=1e-12)
    np.testing.assert_allclose(newton_precondition(grads, F, lam), g, rtol=1e-12)


def test_reductions_and_the_explicit_jvp() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=(2, 3, M))
    grad = lambda u: _smooth(u)[0]  # noqa: E731
    per, vjp_none = dc.value_and_vjp(newton_loss, lambda u: None, y, lam=1.0, gradient=grad, reduction="none")
    total, vjp_sum = dc.value_and_vjp(newton_loss, lambda u: None, y, lam=1.0, gradient=grad)
    mean, vjp_mean = dc.value_and_vjp(newton_loss, lambda u: None, y, lam=1.0, gradient=grad, reduction="mean")
    assert per.shape == (2, 3)
    np.testing.assert_allclose([total, mean], [per.sum(), per.mean()], rtol=1e-13)
    w = rng.normal(size=(2, 3))
    np.testing.assert_allclose(vjp_none(w), w[..., None] * vjp_sum(1.0), rtol=1e-13)
    np.testing.assert_allclose(vjp_mean(1.0), vjp_sum(1.0) / 6, rtol=1e-13)
    u = rng.normal(size=y.shape)
    value, jvp = dc.op.value_and_jvp(newton_loss, lambda v: None, y, lam=1.0, gradient=grad)
    np.testing.assert_allclose(jvp(u), (vjp_sum(1.0) * u).sum(), rtol=1e-12)


# --- cross-backend: NumPy (explicit VJP + finite differences) = torch = JAX (autodiff) ----------
def _soft_max_loss(y):  # type: ignore[no-untyped-def]
    return dc.relax.soft_max(y, beta=2.0)


@pytest.mark.parametrize("mode", ["hessian", "fisher"])
def test_torch_and_jax_agree_with_numpy(mode: str) -> None:
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    rng = np.random.default_rng(5)
    y = rng.normal(size=(B, 5))
    # NumPy: soft_max is an OpFunction (explicit VJP, finite-difference Hessian); its
    # default beta is 10, so bind beta=2 through an OpFunction of y alone
    loss_np = dc.op_function(lambda u: dc.relax.soft_max.bind(u, beta=2.0), name="soft_max_2")
    ref_v, ref_g = _newton_grad(loss_np, y, mode=mode, lam=0.1)
    t = torch.tensor(y, requires_grad=True)
    v = newton_loss(_soft_max_loss, t, mode=mode, lam=0.1)
    v.backward()
    np.testing.assert_allclose(v.item(), ref_v, rtol=1e-7)
    np.testing.assert_allclose(t.grad.numpy(), ref_g, rtol=1e-6, atol=1e-8)
    f = lambda u: newton_loss(_soft_max_loss, u, mode=mode, lam=0.1)  # noqa: E731
    jv, jg = jax.value_and_grad(f)(jnp.asarray(y))
    jjg = jax.jit(jax.grad(f))(jnp.asarray(y))
    np.testing.assert_allclose(float(jv), ref_v, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(jg), ref_g, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(np.asarray(jjg), np.asarray(jg), rtol=1e-12, atol=1e-14)
    # torch's finite-difference route equals its autodiff one
    t2 = torch.tensor(y, requires_grad=True)
    newton_loss(_soft_max_loss, t2, mode=mode, lam=0.1, hessian="finite_differences" if mode == "hessian" else None).backward()
    np.testing.assert_allclose(t2.grad.numpy(), t.grad.numpy(), rtol=1e-6, atol=1e-8)


def test_float32_torch_and_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    y = rng.normal(size=(B, 5)).astype(np.float32)
    loss_np = dc.op_function(lambda u: dc.relax.soft_max.bind(u, beta=2.0), name="soft_max_2")
    value, g = _newton_grad(loss_np, y, lam=0.5)
    assert value.dtype == np.float32 and g.dtype == np.float32
    t = torch.tensor(y, requires_grad=True)
    newton_loss(_soft_max_loss, t, lam=0.5).backward()
    assert t.grad.dtype == torch.float32
    np.testing.assert_allclose(t.grad.numpy(), g, rtol=2e-3, atol=1e-4)  # FD in float32: h ≈ 5e-3


# --- the relaxed sorts and the perturbed FY loss -------------------------------------------------
def _ranking_losses(ranks):  # type: ignore[no-untyped-def]
    def neural(s):  # type: ignore[no-untyped-def]
        P = neural_sort(s, tau=1.0)  # row i: the i-th largest; permutation_loss wants P[item, slot]
        xp = dc.backend_for(P).namespace(P)
        return permutation_loss(xp.matrix_transpose(xp.flip(P, axis=-2)), ranks, reduction="none")

    def network(sigmoid):  # type: ignore[no-untyped-def]
        def f(s):  # type: ignore[no-untyped-def]
            _, P = sorting_network(s, sigmoid=sigmoid, steepness=5.0)
            return permutation_loss(P, ranks, reduction="none")

        return f

    return {"neural_sort": neural, "logistic": network("logistic"), "cauchy": network("cauchy")}


@pytest.mark.parametrize("relaxation", ["neural_sort", "logistic", "cauchy"])
def test_ranking_hessians_are_exact_in_torch_and_jax(relaxation: str) -> None:
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    rng = np.random.default_rng(7)
    n = 5
    s = rng.normal(size=(3, n))
    ranks = np.stack([rng.permutation(n) + 1 for _ in range(3)])
    f = _ranking_losses(torch.tensor(ranks))[relaxation]
    st = torch.tensor(s)
    backend = dc.backend_for(st)
    _, g, H = backend.native_grad_hessian(f, st, hessian=True)
    h = 1e-5
    fd = np.stack([
        ((backend.native_grad_hessian(f, st + h * e, hessian=False)[1]
          - backend.native_grad_hessian(f, st - h * e, hessian=False)[1]) / (2 * h)).numpy()
        for e in torch.eye(n, dtype=torch.float64)
    ], axis=-1)
    np.testing.assert_allclose(H.numpy(), fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(H.numpy(), np.swapaxes(H.numpy(), -1, -2), atol=1e-12)
    jnp = jax.numpy
    fj = _ranking_losses(jnp.asarray(ranks))[relaxation]
    _, gj, Hj = dc.backend_for(jnp.asarray(s)).native_grad_hessian(fj, jnp.asarray(s), hessian=True)
    np.testing.assert_allclose(np.asarray(gj), g.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(np.asarray(Hj), H.numpy(), rtol=1e-9, atol=1e-12)


def test_fenchel_young_hessian_is_the_perturbed_jacobian() -> None:
    """∇²L_ε(θ) = J y_ε(θ) = E[y*(θ + εZ) Zᵀ]/ε over the same samples (score identity)."""
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(8)
    n, m, sigma = 3, 4, 0.5
    theta = gen.normal(size=(n, m))
    Z = gen.normal(size=(2000, n, m))
    y_true = np.eye(m)[[0, 2, 1]]
    fy = dc.fenchel_young_loss(dc.solvers.argmax, sigma=sigma, num_samples=2000, reduction="none")
    t = torch.tensor(theta)
    _, g, H = dc.backend_for(t).native_grad_hessian(
        lambda u: fy(u, torch.tensor(y_true), noise=torch.tensor(Z)), t, hessian=True
    )
    ys = np.asarray(dc.solvers.argmax(theta + sigma * Z))
    np.testing.assert_allclose(g.numpy(), ys.mean(0) - y_true, atol=1e-12)
    J = np.einsum("kbi,kbj->bij", ys, Z) / (2000 * sigma)
    np.testing.assert_allclose(H.numpy(), J, atol=1e-12)
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    _, _, Hj = dc.backend_for(jnp.asarray(theta)).native_grad_hessian(
        lambda u: fy(u, jnp.asarray(y_true), noise=jnp.asarray(Z)), jnp.asarray(theta), hessian=True
    )
    np.testing.assert_allclose(np.asarray(Hj), J, atol=1e-12)
    # and the Newton loss on it trains: its gradient is (J + λI)^{-1}(y_ε - y)
    tt = torch.tensor(theta, requires_grad=True)
    newton_loss(lambda u: fy(u, torch.tensor(y_true), noise=torch.tensor(Z)), tt, lam=1.0).backward()
    expected = np.linalg.solve(H.numpy() + np.eye(m), g.numpy()[..., None])[..., 0]
    np.testing.assert_allclose(tt.grad.numpy(), expected, rtol=1e-10)


def test_squared_loss_on_a_perturbed_optimizer_uses_fisher_or_says_why() -> None:
    torch = pytest.importorskip("torch")
    gen = np.random.default_rng(9)
    Z = torch.tensor(gen.normal(size=(50, 4, 3)))
    target = torch.tensor(np.eye(3)[[0, 1, 2, 0]])
    pert = dc.perturbed(dc.solvers.argmax, sigma=0.5, num_samples=50)
    loss = lambda u: 0.5 * ((pert(u, noise=Z) - target) ** 2).sum(-1)  # noqa: E731
    theta = torch.tensor(gen.normal(size=(4, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match="first-order"):
        newton_loss(loss, theta, lam=1.0)
    newton_loss(loss, theta, mode="fisher", lam=1.0).backward()
    t = theta.detach().clone().requires_grad_(True)
    (gl,) = torch.autograd.grad(loss(t).sum(), t)
    F = gl.T @ gl / 4
    expected = torch.linalg.solve(F + torch.eye(3, dtype=F.dtype), gl.T).T
    np.testing.assert_allclose(theta.grad.numpy(), expected.numpy(), rtol=1e-10)


# --- errors ------------------------------------------------------------------------------------
def test_bad_input_raises_clear_errors() -> None:
    y = np.zeros((3, 2))
    grad = lambda u: u  # noqa: E731
    with pytest.raises(ValueError, match="lam"):
        newton_loss(lambda u: None, y, lam=-1.0, gradient=grad)
    with pytest.raises(ValueError, match=r"hessian must have shape \(2, 2\).*\(3, 2, 2\)"):
        newton_loss(lambda u: None, y, lam=1.0, gradient=grad, hessian=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="mode"):
        newton_loss(lambda u: None, y, mode="newton", gradient=grad)
    with pytest.raises(ValueError, match="hessian= is for mode='hessian'"):
        newton_loss(lambda u: None, y, mode="fisher", hessian=np.eye(2), gradient=grad)
    with pytest.raises(TypeError, match="loss_fn must be a dopt loss"):
        newton_loss(lambda u: (u**2).sum(-1), y)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        newton_loss(np.zeros(3), y)
    with pytest.raises(ValueError, match="singular"):  # Fisher of one sample, no damping
        newton_loss(lambda u: None, np.ones((1, 2)), mode="fisher", lam=0.0, gradient=grad)
    with pytest.raises(ValueError, match="hessian='autodiff' needs torch or JAX"):
        newton_loss(dc.relax.soft_max, y, hessian="autodiff")
    with pytest.raises(ValueError, match="curvature must have shape"):
        newton_precondition(np.ones((3, 2)), np.eye(3), 1.0)


def test_a_loss_that_is_not_per_sample_is_refused() -> None:
    torch = pytest.importorskip("torch")
    y = torch.zeros(3, 2, requires_grad=True)
    with pytest.raises(ValueError, match=r"one loss per sample, shape \(3,\).*got shape \(\)"):
        newton_loss(lambda u: (u**2).sum(), y)
    with pytest.raises(ValueError, match=r"one loss per sample, shape \(3,\).*got shape \(\)"):
        # a dopt loss reduced over the batch (permutation_loss's default "mean")
        newton_loss(lambda u: permutation_loss(neural_sort(u), torch.tensor([[1, 2]] * 3)), y)
