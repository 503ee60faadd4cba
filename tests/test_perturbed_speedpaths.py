"""The fast paths of the perturbed arg-max, against the general estimator and closed forms.

* ``perturbed(argmax)`` keeps the samples as indices (histogram forward, gather VJP,
  scatter JVP): with given noise its values and VJP equal, bit for bit, those of the
  general path (the same argmax behind ``functools.partial``, which takes it), and its
  JVP agrees to rounding (another summation order);
* Gumbel noise drawn by the backend's generator enters the op as ``E ~ Exp(1)``
  (``Z = -log E`` inside): same values as the general path for the same seed, VJP
  (score ``1 - E`` instead of ``1 - exp(-Z)``) to rounding;
* ``rao_blackwell=True``: unbiased for the exact Jacobian of softmax(θ/ε) (fixed seeds,
  tolerance from the Monte-Carlo standard error), lower variance than the score
  estimator, and its closed form on given noise.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import dopt_core as dc
from dopt_core._lib._scatter import one_hot_sum
from dopt_core.op import value_and_jvp

torch = pytest.importorskip("torch")
import dopt_torch  # noqa: E402,F401

S = dc.solvers
GENERAL_ARGMAX = functools.partial(S.argmax)  # not `argmax` itself: the one-hot path


def _softmax_jacobian_t(theta: np.ndarray, g: np.ndarray, sigma: float) -> np.ndarray:
    p = np.exp(theta / sigma - np.max(theta / sigma, axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return (p * g - np.sum(p * g, axis=-1, keepdims=True) * p) / sigma


CONFIGS = [
    dict(noise="gumbel"),
    dict(noise="gumbel", control_variate=True),
    dict(noise="normal"),
    dict(noise="normal", control_variate=True),
    dict(noise="normal", multiplicative=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_index_path_equals_one_hot_path_on_given_noise(cfg: dict, dtype: type) -> None:
    rng = np.random.default_rng(0)
    shape, m = (3, 4, 6), 11
    theta = rng.normal(size=shape).astype(dtype)
    if cfg.get("multiplicative"):
        theta = -np.abs(theta) - 0.5
    z = (rng.standard_normal((m, *shape)) if cfg["noise"] == "normal" else -np.log(rng.standard_exponential((m, *shape)))).astype(dtype)
    g, u = rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)
    fast = dc.perturbed(S.argmax, sigma=0.7, num_samples=m, **cfg)
    slow = dc.perturbed(GENERAL_ARGMAX, sigma=0.7, num_samples=m, **cfg)
    for wrap in (np.asarray, torch.tensor):
        outs = []
        for f in (fast, slow):
            y, vjp = dc.value_and_vjp(f, wrap(theta), noise=wrap(z))
            _, jvp_fn = value_and_jvp(f, wrap(theta), noise=wrap(z))
            jvp = jvp_fn(wrap(u))
            outs.append([np.asarray(dc.backend_for(a).to_numpy(a)) for a in (y, vjp(wrap(g)), jvp)])
        np.testing.assert_array_equal(outs[0][0], outs[1][0])  # values
        np.testing.assert_array_equal(outs[0][1], outs[1][1])  # VJP
        tol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(outs[0][2], outs[1][2], rtol=tol, atol=tol)  # JVP: summation order
        assert np.abs(outs[0][1]).max() > 0.1  # a non-trivial gradient was compared


def test_index_path_equals_one_hot_path_in_jax() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax  # noqa: F401

    rng = np.random.default_rng(1)
    theta = jnp.asarray(rng.normal(size=(4, 5)), dtype=jnp.float32)
    z = jnp.asarray(-np.log(rng.standard_exponential((9, 4, 5))), dtype=jnp.float32)
    g = jnp.asarray(rng.normal(size=(4, 5)), dtype=jnp.float32)
    res = []
    for solver in (S.argmax, GENERAL_ARGMAX):
        f = dc.perturbed(solver, sigma=0.5, num_samples=9, noise="gumbel", control_variate=True)
        y, pull = jax.vjp(jax.jit(lambda t, f=f: f(t, noise=z)), theta)
        res.append((np.asarray(y), np.asarray(pull(g)[0])))
        # and from a key: the drawn E gives the same values as the drawn Z did
        y2, pull2 = jax.vjp(lambda t, f=f: f(t, rng=jax.random.key(3)), theta)
        res.append((np.asarray(y2), np.asarray(pull2(g)[0])))
    np.testing.assert_array_equal(res[0][0], res[2][0])
    np.testing.assert_allclose(res[0][1], res[2][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(res[1][0], res[3][0])
    np.testing.assert_allclose(res[1][1], res[3][1], rtol=1e-5, atol=1e-6)
    assert np.abs(res[0][1]).max() > 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_drawn_gumbel_same_values_vjp_to_rounding(dtype: torch.dtype) -> None:
    theta = torch.randn(8, 7, dtype=dtype, generator=torch.Generator().manual_seed(0))
    g = torch.randn(8, 7, dtype=dtype, generator=torch.Generator().manual_seed(1))
    got = []
    for solver in (S.argmax, GENERAL_ARGMAX):
        f = dc.perturbed(solver, sigma=0.5, num_samples=20, noise="gumbel")
        t = theta.clone().requires_grad_(True)
        y = f(t, rng=torch.Generator().manual_seed(5))
        (gr,) = torch.autograd.grad(y, t, g)
        got.append((y.detach(), gr))
    assert torch.equal(got[0][0], got[1][0])
    eps = float(torch.finfo(dtype).eps)
    torch.testing.assert_close(got[0][1], got[1][1], rtol=50 * eps, atol=50 * eps)
    assert got[0][1].abs().max() > 0.1


@pytest.mark.parametrize("m", [1, 3, 7, 10, 100, 333])
def test_histogram_is_the_mean_of_one_hot_rows(m: int) -> None:
    rng = np.random.default_rng(m)
    idx = rng.integers(0, 6, size=(m, 5, 2))
    w = rng.normal(size=(m, 5, 2)).astype(np.float32)
    for dt in (np.float32, np.float64):
        oh = (idx[..., None] == np.arange(6)).astype(dt)
        like = np.zeros(1, dtype=dt)
        np.testing.assert_array_equal(one_hot_sum(idx, 6, like=like, xp=np) / m, np.mean(oh, axis=0))
        tl = torch.zeros(1, dtype=getattr(torch, np.dtype(dt).name))
        got = one_hot_sum(torch.tensor(idx), 6, like=tl, xp=dc.backend_for(tl).namespace(tl)) / m
        assert torch.equal(got, torch.mean(torch.tensor(oh), dim=0))
    ref = np.sum(oh * w[..., None].astype(np.float64), axis=0)
    np.testing.assert_allclose(one_hot_sum(idx, 6, like=like, weights=w.astype(np.float64), xp=np), ref, rtol=1e-12)
    tw = one_hot_sum(torch.tensor(idx), 6, like=torch.zeros(1), weights=torch.tensor(w), xp=dc.backend_for(tl).namespace(tl))
    np.testing.assert_allclose(tw.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_non_finite_perturbed_scores_still_raise() -> None:
    f = dc.perturbed(S.argmax, sigma=1e38, num_samples=2, noise="normal")
    theta = np.array([3e38, 0.0], dtype=np.float32)
    noise = np.array([[10.0, 0.0], [0.0, 0.0]], dtype=np.float32)  # θ + εZ overflows to inf
    for wrap in (np.asarray, torch.tensor):
        with pytest.raises(ValueError, match="finite"), np.errstate(over="ignore"):
            f(wrap(theta), noise=wrap(noise))


# --- rao_blackwell=True ---------------------------------------------------------------
THETA = np.array([[0.0, 1.0, 2.0, -0.5], [0.3, 0.3, -1.0, 0.8]])
G = np.array([[1.0, -2.0, 0.5, 1.5], [0.3, 2.0, -1.0, 0.7]])
SIGMA = 0.7


@pytest.mark.parametrize("control_variate", [False, True])
@pytest.mark.parametrize("backend", ["numpy", "torch", "torch_host"])
def test_rao_blackwell_unbiased_and_lower_variance(backend: str, control_variate: bool) -> None:
    m, runs = 20, 400
    exact = _softmax_jacobian_t(THETA, G, SIGMA)
    kw = dict(sigma=SIGMA, num_samples=m, noise="gumbel", control_variate=control_variate)
    rb = dc.perturbed(S.argmax, rao_blackwell=True, **kw)
    sf = dc.perturbed(S.argmax, **kw)
    wrap = np.asarray if backend == "numpy" else torch.tensor
    est = {"rb": [], "sf": []}
    for r in range(runs):
        rng = (np.random.default_rng(r) if backend == "torch_host" else r)
        for name, f in (("rb", rb), ("sf", sf)):
            y, vjp = dc.value_and_vjp(f, wrap(THETA), rng=rng)
            est[name].append(np.asarray(dc.backend_for(y).to_numpy(vjp(wrap(G)))))
    a = np.array(est["rb"])
    se = a.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(a.mean(axis=0) - exact) < 4.5 * se + 1e-12), (a.mean(axis=0), exact, se)
    assert np.all(se > 0)
    # Rao-Blackwell: no larger variance per entry than the score-function estimator
    # (much smaller in total here)
    b = np.array(est["sf"])
    assert a.var(axis=0).sum() < 0.5 * b.var(axis=0).sum()


def test_rao_blackwell_on_given_noise_is_the_closed_form() -> None:
    rng = np.random.default_rng(3)
    m = 13
    z = -np.log(rng.standard_exponential((m, *THETA.shape)))
    u = rng.normal(size=THETA.shape)
    rb = dc.perturbed(S.argmax, sigma=SIGMA, num_samples=m, noise="gumbel", rao_blackwell=True)
    sf = dc.perturbed(S.argmax, sigma=SIGMA, num_samples=m, noise="gumbel")
    p = np.exp(THETA / SIGMA)
    p /= p.sum(axis=-1, keepdims=True)
    for wrap in (np.asarray, torch.tensor):
        y, vjp = dc.value_and_vjp(rb, wrap(THETA), noise=wrap(z))
        y = np.asarray(dc.backend_for(y).to_numpy(y))
        np.testing.assert_array_equal(y, dc.backend_for(wrap(THETA)).to_numpy(sf(wrap(THETA), noise=wrap(z))))
        want = (y * G - np.sum(y * G, axis=-1, keepdims=True) * p) / SIGMA
        got = dc.backend_for(wrap(G)).to_numpy(vjp(wrap(G)))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
        # the JVP is the VJP's transpose: <J u, g> = <u, J^T g>
        _, jvp_fn = value_and_jvp(rb, wrap(THETA), noise=wrap(z))
        ju = jvp_fn(wrap(u))
        lhs = float(np.sum(dc.backend_for(ju).to_numpy(ju) * G))
        assert lhs == pytest.approx(float(np.sum(u * got)), rel=1e-12)


def test_rao_blackwell_in_jax_unbiased() -> None:
    jax = pytest.importorskip("jax")
    import dopt_jax  # noqa: F401

    m, runs = 20, 300
    theta, g = jax.numpy.asarray(THETA, dtype="float32"), jax.numpy.asarray(G, dtype="float32")
    f = dc.perturbed(S.argmax, sigma=SIGMA, num_samples=m, noise="gumbel", rao_blackwell=True)

    @jax.jit
    def step(key: object) -> object:
        y, pull = jax.vjp(lambda t: f(t, rng=key), theta)
        return y, pull(g)[0]

    out = [step(k) for k in jax.random.split(jax.random.key(0), runs)]
    ys = np.array([np.asarray(o[0]) for o in out])
    vs = np.array([np.asarray(o[1]) for o in out])
    np.testing.assert_allclose(ys.sum(axis=-1), 1.0, rtol=1e-6)  # m samples per instance
    exact = _softmax_jacobian_t(THETA, G, SIGMA)
    se = vs.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(vs.mean(axis=0) - exact) < 4.5 * se + 1e-6)
    p = np.exp(THETA / SIGMA)
    p /= p.sum(axis=-1, keepdims=True)
    se_y = ys.std(axis=0, ddof=1) / np.sqrt(runs)
    assert np.all(np.abs(ys.mean(axis=0) - p) < 4.5 * se_y + 1e-6)


def test_rao_blackwell_refuses_other_settings() -> None:
    with pytest.raises(ValueError, match="argmax"):
        dc.perturbed(functools.partial(S.top_k, k=2), noise="gumbel", rao_blackwell=True)
    with pytest.raises(ValueError, match="gumbel"):
        dc.perturbed(S.argmax, noise="normal", rao_blackwell=True)
    with pytest.raises(TypeError, match="rao_blackwell"):
        dc.perturbed(S.argmax, noise="gumbel", rao_blackwell="yes")


def test_jax_first_argmax_is_argmax_with_ties_infinities_and_nan() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dopt_jax  # noqa: F401
    from dopt_core._lib._scatter import first_argmax

    x = np.random.default_rng(0).integers(0, 3, size=(40, 7)).astype(np.float32)  # many ties
    x[3, 2] = np.nan
    x[4, 5] = np.inf
    x[5] = -np.inf
    x[6, [1, 4]] = np.nan
    xj = jnp.asarray(x)
    want = np.argmax(x, axis=-1)  # NumPy: lowest index among ties, first NaN
    np.testing.assert_array_equal(np.asarray(first_argmax(xj, xp=jnp)), want)
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda a: first_argmax(a, xp=jnp))(xj)), want)
    np.testing.assert_array_equal(np.asarray(jnp.argmax(xj, axis=-1)), want)
