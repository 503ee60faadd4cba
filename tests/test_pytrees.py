"""Pytrees of scores in dopt_jax.perturbed / perturbed_max / fenchel_young_loss (issue 21):
the same numbers as the flattened vector with the same noise, noise per leaf with split
keys (optax's semantics), gradients and Hessians as pytrees."""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy
dj = pytest.importorskip("dopt_jax")

M, SIGMA = 40, 0.5


def tree_solver(tree):
    """Argmax over all the entries of {"a": (3,), "b": (2, 2)}, batched over leading axes."""
    a, b = tree["a"], tree["b"]
    flat = jnp.concatenate([a, jnp.reshape(b, (*b.shape[:-2], 4))], axis=-1)
    y = jax.nn.one_hot(jnp.argmax(flat, axis=-1), 7, dtype=flat.dtype)
    return {"a": y[..., :3], "b": jnp.reshape(y[..., 3:], b.shape)}


def flat_solver(x):
    return jax.nn.one_hot(jnp.argmax(x, axis=-1), 7, dtype=x.dtype)


def _tree(dtype=jnp.float32):
    return {"a": jnp.array([0.1, 0.5, -0.2], dtype), "b": jnp.array([[0.3, 0.0], [0.45, -1.0]], dtype)}


def _ravel(tree, lead=0):
    return jnp.concatenate([jnp.reshape(tree["a"], (*tree["a"].shape[:lead], -1)),
                            jnp.reshape(tree["b"], (*tree["b"].shape[:lead], -1))], axis=-1)


def _noise_per_leaf(key, tree, law="normal"):
    """optax's semantics: one split key per leaf (in tree_leaves order), each leaf's
    draws made by the JAX backend's sampler of the law."""
    ka, kb = jax.random.split(key, 2)
    noise = dj.noise.get_noise(law)
    backend = dj.backend_for(tree["a"])
    return {"a": noise.sample(backend, ka, (M, 3), like=tree["a"]),
            "b": noise.sample(backend, kb, (M, 2, 2), like=tree["b"])}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pytree_equals_the_flattened_vector_with_the_same_noise(dtype: str) -> None:
    if dtype == "float64" and not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    tree = _tree(jnp.dtype(dtype))
    z_tree = _noise_per_leaf(jax.random.key(3), tree)
    z_flat = _ravel(z_tree, lead=1)
    P_tree = dj.perturbed(tree_solver, sigma=SIGMA, num_samples=M)
    P_flat = dj.perturbed(flat_solver, sigma=SIGMA, num_samples=M)
    y_tree = P_tree(tree, noise=z_tree)
    y_flat = P_flat(_ravel(tree), noise=z_flat)
    np.testing.assert_array_equal(np.asarray(_ravel(y_tree)), np.asarray(y_flat))
    assert y_tree["b"].shape == (2, 2) and y_tree["a"].dtype == jnp.dtype(dtype)
    # the VJP, through a weighted sum of the output tree
    w = jnp.arange(7.0, dtype=dtype)
    g_tree = jax.grad(lambda t: jnp.sum(_ravel(P_tree(t, noise=z_tree)) * w))(tree)
    g_flat = jax.grad(lambda t: jnp.sum(P_flat(t, noise=z_flat) * w))(_ravel(tree))
    np.testing.assert_allclose(np.asarray(_ravel(g_tree)), np.asarray(g_flat), rtol=1e-6, atol=1e-6)


def test_rng_draws_noise_per_leaf_with_split_keys() -> None:
    tree, key = _tree(), jax.random.key(5)
    F = dj.perturbed_max(tree_solver, sigma=SIGMA, num_samples=M, noise="gumbel")
    by_key = F(tree, rng=key)
    by_noise = F(tree, noise=_noise_per_leaf(key, tree, law="gumbel"))
    np.testing.assert_allclose(float(by_key), float(by_noise), rtol=1e-6)
    # the value by hand: mean over samples of max <y, θ + εZ>
    z = _ravel(_noise_per_leaf(key, tree, law="gumbel"), lead=1)
    expected = jnp.mean(jnp.max(_ravel(tree) + SIGMA * z, axis=-1))
    np.testing.assert_allclose(float(by_key), float(expected), rtol=1e-6)
    with pytest.raises(ValueError, match="needs rng="):
        F(tree)


def test_perturbed_max_gradient_and_hessian_are_pytrees() -> None:
    if not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    tree = _tree(jnp.float64)
    z_tree = _noise_per_leaf(jax.random.key(9), tree)
    F_tree = dj.perturbed_max(tree_solver, sigma=SIGMA, num_samples=M)
    F_flat = dj.perturbed_max(flat_solver, sigma=SIGMA, num_samples=M)
    z_flat = _ravel(z_tree, lead=1)
    g = jax.grad(lambda t: F_tree(t, noise=z_tree))(tree)
    np.testing.assert_allclose(np.asarray(_ravel(g)), np.asarray(
        jax.grad(lambda t: F_flat(t, noise=z_flat))(_ravel(tree))), atol=1e-12)
    H = jax.hessian(lambda t: F_tree(t, noise=z_tree))(tree)
    H_flat = jax.hessian(lambda t: F_flat(t, noise=z_flat))(_ravel(tree))
    np.testing.assert_allclose(np.asarray(H["a"]["b"]).reshape(3, 4), np.asarray(H_flat[:3, 3:]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(H["b"]["b"]).reshape(4, 4), np.asarray(H_flat[3:, 3:]), atol=1e-12)


def test_fenchel_young_loss_takes_pytree_scores_and_targets() -> None:
    tree = _tree()
    z_tree = _noise_per_leaf(jax.random.key(2), tree)
    target = tree_solver(_tree())
    L_tree = dj.fenchel_young_loss(tree_solver, sigma=SIGMA, num_samples=M)
    L_flat = dj.fenchel_young_loss(flat_solver, sigma=SIGMA, num_samples=M)
    a = L_tree(tree, target, noise=z_tree)
    b = L_flat(_ravel(tree), _ravel(target), noise=_ravel(z_tree, lead=1))
    np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
    g = jax.jit(jax.grad(lambda t: L_tree(t, target, noise=z_tree)))(tree)
    g_flat = jax.grad(lambda t: L_flat(t, _ravel(target), noise=_ravel(z_tree, lead=1)))(_ravel(tree))
    np.testing.assert_allclose(np.asarray(_ravel(g)), np.asarray(g_flat), rtol=1e-6, atol=1e-7)
