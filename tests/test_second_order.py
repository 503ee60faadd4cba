"""Second order (issue 21): jax.hessian and torch's double backward against finite
differences of the explicit gradient (float64) for the smooth relaxations; the perturbed
maximum's Hessian by the score identity against the Gumbel closed form; first-order ops
still raise."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import dopt_core as dc

R = dc.relax
S = dc.solvers

_B = np.array([0.2, -0.4, 1.0, 0.0, 0.7])
_G = np.random.default_rng(8).gumbel(size=5)


def _like(t, a: np.ndarray):  # a NumPy constant in θ's library
    b = dc.backend_for(t)
    return a if b.name == "numpy" else b.from_numpy(a, like=t)


SMOOTH = {
    "softmax": functools.partial(R.softmax, tau=0.7),
    "gumbel_softmax": lambda t: R.gumbel_softmax(t, tau=0.5, noise=_like(t, _G)),
    "soft_max_vector": functools.partial(R.soft_max, beta=2.0),
    "soft_argmin": functools.partial(R.soft_argmin, beta=1.5),
    "soft_min_pair": lambda t: R.soft_min(t, _like(t, _B), beta=2.0, distribution="gaussian"),
    "soft_compare": lambda t: R.soft_compare(t, _like(t, _B), beta=3.0, distribution="cauchy"),
    "standardize": functools.partial(dc.projections.project, projection="standardize"),
    "norm": functools.partial(dc.projections.project, projection="norm"),
    "network_sort_odd_even": functools.partial(R.network_sort, network="odd_even", steepness=3.0),
    "network_sort_bitonic": functools.partial(R.network_sort, network="bitonic", steepness=2.0, sigmoid="cauchy"),
}
_W = np.array([0.3, -1.2, 0.8, 2.0, -0.5])


def _weights(name: str) -> np.ndarray:
    return np.array(1.3) if name == "soft_max_vector" else _W  # a scalar output there


def _fd_hessian(name: str, t: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Central differences of the loss's explicit gradient (value_and_vjp, NumPy)."""

    def grad(x: np.ndarray) -> np.ndarray:
        f = SMOOTH[name]
        y = f(x)
        v = 2 * y * _weights(name)  # d loss / d y
        if isinstance(f, functools.partial):
            return dc.value_and_vjp(f.func, x, *f.args, **f.keywords)[1](v)
        return dc.testing.finite_difference_vjp(f, x, v)

    cols = [(grad(t + h * e) - grad(t - h * e)) / (2 * h) for e in np.eye(t.size)]
    return np.stack(cols, axis=1)


def _theta() -> np.ndarray:
    return np.array([0.4, -0.3, 1.1, 0.05, -0.8])


@pytest.mark.parametrize("name", list(SMOOTH))
def test_jax_hessian_matches_finite_differences_of_the_gradient(name: str) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax  # noqa: F401

    if not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    w = jnp.asarray(_weights(name))
    H = jax.jit(jax.hessian(lambda t: jnp.sum(SMOOTH[name](t) ** 2 * w)))(jnp.asarray(_theta()))
    expected = _fd_hessian(name, _theta())
    np.testing.assert_allclose(np.asarray(H), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(H), np.asarray(H).T, atol=1e-12)


@pytest.mark.parametrize("name", list(SMOOTH))
def test_torch_double_backward_matches_finite_differences_of_the_gradient(name: str) -> None:
    torch = pytest.importorskip("torch")
    import dopt_torch  # noqa: F401

    w = torch.from_numpy(_weights(name))
    fn = SMOOTH[name]
    H = torch.autograd.functional.hessian(lambda t: torch.sum(fn(t) ** 2 * w), torch.from_numpy(_theta()))
    np.testing.assert_allclose(H.numpy(), _fd_hessian(name, _theta()), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------
# the perturbed maximum: ∇²F_ε by the score identity, Gumbel argmax closed form
# ---------------------------------------------------------------------------------
SIGMA, M = 0.8, 4000


def _gumbel_case() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """θ, the noise, the estimator computed by hand and its MC standard errors."""
    theta = np.array([0.5, -0.2, 0.9, 0.1])
    z = np.random.default_rng(11).gumbel(size=(M, 4))
    ys = np.eye(4)[np.argmax(theta + SIGMA * z, axis=-1)]
    score = 1.0 - np.exp(-z)  # ∇ν for Gumbel noise
    terms = ys[:, :, None] * score[:, None, :] / SIGMA  # (M, i, j)
    return theta, z, terms.mean(axis=0), terms.std(axis=0, ddof=1) / np.sqrt(M)


def _closed_form(theta: np.ndarray) -> np.ndarray:
    # F_ε = ε logsumexp(θ/ε) + εγ: ∇²F_ε = (diag(s) - s sᵀ)/ε, s = softmax(θ/ε)
    s = np.exp(theta / SIGMA - np.max(theta / SIGMA))
    s /= s.sum()
    return (np.diag(s) - np.outer(s, s)) / SIGMA


def test_perturbed_max_hessian_jax_is_the_score_estimator_and_matches_the_closed_form() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax  # noqa: F401

    if not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    theta, z, estimate, se = _gumbel_case()
    F = dc.perturbed_max(S.argmax, sigma=SIGMA, num_samples=M, noise="gumbel")
    H = np.asarray(jax.hessian(lambda t: F(t, noise=jnp.asarray(z)))(jnp.asarray(theta)))
    np.testing.assert_allclose(H, estimate, rtol=1e-10, atol=1e-12)  # the same noise, by hand
    assert np.all(np.abs(H - _closed_form(theta)) <= 5 * se + 1e-12)


def test_perturbed_max_hessian_torch_double_backward_matches() -> None:
    torch = pytest.importorskip("torch")
    import dopt_torch  # noqa: F401

    theta, z, estimate, se = _gumbel_case()
    F = dc.perturbed_max(S.argmax, sigma=SIGMA, num_samples=M, noise="gumbel")
    H = torch.autograd.functional.hessian(lambda t: F(t, noise=torch.from_numpy(z)), torch.from_numpy(theta))
    np.testing.assert_allclose(H.numpy(), estimate, rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(H.numpy() - _closed_form(theta)) <= 5 * se + 1e-12)


def test_first_order_ops_still_raise() -> None:
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")
    import dopt_jax  # noqa: F401
    import dopt_torch  # noqa: F401

    P = dc.perturbed(S.argmax, sigma=1.0, num_samples=8, noise="gumbel")
    x = np.array([0.3, -0.2, 0.5, 0.0])
    for fn in (lambda t: (R.soft_sort(t) ** 2).sum(), lambda t: (P(t, rng=0) ** 2).sum()):
        with pytest.raises(RuntimeError, match="first-order"):
            torch.autograd.functional.hessian(fn, torch.from_numpy(x))
    with pytest.raises(NotImplementedError, match="first-order"):
        jax.hessian(lambda t: (P(t, rng=jax.random.key(0)) ** 2).sum())(jax.numpy.asarray(x))
    with pytest.raises(NotImplementedError, match="first-order"):  # host PAV: first-order JVP
        jax.hessian(lambda t: (R.soft_sort(t) ** 2).sum())(jax.numpy.asarray(x))
