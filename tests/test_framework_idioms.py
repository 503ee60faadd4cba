"""Framework idioms users will try (issue 11): checkpointing, pickling and state_dict of
the torch modules, torch.func vmap/jacrev, torch.compile(fullgraph=True), JAX forward
mode, and the cotangents ``value_and_vjp`` accepts."""

from __future__ import annotations

import copy
import functools
import io
import pickle
import warnings
from typing import Any

import numpy as np
import pytest

import dopt_core as dc

torch = pytest.importorskip("torch")
import torch.utils.checkpoint as checkpoint  # noqa: E402

import dopt_torch as dt  # noqa: E402

S = dt.solvers


def _gen(seed: int) -> Any:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------
# Class 5: a module's own generator under torch.utils.checkpoint
# ---------------------------------------------------------------------------------
def _modules() -> dict[str, Any]:
    return {
        "perturbed": lambda: dt.nn.PerturbedOptimizer(S.argmax, sigma=0.5, num_samples=8, seed=0),
        "fenchel_young": lambda: dt.nn.FenchelYoungLoss(
            functools.partial(S.top_k, k=2), sigma=0.5, num_samples=8, seed=0
        ),
    }


def _step(module: Any, theta: Any, target: Any, w: Any, ckpt: bool | None) -> tuple[Any, Any]:
    """One training step's output and gradient; ``ckpt``: checkpoint's use_reentrant."""
    t = theta.clone().requires_grad_(True)
    h = 2.0 * t  # the checkpointed input is not a leaf

    def body(u: Any) -> Any:
        out = module(u * 1.0) if target is None else module(u * 1.0, target)
        return out * w if target is None else out

    y = body(h) if ckpt is None else checkpoint.checkpoint(body, h, use_reentrant=ckpt)
    y.sum().backward()
    return y.detach(), t.grad


@pytest.mark.parametrize("use_reentrant", [True, False])
@pytest.mark.parametrize("kind", ["perturbed", "fenchel_young"])
def test_checkpoint_recomputation_replays_the_modules_draw(kind: str, use_reentrant: bool) -> None:
    theta = torch.randn(4, 5, dtype=torch.float64, generator=_gen(1))
    w = torch.randn(4, 5, dtype=torch.float64, generator=_gen(2))
    target = None if kind == "perturbed" else S.top_k(w, 2)
    plain, ckpt = _modules()[kind](), _modules()[kind]()
    for _ in range(2):  # two steps: the stream continues identically after a recomputation
        y0, g0 = _step(plain, theta, target, w, None)
        y1, g1 = _step(ckpt, theta, target, w, use_reentrant)
        assert torch.equal(y0, y1)
        assert torch.equal(g0, g1)
    assert g0.abs().sum() > 0  # the estimator is not trivially zero here


def test_checkpoint_recomputation_without_a_recorded_call_raises() -> None:
    layer = dt.nn.PerturbedOptimizer(S.argmax, sigma=0.5, num_samples=4, seed=0)
    x = torch.randn(2, 3, requires_grad=True)
    y = checkpoint.checkpoint(lambda u: layer(u * 1.0), x, use_reentrant=False)
    layer._calls.clear()  # as after more than REPLAY_WINDOW later calls
    with pytest.raises(RuntimeError, match="cannot replay that call's noise"):
        y.sum().backward()


# ---------------------------------------------------------------------------------
# Class 15 (and 5): state_dict, pickle, torch.save
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["perturbed", "fenchel_young"])
def test_state_dict_round_trip_continues_the_stream(kind: str) -> None:
    theta = torch.randn(3, 5, generator=_gen(3))
    target = S.top_k(theta, 2)
    args = (theta,) if kind == "perturbed" else (theta, target)
    m = _modules()[kind]()
    m(*args)  # advance the generator
    state = m.state_dict()
    assert set(state) == {"_extra_state"} and state["_extra_state"]["seed"] == 0
    expected = [m(*args) for _ in range(3)]
    other = _modules()[kind]()
    other.seed = 7
    other(*args)
    other(*args)
    other.load_state_dict(state)
    assert other.seed == 0
    for e in expected:
        assert torch.equal(other(*args), e)


def test_state_dict_of_an_unused_module_keeps_the_seed() -> None:
    theta = torch.randn(3, 5, generator=_gen(4))
    fresh = dt.nn.PerturbedOptimizer(S.argmax, sigma=0.5, num_samples=8, seed=11)
    other = dt.nn.PerturbedOptimizer(S.argmax, sigma=0.5, num_samples=8, seed=None)
    other.load_state_dict(fresh.state_dict())
    assert torch.equal(other(theta), fresh(theta))
    with pytest.raises(ValueError, match="extra state must be the dict"):
        other.set_extra_state(3)


@pytest.mark.parametrize("how", ["pickle", "torch.save", "deepcopy"])
@pytest.mark.parametrize("kind", ["perturbed", "fenchel_young"])
def test_modules_pickle_and_continue_the_stream(kind: str, how: str) -> None:
    theta = torch.randn(3, 5, generator=_gen(5))
    args = (theta,) if kind == "perturbed" else (theta, S.top_k(theta, 2))
    m = _modules()[kind]()
    m(*args)
    if how == "pickle":
        clone = pickle.loads(pickle.dumps(m))
    elif how == "torch.save":
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        clone = torch.load(buf, weights_only=False)
    else:
        clone = copy.deepcopy(m)
    assert type(clone) is type(m) and clone._kwargs == m._kwargs
    for _ in range(2):
        assert torch.equal(clone(*args), m(*args))


def test_a_module_whose_solver_has_no_module_level_name_says_so() -> None:
    lifted = dc.solvers.solver(lambda t: t, name="mine")
    m = dt.nn.PerturbedOptimizer(lifted, sigma=0.5, num_samples=2, seed=0)
    with pytest.raises(pickle.PicklingError, match="without a module-level name"):
        pickle.dumps(m)


# ---------------------------------------------------------------------------------
# Class 12: the cotangents value_and_vjp accepts
# ---------------------------------------------------------------------------------
def _arrays() -> dict[str, Any]:
    out: dict[str, Any] = {"numpy": np.asarray, "torch": lambda a: torch.tensor(np.asarray(a))}
    try:
        import jax.numpy as jnp

        out["jax"] = lambda a: jnp.asarray(np.asarray(a, dtype=np.float32))
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.mark.parametrize("lib", sorted(_arrays()))
def test_value_and_vjp_cotangents(lib: str) -> None:
    to = _arrays()[lib]
    theta = to(np.array([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]]))
    _, vjp = dc.value_and_vjp(S.sort, theta)
    g = np.array([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]])
    # sort's VJP scatters g back to the sorted positions: grad[argsort[i]] = g[i]
    expected = np.zeros_like(g)
    np.put_along_axis(expected, np.argsort(np.asarray(theta), axis=-1), g, axis=-1)
    np.testing.assert_allclose(np.asarray(vjp(to(g))), expected)
    np.testing.assert_allclose(np.asarray(vjp(g)), expected)  # a NumPy cotangent
    np.testing.assert_allclose(np.asarray(vjp(to(g.astype(np.int64)))), expected)
    with pytest.raises(ValueError, match=r"cotangent must have the output's shape \(2, 3\).*0-d"):
        vjp(1.0)
    with pytest.raises(ValueError, match=r"output's shape \(2, 3\), got \(3,\)"):
        vjp(to(g[0]))
    with pytest.raises(TypeError, match="cotangent must be an array of the output's library"):
        vjp(g.tolist())
    with pytest.raises(TypeError, match="cotangent must have a real floating or integer dtype"):
        vjp(np.ones((2, 3), dtype=bool))
    if lib != "torch":
        with pytest.raises(TypeError, match=f"cotangent must be an array of .*\\({lib}\\)"):
            vjp(torch.ones(2, 3))

    # a 0-d output (a loss): Python and NumPy scalars stand for the 0-d cotangent
    y = S.argmax(theta)
    loss = dc.fenchel_young_loss(S.argmax, sigma=3.0, num_samples=4)
    noise = to(np.random.default_rng(0).standard_normal((4, 2, 3)))
    _, lvjp = dc.value_and_vjp(loss, theta, y, noise=noise)
    ref = np.asarray(lvjp(to(np.array(2.0))))
    assert np.abs(ref).sum() > 0
    np.testing.assert_allclose(np.asarray(lvjp(2.0)), ref)
    np.testing.assert_allclose(np.asarray(lvjp(2)), ref)
    np.testing.assert_allclose(np.asarray(lvjp(np.float32(2.0))), ref)


# ---------------------------------------------------------------------------------
# torch.func: vmap and jacrev
# ---------------------------------------------------------------------------------
def _loop(f: Any, *xs: Any) -> Any:
    return torch.stack([f(*(x[i] for x in xs)) for i in range(xs[0].shape[0])])


@pytest.mark.parametrize("name", ["sort", "top_k", "soft_sort", "linear_assignment"])
def test_vmap_matches_a_loop(name: str) -> None:
    f = {
        "sort": S.sort,
        "top_k": lambda t: S.top_k(t, 2),
        "soft_sort": lambda t: dt.relax.soft_sort(t, regularization_strength=0.3),
        "linear_assignment": S.linear_assignment,
    }[name]
    shape = (3, 4, 4) if name == "linear_assignment" else (3, 2, 5)
    x = torch.randn(*shape, dtype=torch.float64, generator=_gen(6))
    # one batched call: soft sort's batched PAV differs from row-by-row calls by rounding
    tol = 1e-12 if name == "soft_sort" else 0.0
    torch.testing.assert_close(torch.func.vmap(f)(x), _loop(f, x), rtol=tol, atol=tol)
    # the vmapped axis need not be the first one
    xt = x.movedim(0, 1)
    torch.testing.assert_close(torch.func.vmap(f, in_dims=1)(xt), _loop(f, x), rtol=tol, atol=tol)


def test_vmap_of_a_perturbed_op_with_given_noise_and_of_its_gradient() -> None:
    f = dt.perturbed(S.argmax, sigma=0.5, num_samples=6)
    x = torch.randn(3, 5, dtype=torch.float64, generator=_gen(7))
    z = torch.randn(3, 6, 5, dtype=torch.float64, generator=_gen(8))
    w = torch.randn(5, dtype=torch.float64, generator=_gen(9))
    got = torch.func.vmap(lambda t, n: f(t, noise=n))(x, z)
    assert torch.equal(got, _loop(lambda t, n: f(t, noise=n), x, z))

    def loss(t: Any, n: Any) -> Any:
        return (f(t, noise=n) * w).sum()

    grads = torch.func.vmap(torch.func.grad(loss))(x, z)  # a grad level above the vmap
    for i in range(3):
        _, vjp = dc.value_and_vjp(f, x[i].numpy(), noise=z[i].numpy())
        np.testing.assert_allclose(grads[i].numpy(), vjp(w.numpy()), rtol=1e-12)
    assert grads.abs().sum() > 0
    # noise drawn inside vmap follows torch's randomness flag
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(lambda t: f(t, rng=0))(x)


def _jacobian_reference(f: Any, x: np.ndarray, **kw: Any) -> np.ndarray:
    y, vjp = dc.value_and_vjp(f, x, **kw)
    rows = [vjp(np.eye(y.size)[i].reshape(y.shape)) for i in range(y.size)]
    return np.stack(rows).reshape(*y.shape, *x.shape)


@pytest.mark.parametrize("name", ["sort", "top_k", "soft_sort", "perturbed"])
def test_jacrev_matches_the_numpy_reference(name: str) -> None:
    x = np.random.default_rng(10).standard_normal(5)
    z = np.random.default_rng(11).standard_normal((6, 5))
    pert = dc.perturbed(S.argmax, sigma=0.5, num_samples=6)
    f, kw = {
        "sort": (S.sort, {}),
        "top_k": (functools.partial(S.top_k, k=2), {}),
        "soft_sort": (functools.partial(dc.relax.soft_sort, regularization_strength=0.3), {}),
        "perturbed": (pert, {"noise": z}),
    }[name]
    tkw = {k: torch.from_numpy(v) for k, v in kw.items()}
    jac = torch.func.jacrev(lambda t: f(t, **tkw))(torch.from_numpy(x))
    if isinstance(f, functools.partial):  # value_and_vjp takes the dopt function itself
        f, kw = f.func, {**f.keywords, **kw}
    ref = _jacobian_reference(f, x, **kw)
    np.testing.assert_allclose(jac.numpy(), ref, rtol=1e-12, atol=1e-12)
    if name == "sort":  # the permutation matrix itself
        np.testing.assert_array_equal(ref, np.eye(5)[np.argsort(x)])
    if name == "top_k":  # piecewise constant: the a.e. derivative is zero
        assert not ref.any()
    else:
        assert np.abs(ref).sum() > 0


def test_second_order_through_torch_func_raises_the_first_order_error() -> None:
    x = torch.randn(5, dtype=torch.float64, generator=_gen(12))
    # softmax is second-order capable since issue 21 (tests/test_second_order.py); soft
    # sort (host PAV) and sort stay first-order and reverse mode only
    with pytest.raises(RuntimeError, match="first-order"):
        torch.func.jacrev(torch.func.jacrev(lambda t: dt.relax.soft_sort(t).sum()))(x)
    with warnings.catch_warnings(), pytest.raises(NotImplementedError, match="sort: this dopt op has no forward-mode"):
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, about torch.jit
        torch.func.jacfwd(dt.solvers.sort)(x)


# ---------------------------------------------------------------------------------
# torch.compile(fullgraph=True) on device-resident ops
# ---------------------------------------------------------------------------------
# backend="aot_eager": dynamo's capture and AOTAutograd's forward and backward graphs
# (inductor's C++ compilation would take minutes); shortest_path_grid(method="device"),
# the losses and the relaxed control flow also compile (docs/frameworks.md), untested
# here for time
COMPILED = [
    "sort",
    "top_k",
    "perturbed(argmax)",
    "softmax",
    "sparsemax",
    "network_sort",
    "network_permutation",
    "network_permutation(bitonic)",
    "soft_top_k",
    "gumbel_softmax",
]


@pytest.mark.parametrize("name", COMPILED)
def test_torch_compile_fullgraph_matches_eager(name: str) -> None:
    x = torch.randn(2, 6, dtype=torch.float64, generator=_gen(13))
    z = torch.randn(4, 2, 6, dtype=torch.float64, generator=_gen(14))
    pert = dt.perturbed(S.argmax, sigma=0.5, num_samples=4)
    f = {
        "sort": S.sort,
        "top_k": lambda t: S.top_k(t, 2),
        "perturbed(argmax)": lambda t: pert(t, noise=z),
        "softmax": dt.relax.softmax,
        "sparsemax": dt.relax.sparsemax,
        "network_sort": dt.relax.network_sort,
        "network_permutation": lambda t: dt.relax.network_permutation(t)[..., 0, :],
        "network_permutation(bitonic)": lambda t: dt.relax.network_permutation(
            t, network="bitonic"
        )[..., 1, :],
        "soft_top_k": lambda t: dt.relax.soft_top_k(t, 2)[..., 0],
        "gumbel_softmax": lambda t: dt.relax.gumbel_softmax(t, tau=0.5, noise=z[0]),
    }[name]
    w = torch.arange(1.0, 13.0, dtype=torch.float64).reshape(2, 6)

    def loss(t: Any) -> Any:
        return (f(t).reshape(2, 6) * w).sum()

    xe = x.clone().requires_grad_(True)
    le = loss(xe)
    le.backward()
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dynamo's notes about array_api_compat's lru_caches
        compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
        xc = x.clone().requires_grad_(True)
        lc = compiled(xc)
        lc.backward()
    assert torch.equal(le.detach(), lc.detach())
    if xe.grad is None:
        assert xc.grad is None or not xc.grad.any()
    else:
        assert torch.equal(xe.grad, xc.grad)
        if name != "top_k":
            assert xe.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["gumbel_softmax", "perturbed(argmax)"])
def test_torch_compile_fullgraph_without_gradients(name: str) -> None:
    """Several tensor inputs (scores and noise) and none needing a gradient: the bridge
    runs the forward directly while compiling (dynamo cannot trace the Function then)."""
    x = torch.randn(2, 6, dtype=torch.float64, generator=_gen(15))
    z = torch.randn(4, 2, 6, dtype=torch.float64, generator=_gen(16))
    f = {
        "gumbel_softmax": lambda t, z: dt.relax.gumbel_softmax(t, tau=0.5, noise=z[0]),
        "perturbed(argmax)": lambda t, z: dt.perturbed(S.argmax, sigma=0.5, num_samples=4)(
            t, noise=z
        ),
    }[name]
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = torch.compile(f, fullgraph=True, backend="eager")(x, z)
    assert torch.equal(out, f(x, z))
    assert not out.requires_grad


def test_value_checks_are_skipped_while_compiling_and_run_eagerly() -> None:
    bad = torch.tensor([[1.0, float("nan"), 0.0]])
    with pytest.raises(ValueError, match="theta contains NaN"):
        S.sort(bad)
    torch._dynamo.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = torch.compile(S.sort, fullgraph=True, backend="eager")(bad)
    assert out.isnan().any()  # no host read, no graph break: the check cannot run


# ---------------------------------------------------------------------------------
# JAX: forward mode of an op without a JVP (issue 21) raises dopt's own error
# ---------------------------------------------------------------------------------
def test_jax_forward_mode_names_the_op_and_reverse_mode() -> None:
    jax = pytest.importorskip("jax")
    import dopt_jax as dj

    x = jax.numpy.array([0.3, -1.0, 2.0])
    def subset(t):  # type: ignore[no-untyped-def]
        return dj.relax.relaxed_subset(t, 2, noise=jax.numpy.zeros_like(t))

    with pytest.raises(TypeError, match="relaxed_subset: this dopt op has no forward-mode"):
        jax.jvp(subset, (x,), (x,))
    with pytest.raises(TypeError, match="sort: .*reverse mode only"):
        jax.jacfwd(dj.solvers.sort)(x)
    jac = np.asarray(jax.jacrev(dj.solvers.sort)(x))
    np.testing.assert_array_equal(jac, np.eye(3)[np.argsort(np.asarray(x))])


def test_registering_a_backend_keeps_the_other_cached_answers() -> None:
    """torch.compile traces backend_for and cannot trace its locked lookup of an unseen
    type: the tensor types stay cached when another plugin registers."""
    from dopt_core import backend as B
    from dopt_core._lib import _registry as R

    class Other(B.Backend):
        name = "other-test-backend"

        def owns(self, x: Any) -> bool:
            return False

    dc.backend_for(torch.ones(1))
    dc.backend_for(torch.nn.Parameter(torch.ones(1)))
    saved = dict(R._BACKENDS)
    try:
        B.register_backend(Other())
        assert R._BY_TYPE.get(torch.Tensor) is dc.backend_for(torch.ones(1))
        assert R._BY_TYPE.get(torch.nn.Parameter) is not None
        B.register_backend(dt.TorchBackend())  # replacing torch's adapter drops its entries
        assert torch.Tensor not in R._BY_TYPE
    finally:
        with R._LOCK:
            R._BACKENDS.clear()
            R._BACKENDS.update(saved)
            R._BY_TYPE.clear()
        dc.backend_for(torch.ones(1))
        dc.backend_for(torch.nn.Parameter(torch.ones(1)))


@pytest.mark.parametrize("module", [dt.nn.PerturbedOptimizer, dt.nn.FenchelYoungLoss])
def test_module_seed_follows_the_one_seed_rule(module: Any) -> None:
    """The modules' ``seed`` obeys the adapters' rule (issue 11 class 16): negative ints
    raise ValueError, other kinds TypeError, both naming ``seed``; NumPy ints are kept."""
    with pytest.raises(ValueError, match="seed must be an int seed in \\[0, 2\\*\\*63\\), got -1"):
        module(dt.solvers.argmax, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int or None, got float"):
        module(dt.solvers.argmax, seed=1.5)
    assert module(dt.solvers.argmax, seed=np.int64(7)).seed == 7


@pytest.mark.parametrize("module", [dt.nn.PerturbedOptimizer, dt.nn.FenchelYoungLoss])
def test_modules_propagate_shapes_on_meta_tensors(module: Any) -> None:
    """Like the functional forms (issue 11 class 9), the modules run on meta tensors."""
    layer = module(dt.solvers.argmax, seed=0, num_samples=3)
    theta = torch.empty(2, 5, device="meta")
    out = layer(theta) if module is dt.nn.PerturbedOptimizer else layer(theta, torch.empty(2, 5, device="meta"))
    expected = (2, 5) if module is dt.nn.PerturbedOptimizer else ()
    assert out.device.type == "meta" and tuple(out.shape) == expected
