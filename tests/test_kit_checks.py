"""The validator family of ``dopt_core/_lib/_checks.py`` (issue 10 point 1, issue 11
classes 14, 17, 18, 20): one rule per kind of argument, the same answer in every op.

* a wrong *kind* (string, None, complex, bool, non-scalar array) is a ``TypeError``, a
  wrong *value* (≤ 0, NaN, inf) a ``ValueError``, both naming the argument;
* a concrete 0-d array of any backend is a number (converted to a Python scalar); a
  traced one (``jax.jit``) is a ``TypeError`` saying the argument must be static;
* factories validate every argument when they are built;
* NumPy arrays of extension dtypes (``ml_dtypes.bfloat16``) get a ``TypeError`` naming
  the argument instead of NumPy's own message.
"""

from __future__ import annotations

import ast
import functools
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc

S = dc.solvers
R = dc.relax

# (label, call with the hyper-parameter value v, argument name, smallest allowed value)
# "positive" arguments refuse 0; "nonnegative" ones accept it.
X4 = np.array([[0.3, -1.0, 2.0, 0.5]])
POSITIVE: list[tuple[str, Callable[[Any], Any], str]] = [
    ("perturbed", lambda v: dc.perturbed(S.argmax, sigma=v), "sigma"),
    ("perturbed_max", lambda v: dc.perturbed_max(S.argmax, sigma=v), "sigma"),
    ("fenchel_young_loss", lambda v: dc.fenchel_young_loss(S.argmax, sigma=v), "sigma"),
    ("imle.sigma", lambda v: dc.imle(S.argmax, sigma=v), "sigma"),
    ("imle.lam", lambda v: dc.imle(S.argmax, lam=v), "lam"),
    ("imle.kappa", lambda v: dc.imle(S.argmax, kappa=v), "kappa"),
    ("interpolation", lambda v: dc.interpolation(S.argmax, lam=v), "lam"),
    ("SumOfGamma", lambda v: dc.noise.SumOfGamma(kappa=v), "kappa"),
    ("softmax", lambda v: R.softmax(X4, tau=v), "tau"),
    ("sparsemax", lambda v: R.sparsemax(X4, tau=v), "tau"),
    ("gumbel_softmax", lambda v: R.gumbel_softmax(X4, tau=v, rng=0), "tau"),
    ("soft_sort", lambda v: R.soft_sort(X4, regularization_strength=v), "regularization_strength"),
    ("soft_rank", lambda v: R.soft_rank(X4, regularization_strength=v), "regularization_strength"),
    ("network_sort", lambda v: R.network_sort(X4, steepness=v), "steepness"),
    ("soft_top_k", lambda v: R.soft_top_k(X4, 2, steepness=v), "steepness"),
    ("soft_compare", lambda v: R.soft_compare(X4, X4, beta=v), "beta"),
    ("soft_max", lambda v: R.soft_max(X4, beta=v), "beta"),
    ("soft_argmin", lambda v: R.soft_argmin(X4, beta=v), "beta"),
]
NONNEGATIVE: list[tuple[str, Callable[[Any], Any], str]] = [
    ("identity", lambda v: dc.identity(S.argmax, noise="normal", noise_sigma=v), "noise_sigma"),
]
INTEGER: list[tuple[str, Callable[[Any], Any], str]] = [
    ("top_k", lambda v: S.top_k(X4, k=v), "k"),
    ("soft_top_k.k", lambda v: R.soft_top_k(X4, v), "k"),
    ("perturbed.num_samples", lambda v: dc.perturbed(S.argmax, num_samples=v), "num_samples"),
    ("imle.num_terms", lambda v: dc.imle(S.argmax, num_terms=v), "num_terms"),
]
WRONG_KINDS = ["a", None, 1j, True, np.bool_(True), np.zeros(2), [1.0], object()]
IDS = [c[0] for c in POSITIVE + NONNEGATIVE]


@pytest.mark.parametrize(("label", "call", "name"), POSITIVE + NONNEGATIVE, ids=IDS)
def test_wrong_kind_is_a_type_error_naming_the_argument(label: str, call: Any, name: str) -> None:
    for bad in WRONG_KINDS:
        with pytest.raises(TypeError, match=f"^{name} must be a (real number|scalar)"):
            call(bad)


@pytest.mark.parametrize(("label", "call", "name"), POSITIVE, ids=[c[0] for c in POSITIVE])
def test_wrong_value_is_a_value_error_naming_the_argument(label: str, call: Any, name: str) -> None:
    for bad in (0.0, -1.0, float("nan"), float("inf"), -float("inf"), np.float32(-2)):
        with pytest.raises(ValueError, match=f"^{name} must be a finite positive number"):
            call(bad)
    call(np.float32(0.5))  # NumPy scalars are numbers


def test_nonnegative_accepts_zero_and_refuses_negatives() -> None:
    (_, call, name) = NONNEGATIVE[0]
    assert call(0.0) is not None and call(0) is not None
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=f"^{name} must be a finite non-negative number"):
            call(bad)


@pytest.mark.parametrize(("label", "call", "name"), INTEGER, ids=[c[0] for c in INTEGER])
def test_integer_arguments(label: str, call: Any, name: str) -> None:
    for bad in ("2", None, 2.0, True, np.array(2.0), np.array([2, 3]), np.array(True)):
        with pytest.raises(TypeError, match=f"^{name} must be"):
            call(bad)
    with pytest.raises(ValueError, match=f"^{name} must be (>= 1|between 1 and 4), got 0"):
        call(0)


def test_perturbed_and_network_sort_agree_on_the_error_type() -> None:
    """The example of issue 10: both used to disagree (ValueError vs TypeError)."""
    with pytest.raises(TypeError, match="sigma must be a real number .*got str"):
        dc.perturbed(S.argmax, sigma="a")
    with pytest.raises(TypeError, match="steepness must be a real number .*got str"):
        R.network_sort(X4, steepness="a")
    with pytest.raises(ValueError, match="art_lambda must be a finite number, got inf"):
        R.network_sort(X4, art_lambda=float("inf"))


def test_one_definition_of_each_validator() -> None:
    """No module of dopt_core defines its own copy of a validator of _lib/_checks.py."""
    root = pathlib.Path(dc.__file__).parent
    family = {"check_positive", "check_real", "check_nonnegative", "check_int", "check_choice",
              "check_flag", "check_callable_solver", "check_dtype_kind"}
    found: dict[str, list[str]] = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in family:
                found.setdefault(node.name, []).append(str(path.relative_to(root)))
    assert found == {name: [str(pathlib.Path("_lib/_checks.py"))] for name in family}


# --- class 18: 0-d arrays of any backend as hyper-parameters ----------------------------
def test_zero_dim_arrays_are_numbers(backend: conformance.Env) -> None:
    """``tau=<0-d array>`` gives exactly the result of ``tau=<the Python float>``."""
    x = backend.asarray(np.array([[0.3, -1.0, 2.0, 0.5]]))
    for tau in (0.5, 2.0):
        t = backend.asarray(np.array(tau))
        np.testing.assert_array_equal(backend.to_numpy(R.softmax(x, tau=t)), backend.to_numpy(R.softmax(x, tau=tau)))
    f = dc.perturbed(S.argmax, sigma=backend.asarray(np.array(0.25)), num_samples=backend.asarray(np.array(3)))
    assert f.perturbation.sigma == 0.25 and type(f.perturbation.sigma) is float
    assert f.perturbation.num_samples == 3 and type(f.perturbation.num_samples) is int
    np.testing.assert_array_equal(backend.to_numpy(S.top_k(x, k=backend.asarray(np.array(2)))), [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="sigma must be a finite positive number, got -1.0"):
        dc.perturbed(S.argmax, sigma=backend.asarray(np.array(-1.0)))
    with pytest.raises(TypeError, match=r"tau must be a scalar \(a Python float\), got an array of shape \(2,\)"):
        R.softmax(x, tau=backend.asarray(np.array([1.0, 2.0])))
    with pytest.raises(TypeError, match="tau must be a real number"):
        R.softmax(x, tau=backend.asarray(np.array(True)))


def test_traced_hyper_parameters_must_be_static() -> None:
    """Classes 18 and 20: under jax.jit a traced σ/τ/k says how to make it static."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = jnp.array([[0.3, -1.0, 2.0, 0.5]])
    with pytest.raises(TypeError, match=r"tau must be static \(a Python float\).*static_argnums"):
        jax.jit(lambda t: R.softmax(x, tau=t))(0.5)
    with pytest.raises(TypeError, match=r"k must be static \(a Python int\).*static_argnums.*functools.partial"):
        jax.jit(lambda k: S.top_k(x, k=k))(2)
    with pytest.raises(TypeError, match=r"k must be static .*static_argnames=\('k',\)"):
        jax.jit(lambda k: R.soft_top_k(x, k))(2)
    with pytest.raises(TypeError, match="sigma must be static"):
        jax.jit(lambda s: dc.perturbed(S.argmax, sigma=s)(x, rng=0))(0.5)
    # the ways out that the message names both work and agree
    y1 = jax.jit(lambda u, k: S.top_k(u, k=k), static_argnums=1)(x, 2)
    y2 = jax.jit(functools.partial(S.top_k, k=2))(x)
    np.testing.assert_array_equal(np.asarray(y1), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(np.asarray(y2), [[0, 0, 1, 1]])


# --- class 17: every factory argument validated at construction -------------------------
CONSTRUCTION: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: dc.imle(S.argmax, kappa=float("inf")), ValueError, "kappa must be a finite positive number, got inf"),
    (lambda: dc.imle(S.argmax, noise="gumbel", kappa=float("nan")), ValueError, "kappa must be a finite positive"),
    (lambda: dc.imle(S.argmax, num_terms=0), ValueError, "num_terms must be >= 1"),
    (lambda: dc.imle(S.argmax, two_sided="yes"), TypeError, "two_sided must be True or False"),
    (lambda: dc.imle(None), TypeError, "solver must be callable"),
    (lambda: dc.interpolation(None), TypeError, "solver must be callable"),
    (lambda: dc.interpolation(S.argmax, lam=float("inf")), ValueError, "lam must be a finite positive"),
    (lambda: dc.identity(None), TypeError, "solver must be callable"),
    (lambda: dc.identity(S.argmax, projection=3), TypeError, "projection must be None or a string"),
    (lambda: dc.identity(S.argmax, projection="l2"), ValueError, "projection must be None or one of"),
    (lambda: dc.identity(S.argmax, noise="cauchy"), ValueError, "noise must be one of"),
    (lambda: dc.identity(S.argmax, event_ndim=0), ValueError, "event_ndim must be >= 1"),
    (lambda: dc.straight_through(None, R.softmax), TypeError, "solver must be callable"),
    (lambda: dc.straight_through(S.argmax, np.tanh), TypeError, "relaxation must be a dopt function"),
    (lambda: dc.straight_through(S.argmax, None), TypeError, "relaxation must be a dopt function"),
    (lambda: dc.perturbed(S.argmax, control_variate=1), TypeError, "control_variate must be True or False"),
    (lambda: dc.perturbed(S.argmax, chunk_size=1.5), TypeError, "chunk_size must be an integer"),
    (lambda: dc.fenchel_young_loss(S.argmax, reduction=np.zeros(2)), TypeError, "reduction must be a string"),
    (lambda: dc.spo_plus_loss(S.argmax, reduction=None), TypeError, "reduction must be a string"),
    (lambda: dc.spo_plus_loss(S.argmax, reduction="avg"), ValueError, "reduction must be one of"),
    (lambda: dc.spo_plus_loss(None), TypeError, "solver must be callable"),
    (lambda: dc.data.shortest_path(4, 3, noise_width="a"), TypeError, "noise_width must be a real number"),
    (lambda: dc.data.shortest_path(4, 3, noise_width=1.0), ValueError, r"noise_width must be a number in \[0, 1\)"),
]


@pytest.mark.parametrize(("build", "error", "message"), CONSTRUCTION, ids=[c[2][:40] for c in CONSTRUCTION])
def test_factories_validate_at_construction(build: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build()


# --- class 14: extension dtypes ---------------------------------------------------------
def test_numpy_extension_dtypes_name_the_argument() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bf = np.zeros((2, 4), dtype=ml_dtypes.bfloat16)
    ok = np.zeros((2, 4))
    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: S.argmax(bf), "theta"),
        (lambda: S.top_k(bf, k=2), "theta"),
        (lambda: R.softmax(bf), "theta"),
        (lambda: R.soft_sort(bf), "x"),
        (lambda: R.network_sort(bf), "x"),
        (lambda: R.soft_compare(ok, bf), "b"),
        (lambda: dc.perturbed(S.argmax)(bf, rng=0), "theta"),
        (lambda: dc.perturbed(S.argmax, num_samples=2)(ok, noise=np.zeros((2, 2, 4), ml_dtypes.bfloat16)), "noise"),
        (lambda: R.gumbel_softmax(ok, tau=1.0, noise=bf), "noise"),
        (lambda: dc.fenchel_young_loss(S.argmax)(ok, bf, rng=0), "y_true"),
        (lambda: dc.spo_plus_loss(S.argmax)(ok, bf), "theta_true"),
        (lambda: R.permutation_loss(np.full((2, 4, 4), 0.25), np.ones((2, 4), ml_dtypes.bfloat16)), "target_ranks"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError, match=f"^{name} has dtype bfloat16, an extension dtype .*cast {name} to float32"):
            call()


def test_framework_bfloat16_is_still_computed() -> None:
    """Framework-native bfloat16 (torch, JAX) is a real floating dtype: computed in float32
    and cast back, exactly like float16 (the extension-dtype error is NumPy's alone)."""
    torch = pytest.importorskip("torch")
    x = np.array([[0.5, -1.0, 2.0]])
    y = R.softmax(torch.tensor(x, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    ref = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(y.float().numpy(), ref, atol=2e-2)  # bfloat16 has 8 bits of mantissa
