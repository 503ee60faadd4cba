"""Plugin review (torch and JAX bridges): each test pins a defect that was fixed.

Every expected value is computed independently: a Python loop over the batch, the
NumPy reference VJP, finite differences or a fresh draw from the same seed.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest

import dopt_core as dc

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
torch_only = pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
jax_only = pytest.mark.skipif(not HAS_JAX, reason="needs jax")


@torch_only
def test_torch_vmap_of_grad_of_a_second_order_op_using_sign_matches_a_loop() -> None:
    # torch.func.grad records its backward (create_graph): a second-order op recomputes
    # its forward there, batched by the vmap outside; neural_sort's forward takes a sign,
    # whose array-api-compat version indexes with a boolean mask, which vmap refuses
    import torch
    from torch.func import grad, vmap

    import dopt_torch as dt

    x = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.5, 0.2, -0.7, 0.1]], dtype=torch.float64)
    w = torch.sin(torch.arange(16, dtype=torch.float64)).reshape(4, 4)

    def h(t):
        return (dt.relax.neural_sort(t, tau=0.5) * w).sum()

    batched = vmap(grad(h))(x)
    for b in range(x.shape[0]):  # the NumPy reference VJP, slice by slice
        _, vjp = dc.value_and_vjp(dc.relax.neural_sort, x[b].numpy(), tau=0.5)
        np.testing.assert_allclose(batched[b].numpy(), vjp(w.numpy()), rtol=1e-12, atol=1e-12)


def _tree_argmax(tree):  # a one-hot of each leaf's maximum (leading sample axis)
    import jax

    def one_hot(a):
        return (a == a.max(axis=-1, keepdims=True)).astype(a.dtype)

    return jax.tree_util.tree_map(one_hot, tree)


@jax_only
def test_jax_pytree_scores_take_an_int_seed_and_a_numpy_generator() -> None:
    # the single-array path takes rng=int (jax.random.key(int)) and a NumPy Generator;
    # the pytree path passed either to jax.random.split, an opaque JAX error
    import jax
    import jax.numpy as jnp

    import dopt_jax as dj

    pa = dj.perturbed(_tree_argmax, num_samples=4)
    tree = {"a": jnp.array([0.1, 0.4, -0.2]), "b": jnp.array([0.3, 0.0])}
    by_int = pa(tree, rng=3)
    by_key = pa(tree, rng=jax.random.key(3))
    for k in tree:
        np.testing.assert_array_equal(np.asarray(by_int[k]), np.asarray(by_key[k]))
    # a NumPy Generator: the leaves take consecutive host draws, in leaf order
    law, host = dc.noise.get_noise("normal"), dc.backend_for(np.zeros(1))
    g = np.random.default_rng(5)
    noise = {
        k: law.sample(host, g, (4, *tree[k].shape), like=np.asarray(tree[k])) for k in ("a", "b")
    }
    by_gen = pa(tree, rng=np.random.default_rng(5))
    by_noise = pa(tree, noise={k: jnp.asarray(v) for k, v in noise.items()})
    for k in tree:
        np.testing.assert_allclose(np.asarray(by_gen[k]), np.asarray(by_noise[k]), rtol=1e-6)


def _torch_tree_argmax(tree):
    import torch.utils._pytree as pytree

    def one_hot(a):
        return (a == a.amax(dim=-1, keepdim=True)).to(a.dtype)

    return pytree.tree_map(one_hot, tree)


@pytest.mark.parametrize(
    "lib", [pytest.param("torch", marks=torch_only), pytest.param("jax", marks=jax_only)]
)
def test_pytree_noise_and_targets_must_match_the_leaves_of_theta(lib: str) -> None:
    # theta {"a": (3,), "b": (2,)}, noise {"a": (M, 2), "b": (M, 3)}: the flat noise has
    # the right size, so it was cut at the wrong place and used silently
    if lib == "torch":
        import torch

        import dopt_torch as dp

        arr, solver = (lambda a: torch.tensor(a, dtype=torch.float64)), _torch_tree_argmax
    else:
        import jax.numpy as jnp

        import dopt_jax as dp

        arr, solver = jnp.asarray, _tree_argmax
    tree = {"a": arr([0.1, 0.4, -0.2]), "b": arr([0.3, 0.0])}
    good = {"a": arr(np.zeros((4, 3))), "b": arr(np.zeros((4, 2)))}
    swapped = {"a": arr(np.zeros((4, 2))), "b": arr(np.zeros((4, 3)))}
    pa = dp.perturbed(solver, num_samples=4)
    out = pa(tree, noise=good)  # zero noise: the one-hots of the leaves' maxima
    np.testing.assert_array_equal(np.asarray(out["a"]), [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="noise"):
        pa(tree, noise=swapped)
    loss = dp.fenchel_young_loss(solver, num_samples=4)
    y_good = {"a": arr([0.0, 1.0, 0.0]), "b": arr([1.0, 0.0])}
    assert float(loss(tree, y_good, noise=good)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="y_true"):
        loss(tree, {"a": arr([0.0, 1.0]), "b": arr([1.0, 0.0, 0.0])}, noise=good)


@torch_only
@pytest.mark.parametrize("name", ["perturbed", "soft_sort"])
def test_torch_func_hessian_of_a_first_order_op_raises_the_first_order_error(name: str) -> None:
    # hessian = jacfwd(jacrev(f)): forward mode through the backward reached the
    # first-order guard, which had no jvp: torch's "You must implement the jvp function"
    import torch

    import dopt_torch as dt

    z = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    fns = {
        "perturbed": lambda t: dt.perturbed(dt.solvers.argmax, num_samples=6)(t, noise=z),
        "soft_sort": dt.relax.soft_sort,
    }
    f = fns[name]
    x = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=torch.float64)
    assert torch.func.jacrev(lambda t: (f(t) ** 2).sum())(x).shape == (4,)  # first order works
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="first-order"):
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, about torch.jit
        torch.func.hessian(lambda t: (f(t) ** 2).sum())(x)


@torch_only
@pytest.mark.parametrize("name", ["argmax", "linear_assignment"])
def test_torch_gradient_of_a_piecewise_constant_solver_is_zeros(name: str) -> None:
    # the a.e. derivative is zero (NumPy's reference VJP and JAX give zeros); torch got
    # no gradient at all: torch.autograd.grad raised "appears to not have been used in
    # the graph" and .backward() left x.grad None
    import torch

    import dopt_torch as dt

    solver = getattr(dt.solvers, name)
    x0 = np.array([[0.3, -1.0, 2.0], [0.5, 0.1, -0.2], [1.0, 0.0, 0.4]])
    _, vjp = dc.value_and_vjp(getattr(dc.solvers, name), x0)
    w = np.arange(9.0).reshape(3, 3)
    x = torch.tensor(x0, requires_grad=True)
    (g,) = torch.autograd.grad((solver(x) * torch.tensor(w)).sum(), x)
    np.testing.assert_array_equal(g.numpy(), vjp(w))
    assert g.dtype == x.dtype and g.shape == x.shape
    (solver(x) * torch.tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), vjp(w))


@torch_only
def test_unseeded_torch_modules_follow_torch_manual_seed() -> None:
    # seed=None seeded the module's generator from the OS (Generator.seed()): a run
    # with torch.manual_seed(...) at the top was not reproducible
    import torch

    import dopt_torch as dt

    x = torch.tensor([[0.1, 0.3, 0.2, 0.0], [1.0, 0.9, 1.1, 0.95]])

    def run():
        torch.manual_seed(7)
        first = dt.nn.PerturbedOptimizer(dt.solvers.argmax, num_samples=8)
        second = dt.nn.PerturbedOptimizer(dt.solvers.argmax, num_samples=8)
        return first(x), first(x), second(x)

    a, b, c = run()
    a2, b2, c2 = run()
    for u, v in ((a, a2), (b, b2), (c, c2)):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    # still fresh noise: successive calls, and two modules, draw differently
    assert not torch.equal(a, b) and not torch.equal(a, c)


@jax_only
def test_jax_pytree_loss_without_targets_names_y_true() -> None:
    # was "ValueError: not enough values to unpack (expected at least 1, got 0)"
    import jax.numpy as jnp

    import dopt_jax as dj

    loss = dj.fenchel_young_loss(_tree_argmax, num_samples=2)
    tree = {"a": jnp.array([0.1, 0.4, -0.2])}
    with pytest.raises(TypeError, match="y_true"):
        loss(tree, noise={"a": jnp.zeros((2, 3))})


def test_value_and_vjp_of_a_float16_theta_given_by_keyword() -> None:
    # the gradient was cast to args[0].dtype: IndexError when theta came as a keyword
    pa = dc.perturbed(dc.solvers.argmax, num_samples=3)
    theta = np.array([[0.5, -0.25, 1.0]], dtype=np.float16)
    z = np.random.default_rng(0).normal(size=(3, 1, 3))
    g = np.array([[1.0, 2.0, 3.0]])
    y_pos, vjp_pos = dc.value_and_vjp(pa, theta, noise=z)
    y_kw, vjp_kw = dc.value_and_vjp(pa, theta=theta, noise=z)
    np.testing.assert_array_equal(y_kw, y_pos)
    assert vjp_kw(g).dtype == np.float16
    np.testing.assert_array_equal(vjp_kw(g), vjp_pos(g))
    # a function whose first argument is not an array (the T-norm family's name)
    from dopt_core.relax.fuzzy import tnorm_reduce

    a = np.array([[0.5, 0.25, 0.75]])
    _, vjp16 = dc.value_and_vjp(tnorm_reduce, "probabilistic", a.astype(np.float16))
    _, vjp64 = dc.value_and_vjp(tnorm_reduce, "probabilistic", a)
    grad16 = vjp16(np.array([1.0]))
    assert grad16.dtype == np.float16
    np.testing.assert_allclose(grad16, vjp64(np.array([1.0])), rtol=1e-3)


@jax_only
def test_jax_eager_call_of_an_op_around_a_solver_raises_the_solvers_error() -> None:
    # the plugin compiles eager calls of device ops: the solver inside perturbed(...) was
    # bound on tracers, skipped its value check and returned NaN, where NumPy and torch
    # raise the solver's ValueError (under the user's own jax.jit NaN stays the rule)
    import jax.numpy as jnp

    import dopt_jax as dj

    def grid(t):
        return dj.solvers.shortest_path_grid(t, method="device")

    pa = dj.perturbed(grid, num_samples=2, event_ndim=2)
    theta = -jnp.full((2, 2), 0.5)
    bad = jnp.stack([jnp.zeros((2, 2)), jnp.full((2, 2), 1.0)])  # 2nd sample: scores > 0
    with pytest.raises(ValueError, match="theta must be <= 0"):
        dc.perturbed(lambda t: dc.solvers.shortest_path_grid(t, method="device"),
                     num_samples=2, event_ndim=2)(np.asarray(theta), noise=np.asarray(bad))
    with pytest.raises(ValueError, match="theta must be <= 0"):
        pa(theta, noise=bad)
    ok = -jnp.full((2, 2, 2), 0.25)  # every cell costs 0.75: the diagonal move, 2 cells
    np.testing.assert_array_equal(np.asarray(pa(theta, noise=ok)), [[1.0, 0.0], [0.0, 1.0]])
