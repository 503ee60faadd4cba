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


# ---------------------------------------------------------------------------------
# torch: dicts / tuples / lists of tensors (dopt_torch._pytree), same semantics; noise
# per leaf in leaf order from one generator
# ---------------------------------------------------------------------------------
def _torch():
    torch = pytest.importorskip("torch")
    import dopt_torch as dt

    return torch, dt


def t_tree_solver(tree):
    torch, _ = _torch()
    a, b = tree["a"], tree["b"]
    flat = torch.cat([a, torch.reshape(b, (*b.shape[:-2], 4))], dim=-1)
    y = torch.nn.functional.one_hot(torch.argmax(flat, dim=-1), 7).to(flat.dtype)
    return {"a": y[..., :3], "b": torch.reshape(y[..., 3:], b.shape)}


def t_flat_solver(x):
    torch, _ = _torch()
    return torch.nn.functional.one_hot(torch.argmax(x, dim=-1), 7).to(x.dtype)


def _t_tree(dtype):
    torch, _ = _torch()
    return {"a": torch.tensor([0.1, 0.5, -0.2], dtype=dtype, requires_grad=True),
            "b": torch.tensor([[0.3, 0.0], [0.45, -1.0]], dtype=dtype, requires_grad=True)}


def _t_ravel(tree, lead=0):
    torch, _ = _torch()
    return torch.cat([tree["a"].reshape(*tree["a"].shape[:lead], -1),
                      tree["b"].reshape(*tree["b"].shape[:lead], -1)], dim=-1)


def _t_noise(seed, tree, law="normal"):
    """Leaf by leaf (dict order "a", "b") from one torch generator seeded ``seed``."""
    torch, dt = _torch()
    gen = torch.Generator().manual_seed(seed)
    noise, backend = dt.noise.get_noise(law), dt.backend_for(tree["a"])
    return {"a": noise.sample(backend, gen, (M, 3), like=tree["a"].detach()),
            "b": noise.sample(backend, gen, (M, 2, 2), like=tree["b"].detach())}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_pytree_equals_the_flattened_vector_with_the_same_noise(dtype: str) -> None:
    torch, dt = _torch()
    dtype = getattr(torch, dtype)
    tree = _t_tree(dtype)
    z_tree = _t_noise(3, tree)
    P_tree = dt.perturbed(t_tree_solver, sigma=SIGMA, num_samples=M)
    P_flat = dt.perturbed(t_flat_solver, sigma=SIGMA, num_samples=M)
    y_tree = P_tree(tree, noise=z_tree)
    flat = _t_ravel(tree).detach().requires_grad_(True)
    y_flat = P_flat(flat, noise=_t_ravel(z_tree, lead=1))
    np.testing.assert_array_equal(_t_ravel(y_tree).detach().numpy(), y_flat.detach().numpy())
    assert y_tree["b"].shape == (2, 2) and y_tree["a"].dtype == dtype
    w = torch.arange(7.0, dtype=dtype)
    (_t_ravel(y_tree) * w).sum().backward()
    (y_flat * w).sum().backward()
    g_tree = torch.cat([tree["a"].grad, tree["b"].grad.reshape(-1)])
    np.testing.assert_allclose(g_tree.numpy(), flat.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert np.abs(flat.grad.numpy()).sum() > 0


def test_torch_rng_draws_noise_per_leaf_from_one_generator() -> None:
    torch, dt = _torch()
    tree = {k: v.detach() for k, v in _t_tree(torch.float64).items()}
    F = dt.perturbed_max(t_tree_solver, sigma=SIGMA, num_samples=M, noise="gumbel")
    by_seed = F(tree, rng=5)
    by_gen = F(tree, rng=torch.Generator().manual_seed(5))
    z = _t_noise(5, tree, law="gumbel")
    by_noise = F(tree, noise=z)
    expected = torch.mean(torch.max(_t_ravel(tree) + SIGMA * _t_ravel(z, lead=1), dim=-1).values)
    for value in (by_seed, by_gen, by_noise):
        np.testing.assert_allclose(value.item(), expected.item(), rtol=1e-12)
    with pytest.raises(ValueError, match="not both"):
        F(tree, rng=5, noise=z)


def test_torch_tuple_pytree_hessian_and_fenchel_young_loss() -> None:
    """perturbed_max (additive noise, second order) on a tuple of tensors: its Hessian by
    double backward equals the flattened one; the Fenchel-Young loss takes a tuple target."""
    torch, dt = _torch()
    a = torch.tensor([0.1, 0.5, -0.2], dtype=torch.float64)
    b = torch.tensor([0.3, 0.0, 0.45, -1.0], dtype=torch.float64)
    gen = torch.Generator().manual_seed(9)
    z = (torch.randn(M, 3, generator=gen, dtype=torch.float64), torch.randn(M, 4, generator=gen, dtype=torch.float64))

    def tup_solver(t):
        y = t_flat_solver(torch.cat(t, dim=-1))
        return (y[..., :3], y[..., 3:])

    F_tup = dt.perturbed_max(tup_solver, sigma=SIGMA, num_samples=M)
    F_flat = dt.perturbed_max(t_flat_solver, sigma=SIGMA, num_samples=M)
    z_flat = torch.cat(z, dim=-1)
    H = torch.autograd.functional.hessian(lambda p, q: F_tup((p, q), noise=z), (a, b))
    H_flat = torch.autograd.functional.hessian(lambda t: F_flat(t, noise=z_flat), torch.cat([a, b]))
    np.testing.assert_allclose(H[0][1].numpy(), H_flat[:3, 3:].numpy(), atol=1e-12)
    np.testing.assert_allclose(H[1][1].numpy(), H_flat[3:, 3:].numpy(), atol=1e-12)
    assert np.abs(H_flat.numpy()).sum() > 0
    # a list of tensors, a list of noise tensors: the same numbers as the flat vector
    np.testing.assert_allclose(F_tup([a, b], noise=list(z)).item(), F_flat(torch.cat([a, b]), noise=z_flat).item(),
                               rtol=1e-12)
    L_tup = dt.fenchel_young_loss(tup_solver, sigma=SIGMA, num_samples=M)
    L_flat = dt.fenchel_young_loss(t_flat_solver, sigma=SIGMA, num_samples=M)
    target = (torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    np.testing.assert_allclose(
        float(L_tup((a, b), target, noise=z)),
        float(L_flat(torch.cat([a, b]), torch.cat(target), noise=z_flat)),
        rtol=1e-12,
    )
