"""Forward mode (issue 21): the core's ``Op.jvp`` against finite differences and the VJP,
and the plugins' ``jax.jvp`` / ``jax.jacfwd`` / ``torch.func.jvp`` / dual tensors on it."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.op import forward_mode_error, has_jvp, value_and_jvp

R = dc.relax
S = dc.solvers
P = dc.projections

# (name, function of θ with the other inputs fixed); θ of shape (2, 5)
_B = np.array([[0.2, -0.4, 1.0, 0.0, 0.7], [1.5, 0.1, -0.3, -1.0, 0.4]])
_NOISE = np.random.default_rng(7).normal(size=(6, 2, 5))
FUNCTIONS = {
    "softmax": functools.partial(R.softmax, tau=0.7),
    "sparsemax": R.sparsemax,
    "gumbel_softmax": functools.partial(R.gumbel_softmax, tau=0.5, noise=_NOISE[0]),
    "soft_compare": lambda t, **k: R.soft_compare(t, _B, beta=3.0, **k),
    "soft_min_pair": lambda t, **k: R.soft_min(t, _B, beta=2.0, distribution="gaussian", **k),
    "soft_max_vector": functools.partial(R.soft_max, beta=2.0),
    "soft_argmin": functools.partial(R.soft_argmin, beta=2.0),
    "soft_if": lambda t, **k: R.soft_if(1 / (1 + np.exp(-_B)), t, 2 * t, **k),
    "standardize": functools.partial(P.project, projection="standardize"),
    "norm": functools.partial(P.project, projection="norm"),
    "network_sort": functools.partial(R.network_sort, network="bitonic", steepness=3.0),
    "soft_rank_l2": functools.partial(R.soft_rank, regularization_strength=0.7),
    "soft_rank_kl": functools.partial(R.soft_rank, regularization_strength=0.7, regularization="kl", descending=True),
    "soft_sort_l2": functools.partial(R.soft_sort, regularization_strength=0.4),
    "soft_sort_kl": functools.partial(R.soft_sort, regularization_strength=0.6, regularization="kl", descending=True),
    "network_permutation": functools.partial(R.network_permutation, steepness=3.0),
    "network_permutation_bitonic": functools.partial(
        R.network_permutation, network="bitonic", sigmoid="optimal", steepness=3.0
    ),
    "soft_top_k": functools.partial(R.soft_top_k, k=2, steepness=3.0),
    "perturbed": functools.partial(dc.perturbed(S.argmax, sigma=0.5, num_samples=6), noise=_NOISE),
    "perturbed_cv": functools.partial(
        dc.perturbed(functools.partial(S.top_k, k=2), sigma=0.5, num_samples=6, control_variate=True),
        noise=_NOISE,
    ),
    "perturbed_max": functools.partial(dc.perturbed_max(S.argmax, sigma=0.5, num_samples=6), noise=_NOISE),
}
SMOOTH = [n for n in FUNCTIONS if not n.startswith("perturbed")]


def _theta() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(2, 5))


def _jvp_of(name: str, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The explicit JVP in θ, on NumPy (through the op the function binds)."""
    f = FUNCTIONS[name]
    captured = {}
    original = dc.op.apply_op

    def spy(op, *inputs):
        if "op" not in captured:  # the outer op (a perturbed op calls its solver inside)
            captured["op"], captured["inputs"] = op, inputs
        return original(op, *inputs)

    dc.op.apply_op = spy
    try:
        f(theta)
    finally:
        dc.op.apply_op = original
    op, inputs = captured["op"], captured["inputs"]
    xp = dc.backend_for(theta).namespace(theta)
    y, residuals = op.forward(*inputs, xp=xp)
    pos = [i for i, x in enumerate(inputs) if x is theta or np.shares_memory(x, theta)]
    tangents = tuple(u if i in pos else None for i in range(len(inputs)))
    if name == "soft_if":  # θ enters twice: then = θ, else = 2θ
        tangents = (None, u, 2 * u)
    t = op.jvp(residuals, tangents, xp=xp)
    return np.zeros_like(y) if t is None else t


@pytest.mark.parametrize("name", SMOOTH)
def test_jvp_matches_central_finite_differences(name: str) -> None:
    theta, u = _theta(), np.random.default_rng(4).normal(size=(2, 5))
    f, h = FUNCTIONS[name], 1e-6
    fd = (f(theta + h * u) - f(theta - h * u)) / (2 * h)
    np.testing.assert_allclose(_jvp_of(name, theta, u), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_jvp_is_the_transpose_of_the_vjp(name: str) -> None:
    """<J u, v> = <u, Jᵀ v> with the same noise: the perturbed estimators' JVP is the
    Monte-Carlo transpose of their score-function VJP, not merely equal in expectation."""
    theta = _theta()
    rng = np.random.default_rng(5)
    u = rng.normal(size=theta.shape)
    y = FUNCTIONS[name](theta)
    v = rng.normal(size=np.shape(y))
    f = FUNCTIONS[name]
    if isinstance(f, functools.partial):
        _, vjp = dc.value_and_vjp(f.func, theta, *f.args, **f.keywords)
        grad = vjp(v)
    else:
        # the lambdas (other arrays fixed) are smooth: central differences give the VJP
        grad = dc.testing.finite_difference_vjp(f, theta, v)
    left, right = np.sum(_jvp_of(name, theta, u) * v), np.sum(u * grad)
    np.testing.assert_allclose(left, right, rtol=1e-6, atol=1e-9)


def test_value_and_jvp_and_the_error_naming_the_op() -> None:
    theta = _theta()
    y, jvp = value_and_jvp(R.softmax, theta, tau=0.7)
    u = np.ones_like(theta)
    np.testing.assert_allclose(jvp(u), 0.0, atol=1e-15)  # softmax is shift invariant
    np.testing.assert_allclose(y, R.softmax(theta, tau=0.7))
    assert has_jvp(R.softmax.bind(theta).op) and not has_jvp(S.sort.bind(theta).op)
    assert has_jvp(S.argmax.bind(theta).op)  # piecewise constant: the zero JVP
    with pytest.raises(NotImplementedError, match="relaxed_subset: this dopt op has no forward-mode"):
        value_and_jvp(R.relaxed_subset, theta, 2, noise=np.zeros_like(theta))
    assert forward_mode_error(S.sort.bind(theta).op).startswith("sort: ")


# ---------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------
# JAX: soft_rank keeps its explicit VJP there (no forward mode), see below
PLUGIN_CASES = ["softmax", "perturbed", "perturbed_max", "soft_sort_kl"]
# torch also: soft rank, and an op whose output is a view (a slice of the padded bitonic
# matrix)
TORCH_CASES = [*PLUGIN_CASES, "soft_rank_kl", "network_permutation_bitonic"]


@pytest.mark.parametrize("name", ["soft_rank"])
def test_jax_keeps_soft_ranks_exact_vjp_and_refuses_forward_mode(name: str) -> None:
    """JAX would derive soft_rank's reverse mode by transposing its JVP, which loses the
    VJP's exact zeros as the strength → 0 (Op.jvp_transposes_exactly): it keeps the
    explicit VJP, and forward mode names the op."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax as dj

    x = jnp.asarray(_theta())
    f = functools.partial(getattr(dj.relax, name), regularization_strength=1e-30)
    g = jnp.asarray(np.random.default_rng(7).normal(size=x.shape).astype(x.dtype))
    grad = np.asarray(jax.vjp(f, x)[1](g)[0])
    core = getattr(dc.relax, name)
    ref = dc.value_and_vjp(core, np.asarray(x), regularization_strength=1e-30)[1](np.asarray(g))
    np.testing.assert_array_equal(grad, ref)
    with pytest.raises(TypeError, match=name):
        jax.jvp(f, (x,), (g,))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", PLUGIN_CASES)
def test_jax_jvp_jacfwd_linearize_match_the_core(name: str, dtype: str) -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax  # noqa: F401

    if dtype == "float64" and not jax.config.jax_enable_x64:
        pytest.skip("x64 disabled")
    theta = _theta().astype(dtype)
    u = np.random.default_rng(6).normal(size=theta.shape).astype(dtype)
    f = FUNCTIONS[name]
    kw = dict(f.keywords) if isinstance(f, functools.partial) else {}
    if "noise" in kw:
        kw["noise"] = jnp.asarray(kw["noise"].astype(dtype))
    fn = (lambda t: f.func(t, *f.args, **kw)) if isinstance(f, functools.partial) else f
    expected = _jvp_of(name, theta.astype(np.float64), u.astype(np.float64))
    tol = 1e-5 if dtype == "float32" else 1e-12
    _, t = jax.jit(lambda a, b: jax.jvp(fn, (a,), (b,)))(jnp.asarray(theta), jnp.asarray(u))
    assert t.dtype == jnp.dtype(dtype)
    np.testing.assert_allclose(np.asarray(t), expected, rtol=tol, atol=tol)
    _, lin = jax.linearize(fn, jnp.asarray(theta))
    np.testing.assert_allclose(np.asarray(lin(jnp.asarray(u))), expected, rtol=tol, atol=tol)
    if dtype == "float64":
        x = jnp.asarray(theta)
        np.testing.assert_allclose(np.asarray(jax.jacfwd(fn)(x)), np.asarray(jax.jacrev(fn)(x)), atol=1e-12)


def test_jax_vmap_of_jvp_and_the_error_for_ops_without_one() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax as dj

    x = jnp.asarray(_theta())
    u = jnp.ones_like(x).at[:, 0].set(2.0)
    soft = functools.partial(dj.relax.softmax, tau=0.7)
    batched = jax.vmap(lambda a, b: jax.jvp(soft, (a,), (b,))[1])(x, u)
    np.testing.assert_allclose(np.asarray(batched), _jvp_of("softmax", np.asarray(x), np.asarray(u)), atol=1e-6)
    with pytest.raises(TypeError, match="relaxed_subset: this dopt op has no forward-mode"):
        jax.jacfwd(lambda t: dj.relax.relaxed_subset(t, 2, noise=jnp.zeros_like(t)))(x)
    with pytest.raises(TypeError, match="sort: this dopt op has no forward-mode"):
        jax.jvp(dj.solvers.sort, (x,), (u,))
    np.testing.assert_array_equal(np.asarray(jax.jacfwd(dj.solvers.argmax)(x)), 0.0)


# ---------------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", TORCH_CASES)
def test_torch_func_jvp_and_dual_tensors_match_the_core(name: str, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    import torch.autograd.forward_ad as fwAD

    import dopt_torch  # noqa: F401

    theta = _theta().astype(dtype)
    u = np.random.default_rng(6).normal(size=theta.shape).astype(dtype)
    f = FUNCTIONS[name]
    kw = dict(f.keywords) if isinstance(f, functools.partial) else {}
    if "noise" in kw:
        kw["noise"] = torch.from_numpy(kw["noise"].astype(dtype))
    fn = (lambda t: f.func(t, *f.args, **kw)) if isinstance(f, functools.partial) else f
    expected = _jvp_of(name, theta.astype(np.float64), u.astype(np.float64))
    tol = 1e-5 if dtype == "float32" else 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, about torch.jit
        _, t = torch.func.jvp(fn, (torch.from_numpy(theta),), (torch.from_numpy(u),))
        jf = torch.func.jacfwd(fn)(torch.from_numpy(theta))
        jr = torch.func.jacrev(fn)(torch.from_numpy(theta))
    assert t.dtype == getattr(torch, dtype)
    np.testing.assert_allclose(t.numpy(), expected, rtol=tol, atol=tol)
    np.testing.assert_allclose(jf.numpy(), jr.numpy(), rtol=tol, atol=tol)
    with fwAD.dual_level():
        out = fn(fwAD.make_dual(torch.from_numpy(theta), torch.from_numpy(u)))
        np.testing.assert_allclose(fwAD.unpack_dual(out).tangent.numpy(), expected, rtol=tol, atol=tol)


def test_torch_forward_mode_error_names_the_op() -> None:
    torch = pytest.importorskip("torch")
    import torch.autograd.forward_ad as fwAD

    import dopt_torch as dt

    x = torch.from_numpy(_theta())
    with warnings.catch_warnings(), fwAD.dual_level(), pytest.raises(NotImplementedError, match="relaxed_subset: this dopt op"):
        warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, about torch.jit
        dt.relax.relaxed_subset(fwAD.make_dual(x, torch.ones_like(x)), 2, noise=torch.zeros_like(x))
    with warnings.catch_warnings(), pytest.raises(NotImplementedError, match="sort: this dopt op"):
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.func.jacfwd(dt.solvers.sort)(x)


def test_sorting_network_forward_mode_through_the_permutation() -> None:
    """``sorting_network`` returns ``(x @ P, P)``: forward mode runs through
    ``network_permutation``'s JVP (both networks), and the values' tangent equals
    ``network_sort``'s JVP (the same network, linear in x for fixed α)."""
    torch = pytest.importorskip("torch")
    import dopt_torch as dt

    x, u = _theta(), np.random.default_rng(8).normal(size=(2, 5))
    for network in ("odd_even", "bitonic"):
        f = functools.partial(dt.relax.sorting_network, network=network, steepness=3.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch's own, about torch.jit
            _, (ty, tp) = torch.func.jvp(f, (torch.from_numpy(x),), (torch.from_numpy(u),))
            jf = torch.func.jacfwd(lambda t: f(t)[0])(torch.from_numpy(x[0]))
            jr = torch.func.jacrev(lambda t: f(t)[0])(torch.from_numpy(x[0]))
        _, ref = value_and_jvp(R.network_sort, x, network=network, steepness=3.0)
        np.testing.assert_allclose(ty.numpy(), ref(u), atol=1e-12)
        _, ref_p = value_and_jvp(R.network_permutation, x, network=network, steepness=3.0)
        np.testing.assert_allclose(tp.numpy(), ref_p(u), atol=1e-12)
        np.testing.assert_allclose(jf.numpy(), jr.numpy(), atol=1e-12)
