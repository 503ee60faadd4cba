"""Randomness in one place (issue 10 points 2 and 3, issue 11 class 16).

* ``_lib/_random.bind_noise``: every stochastic op refuses ``rng`` together with
  ``noise`` and checks a given noise's backend, dtype, shape and values against θ;
* the noise laws live in ``dopt_core/noise.py`` on top of the adapters' basic draws:
  the float32 Gumbel draw stays finite on every backend, and a NumPy ``Generator``
  gives the NumPy reference values of every law on every backend;
* one rng rule on every backend: negative seeds, arrays of split JAX keys and a
  generator of another framework are refused with a message naming ``rng``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc
from dopt_core.backend import int_seed
from dopt_core.noise import GUMBEL, Gumbel, Normal, SumOfGamma, gumbel_from_exponential

S = dc.solvers
THETA = np.array([[0.3, -1.0, 2.0], [0.0, 0.5, -0.2]])

# Every stochastic op of the library: (label, f(theta, *, rng, noise), noise shape for THETA)
M = 4
STOCHASTIC: list[tuple[str, Callable[..., Any], tuple[int, ...]]] = [
    ("perturbed", lambda t, **kw: dc.perturbed(S.argmax, num_samples=M)(t, **kw), (M, 2, 3)),
    ("perturbed_max", lambda t, **kw: dc.perturbed_max(S.argmax, num_samples=M, noise="gumbel")(t, **kw), (M, 2, 3)),
    ("fenchel_young_loss", lambda t, **kw: dc.fenchel_young_loss(S.argmax, num_samples=M)(t, S.argmax(t), **kw), (M, 2, 3)),
    ("imle", lambda t, **kw: dc.imle(S.argmax, num_samples=M)(t, **kw), (M, 2, 3)),
    ("identity", lambda t, **kw: dc.identity(S.argmax, noise="gumbel", noise_sigma=1.0)(t, **kw), (2, 3)),
    ("gumbel_softmax", lambda t, **kw: dc.relax.gumbel_softmax(t, tau=0.5, **kw), (2, 3)),
]
IDS = [s[0] for s in STOCHASTIC]


def _native_rng(env: conformance.Env, seed: int) -> Any:
    if env.autodiff == "jax":
        import jax

        return jax.random.key(seed)
    if env.autodiff == "torch":
        import torch

        return torch.Generator(device=env.device).manual_seed(seed)
    return seed


# --- the binder -------------------------------------------------------------------------
@pytest.mark.parametrize(("label", "op", "shape"), STOCHASTIC, ids=IDS)
def test_rng_and_noise_together_are_refused(backend: conformance.Env, label: str, op: Any, shape: Any) -> None:
    """``gumbel_softmax(..., rng=0, noise=...)`` used to ignore rng silently."""
    theta = backend.asarray(THETA)
    z = backend.asarray(np.zeros(shape))
    with pytest.raises(ValueError, match="pass either rng or noise, not both"):
        op(theta, rng=0, noise=z)


@pytest.mark.parametrize(("label", "op", "shape"), STOCHASTIC, ids=IDS)
def test_given_noise_is_checked_against_theta(backend: conformance.Env, label: str, op: Any, shape: Any) -> None:
    theta = backend.asarray(THETA)
    with pytest.raises(ValueError, match=r"noise must have .*shape.*got \(7,\)"):
        op(theta, noise=backend.asarray(np.zeros(7)))
    with pytest.raises(TypeError, match="noise must have a real floating dtype"):
        op(theta, noise=backend.asarray(np.zeros(shape, dtype=np.int64)))
    with pytest.raises(ValueError, match="noise contains NaN or infinite values"):
        op(theta, noise=backend.asarray(np.full(shape, np.nan)))
    with pytest.raises(TypeError, match="noise must be an array"):
        op(theta, noise=np.zeros(shape).tolist())
    if backend.name not in ("numpy", "numpy_readonly"):
        with pytest.raises(TypeError, match="noise is a numpy array but theta is a"):
            op(theta, noise=np.zeros(shape))
    # the right noise is accepted, and the result does not depend on any rng
    z = np.random.default_rng(5).gumbel(size=shape)
    y1 = backend.to_numpy(op(theta, noise=backend.asarray(z)))
    y2 = backend.to_numpy(op(theta, noise=backend.asarray(z)))
    np.testing.assert_array_equal(y1, y2)


def test_given_noise_is_used_as_is(backend: conformance.Env) -> None:
    """gumbel_softmax with pre-drawn G equals softmax((θ + G)/τ) computed here (closed form)."""
    g = np.random.default_rng(3).gumbel(size=THETA.shape)
    y = backend.to_numpy(dc.relax.gumbel_softmax(backend.asarray(THETA), tau=0.5, noise=backend.asarray(g)))
    z = (THETA + g) / 0.5
    ref = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(y, ref / ref.sum(-1, keepdims=True), rtol=1e-12)


# --- class 16: one rng rule on every backend ----------------------------------------------
@pytest.mark.parametrize(("label", "op", "shape"), STOCHASTIC, ids=IDS)
def test_negative_seeds_are_refused_everywhere(backend: conformance.Env, label: str, op: Any, shape: Any) -> None:
    theta = backend.asarray(THETA)
    for seed in (-1, np.int64(-3), 2**63, 2**64):  # torch/JAX overflow at 2**63 or 2**64
        with pytest.raises(ValueError, match=r"rng must be an int seed in \[0, 2\*\*63\), got -?\d"):
            op(theta, rng=seed)
    for bad in (True, "0", 1.0, np.random.RandomState(0)):
        with pytest.raises(TypeError, match="rng must be"):
            op(theta, rng=bad)


def test_int_seed_rule() -> None:
    assert int_seed(3) == 3 and type(int_seed(np.uint8(3))) is int
    assert int_seed(None) is None and int_seed(True) is None and int_seed(np.bool_(False)) is None
    assert int_seed(2.0) is None
    with pytest.raises(ValueError, match=r"rng must be an int seed in \[0, 2\*\*63\), got -1"):
        int_seed(-1)
    assert int_seed(2**63 - 1) == 2**63 - 1


def test_generators_of_another_framework_are_type_errors(backend: conformance.Env) -> None:
    theta = backend.asarray(THETA)
    others: list[tuple[Any, str]] = []
    if backend.autodiff != "torch":
        torch = pytest.importorskip("torch")
        others.append((torch.Generator(), "torch.Generator"))
    if backend.autodiff != "jax":
        jax = pytest.importorskip("jax")
        others.append((jax.random.key(0), "jax"))
    for rng, name in others:
        with pytest.raises(TypeError, match=f"rng must be .*got {name}"):
            dc.relax.gumbel_softmax(theta, tau=1.0, rng=rng)
        with pytest.raises(TypeError, match=f"rng must be .*got {name}"):
            dc.perturbed(S.argmax)(theta, rng=rng)


def test_split_jax_keys_are_refused() -> None:
    jax = pytest.importorskip("jax")
    theta = jax.numpy.asarray(THETA)
    f = dc.perturbed(S.argmax, num_samples=M)
    for keys, n in [(jax.random.split(jax.random.key(0), 3), 3), (jax.random.split(jax.random.PRNGKey(0), 5), 5)]:
        for op in (f, lambda t, rng: dc.relax.gumbel_softmax(t, tau=1.0, rng=rng)):
            with pytest.raises(ValueError, match=f"rng must be one JAX key, got an array of {n} keys"):
                op(theta, rng=keys)
    with pytest.raises(ValueError, match="rng must be one JAX key"):
        f(theta, rng=jax.random.split(jax.random.key(0), (2, 2)))
    with pytest.raises(TypeError, match="rng must be a jax.random.key"):
        f(theta, rng=jax.numpy.zeros(3))
    # one key of the split works, typed or raw, and is the key it is
    k = jax.random.split(jax.random.key(0), 3)[1]
    raw = jax.random.split(jax.random.PRNGKey(0), 3)[1]
    np.testing.assert_array_equal(np.asarray(f(theta, rng=k)), np.asarray(f(theta, rng=k)))
    b = dc.backend_for(theta)
    z_k, z_0 = (np.asarray(GUMBEL.sample(b, key, (8,), like=theta)) for key in (k, jax.random.key(0)))
    assert np.isfinite(z_k).all() and not np.array_equal(z_k, z_0)
    assert np.asarray(f(theta, rng=raw)).shape == THETA.shape


# --- point 3: the noise laws, once, on the basic draws --------------------------------------
def test_float32_gumbel_transform_is_finite_on_every_backend(backend: conformance.Env) -> None:
    """An exponential draw that rounds to 0 maps to -log(smallest normal) = 87.336..., not inf."""
    e = backend.asarray(np.array([0.0, 1e-45, np.finfo(np.float32).tiny, 1.0, 2.0], dtype=np.float32))
    g = backend.to_numpy(gumbel_from_exponential(e, backend=dc.backend_for(e)))
    top = -np.log(np.float64(np.finfo(np.float32).tiny))
    np.testing.assert_allclose(g, [top, top, top, 0.0, -np.log(2.0)], rtol=1e-6)
    assert g.dtype == np.float32 and np.isfinite(g).all()


@pytest.mark.parametrize("law", [Normal(), Gumbel(), SumOfGamma(3.0, 5)], ids=lambda law: law.name)
def test_numpy_generator_gives_the_numpy_reference_everywhere(backend: conformance.Env, law: Any) -> None:
    """A NumPy Generator samples the whole law on the host: identical values on every
    backend (sum-of-Gamma included: its sum is taken on the host too)."""
    like = backend.asarray(np.zeros(1))
    b = dc.backend_for(like)
    z = backend.to_numpy(law.sample(b, np.random.default_rng(9), (6, 5), like=like))
    ref = law.sample(dc.backend_for(np.zeros(1)), np.random.default_rng(9), (6, 5), like=np.zeros(1))
    np.testing.assert_array_equal(z, ref)


@pytest.mark.parametrize("law", [Normal(), Gumbel(), SumOfGamma(2.0, 4)], ids=lambda law: law.name)
def test_native_draws_follow_the_seed(backend: conformance.Env, law: Any) -> None:
    like = backend.asarray(np.zeros(1, dtype=np.float32))
    b = dc.backend_for(like)
    z1 = backend.to_numpy(law.sample(b, _native_rng(backend, 4), (50,), like=like))
    z2 = backend.to_numpy(law.sample(b, _native_rng(backend, 4), (50,), like=like))
    z3 = backend.to_numpy(law.sample(b, _native_rng(backend, 5), (50,), like=like))
    np.testing.assert_array_equal(z1, z2)
    assert z1.dtype == np.float32 and not np.array_equal(z1, z3)


def test_gumbel_softmax_draws_the_gumbel_law(backend: conformance.Env) -> None:
    """Gumbel-max through the binder: argmax of gumbel_softmax at small τ follows
    softmax(θ). 4000 rows; tolerance 5 standard errors of each frequency."""
    n, theta = 4000, np.log(np.array([0.2, 0.3, 0.5]))
    y = backend.to_numpy(dc.relax.gumbel_softmax(backend.asarray(np.tile(theta, (n, 1))), tau=0.05, rng=_native_rng(backend, 1)))
    freq = np.bincount(y.argmax(-1), minlength=3) / n
    p = np.array([0.2, 0.3, 0.5])
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))


def test_adapters_make_only_basic_draws() -> None:
    """No plugin adapter writes a law: no log, no Gumbel, no draw() override."""
    root = pathlib.Path(dc.__file__).parent.parent
    for plugin in ("dopt_torch", "dopt_jax", "dopt_cupy"):
        text = (root / plugin / "_backend.py").read_text()
        assert "log(" not in text and "gumbel" not in text.lower(), plugin
        assert "def draw(" not in text and "def native_draw(" in text, plugin
    assert GUMBEL is dc.noise.get_noise("gumbel")
    with pytest.raises(ValueError, match="noise kind must be one of .*dopt_core.noise"):
        dc.backend_for(np.zeros(1)).draw(0, "gumbel", (2,), like=np.zeros(1))
