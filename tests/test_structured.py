"""dopt_core.structured: exact laws of recursive Gumbel-max traces, by enumeration.

* every trace of a small instance is found by running the algorithm on every ordering
  of the exponentials; the probabilities of the distinct traces sum to one;
* Monte-Carlo frequencies of structures match the enumerated law (5 standard errors);
* conditional samples reproduce the trace, every time;
* ``log_prob``'s VJP equals central finite differences; backends agree with NumPy.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc

S = dc.structured
K4 = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
G5 = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4), (0, 2), (1, 3)]


def _theta(m: int, seed: int = 0, shape: tuple[int, ...] = ()) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*shape, m)) * 0.8


# structure name -> (m, run(e) on (..., m), log_prob(trace, theta))
def _runner(name: str) -> tuple[int, Any]:
    if name == "top_k":
        return 5, lambda e: S.top_k.run(e, 2)
    if name == "ordering":
        return 4, S.top_k.run_ordering
    if name == "spanning_tree":
        return len(G5), lambda e: S.spanning_tree.run(e, G5, 5)
    if name == "spanning_tree_k4":
        return len(K4), lambda e: S.spanning_tree.run(e, K4, 4)
    if name == "binary_tree":
        return 5, S.binary_tree.run
    if name == "matching":
        return 9, lambda e: _flat_matching(e)
    raise AssertionError(name)


def _flat_matching(e: np.ndarray) -> tuple[np.ndarray, Any]:
    y, trace = S.matching.run(np.reshape(e, (*e.shape[:-1], 3, 3)))
    return np.reshape(y, (*y.shape[:-2], 9)), trace


STRUCTURES = ["top_k", "ordering", "spanning_tree", "spanning_tree_k4", "binary_tree", "matching"]


def _enumerate(name: str, theta: np.ndarray) -> tuple[dict[tuple, float], dict[tuple, float], dict[tuple, Any]]:
    """Every distinct trace (key -> p) and structure (key -> Σ p), and one trace per key."""
    m, run = _runner(name)
    perms = np.array(list(itertools.permutations(range(m))), dtype=np.float64)
    if name == "matching":  # 9! orderings: only the relative order of free entries matters
        perms = np.random.default_rng(0).permutation(perms)[:60000]
    y, trace = run(perms + 1.0)
    keys = [tuple(c) + (() if trace.parent is None else tuple(p)) for c, p in
            zip(trace.choices, trace.choices if trace.parent is None else trace.parent, strict=True)]
    first: dict[tuple, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    idx = np.array(list(first.values()))
    sub = trace[idx]
    lp = S.log_prob(sub, theta)
    p_trace = dict(zip(first.keys(), np.exp(lp), strict=True))
    p_struct: dict[tuple, float] = {}
    for i, p in zip(idx, np.exp(lp), strict=True):
        key = tuple(y[i].astype(int).ravel())
        p_struct[key] = p_struct.get(key, 0.0) + float(p)
    return p_trace, p_struct, sub


@pytest.mark.parametrize("name", STRUCTURES)
def test_trace_probabilities_sum_to_one(name: str) -> None:
    m, _ = _runner(name)
    p_trace, p_struct, _ = _enumerate(name, _theta(m, 1))
    assert abs(sum(p_trace.values()) - 1.0) < 1e-12
    assert abs(sum(p_struct.values()) - 1.0) < 1e-12
    if name == "spanning_tree_k4":
        assert len(p_struct) == 16  # Cayley: 4^(4-2) spanning trees of K4
    if name == "matching":
        assert len(p_struct) == 6
    if name == "binary_tree":
        assert len(p_struct) == 42  # Catalan(5)


def _sample(name: str, theta: np.ndarray, num: int, seed: int) -> tuple[np.ndarray, Any]:
    if name == "top_k":
        return S.top_k.sample(theta, 2, rng=seed, num_samples=num)
    if name == "ordering":
        return S.top_k.ordering(theta, rng=seed, num_samples=num)
    if name == "spanning_tree":
        return S.spanning_tree.sample(theta, G5, 5, rng=seed, num_samples=num)
    if name == "spanning_tree_k4":
        return S.spanning_tree.sample(theta, K4, 4, rng=seed, num_samples=num)
    if name == "binary_tree":
        return S.binary_tree.sample(theta, rng=seed, num_samples=num)
    y, trace = S.matching.sample(np.reshape(theta, (3, 3)), rng=seed, num_samples=num)
    return np.reshape(y, (num, 9)), trace


@pytest.mark.parametrize("name", STRUCTURES)
def test_sampling_frequencies_match_the_enumerated_law(name: str) -> None:
    m, _ = _runner(name)
    theta = _theta(m, 2)
    _, p_struct, _ = _enumerate(name, theta)
    n = 20000
    y, _ = _sample(name, theta, n, seed=3)
    keys = [tuple(r) for r in y.reshape(n, -1).astype(int)]
    counts: dict[tuple, int] = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    assert set(counts) <= set(p_struct)
    for k, p in p_struct.items():
        se = np.sqrt(p * (1 - p) / n)
        assert abs(counts.get(k, 0) / n - p) <= 5 * se + 1e-12, (k, p, counts.get(k, 0) / n)


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conditional_sample_reproduces_the_trace(name: str, dtype: Any) -> None:
    m, run = _runner(name)
    theta = _theta(m, 4).astype(dtype)
    if name == "matching":
        theta_in = np.reshape(theta, (3, 3))
    else:
        theta_in = theta
    y, trace = _sample(name, theta, 500, seed=5)
    assert trace.exponentials.dtype == dtype
    for seed in (6, 7):
        if name == "matching":
            e = np.reshape(S.matching.conditional_sample(trace, theta_in, rng=seed), (500, 9))
        else:
            e = S.conditional_sample(trace, theta, rng=seed)
        assert e.dtype == dtype and np.all(e > 0)
        y2, trace2 = run(e)
        np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(trace2.choices, trace.choices)
        np.testing.assert_array_equal(trace2.active, trace.active)
        if trace.parent is not None:
            np.testing.assert_array_equal(trace2.parent, trace.parent)


def test_conditional_sample_has_the_conditional_law() -> None:
    """Top-1 of two: given item 0 won, E_0 ~ Exp(λ0+λ1) and E_1 - E_0 ~ Exp(λ1)."""
    theta = np.log(np.array([1.0, 3.0]))
    _, trace = S.top_k.sample(theta, 1, noise=np.zeros((4000, 2)) + np.array([0.1, 5.0]), num_samples=4000)
    e = S.conditional_sample(trace, theta, rng=8)
    n = len(e)
    for x, mean in ((e[:, 0], 1 / 4.0), (e[:, 1] - e[:, 0], 1 / 3.0)):
        assert abs(x.mean() - mean) <= 5 * mean / np.sqrt(n)  # Exp: sd = mean


def test_log_prob_vjp_is_finite_differences() -> None:
    theta = _theta(len(G5), 9, shape=(2,))
    _, trace = S.spanning_tree.sample(theta, G5, 5, rng=10, num_samples=3)  # lead (3, 2)
    g = np.random.default_rng(11).normal(size=(3, 2))
    _, vjp = dc.value_and_vjp(S.log_prob, trace, theta)
    fd = np.zeros_like(theta)
    h = 1e-6
    for idx in np.ndindex(theta.shape):
        d = np.zeros_like(theta)
        d[idx] = h
        fd[idx] = np.sum(g * (S.log_prob(trace, theta + d) - S.log_prob(trace, theta - d))) / (2 * h)
    np.testing.assert_allclose(vjp(g), fd, atol=1e-7)
    # the per-sample score is the VJP of a one-hot cotangent
    sc = S.score(trace, theta)
    np.testing.assert_allclose(sc.sum(axis=0), vjp(np.ones((3, 2))), atol=1e-12)


def test_log_prob_exponentials_closed_form_and_vjp() -> None:
    theta = _theta(4, 12)
    e = S.exponentials(theta, rng=13, num_samples=3)
    lp = S.log_prob_exponentials(e, theta)
    np.testing.assert_allclose(lp, np.sum(theta - np.exp(theta) * e, axis=-1), rtol=1e-13)
    _, vjp = dc.value_and_vjp(S.log_prob_exponentials, e, theta)
    # value_and_vjp differentiates the Op's first input (θ); e is the second argument
    g = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(vjp(g), np.sum(g[:, None] * (1 - np.exp(theta) * e), axis=0), rtol=1e-12)
    np.testing.assert_allclose(S.score_exponentials(e, theta), 1 - np.exp(theta) * e, rtol=1e-13)


def test_exponential_convention_argmin_is_softmax() -> None:
    theta = np.array([0.5, -1.0, 1.5])
    e = S.exponentials(theta, rng=14, num_samples=40000)
    freq = np.bincount(e.argmin(axis=-1), minlength=3) / len(e)
    p = np.exp(theta) / np.exp(theta).sum()
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / len(e)))


# --- bad input ------------------------------------------------------------------------
def test_bad_input_raises_naming_the_argument() -> None:
    th = np.zeros(4)
    with pytest.raises(ValueError, match="disconnected"):
        S.spanning_tree.sample(np.zeros(2), [(0, 1), (2, 3)], 4, rng=0)
    with pytest.raises(ValueError, match="self-loops"):
        S.spanning_tree.sample(np.zeros(2), [(0, 1), (1, 1)], 2, rng=0)
    with pytest.raises(ValueError, match="one entry per edge"):
        S.spanning_tree.sample(np.zeros(3), [(0, 1), (1, 2)], 3, rng=0)
    with pytest.raises(ValueError, match="num_nodes"):
        S.spanning_tree.sample(np.zeros(1), [(0, 5)], 3, rng=0)
    with pytest.raises(ValueError, match="square"):
        S.matching.sample(np.zeros((2, 3)), rng=0)
    with pytest.raises(ValueError, match="NaN"):
        S.top_k.sample(np.array([0.0, np.nan]), 1, rng=0)
    with pytest.raises(ValueError, match="NaN"):
        S.binary_tree.sample(np.array([0.0, np.nan]), rng=0)
    with pytest.raises(ValueError, match="k"):
        S.top_k.sample(th, 5, rng=0)
    with pytest.raises(ValueError, match="rng or noise"):
        S.top_k.sample(th, 1, rng=0, noise=np.ones(4))
    with pytest.raises(ValueError, match="noise"):
        S.top_k.sample(th, 1, noise=np.ones(3))
    _, trace = S.top_k.sample(th, 2, rng=0)
    with pytest.raises(TypeError, match="trace"):
        S.log_prob(trace.choices, th)
    with pytest.raises(ValueError, match="theta"):
        S.log_prob(trace, np.zeros(5))
    with pytest.raises(ValueError, match="NaN"):
        S.log_prob(trace, np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="baseline"):
        S.estimators.reinforce(np.ones(3), np.ones((3, 4)), baseline="mean")
    with pytest.raises(ValueError, match="2 samples"):
        S.estimators.reinforce(np.ones(1), np.ones((1, 4)), baseline="loo")


# --- backends -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_agree_with_numpy(backend: conformance.Env, dtype: str) -> None:
    if backend.name == "jax":
        pytest.skip("JAX: covered by test_sampling_and_log_prob_under_jax_jit and the conformance cases")
    theta = _theta(len(K4), 15, shape=(2,)).astype(dtype)
    eps = np.random.default_rng(16).exponential(size=(3, 2, len(K4))).astype(dtype)
    cond = np.random.default_rng(17).exponential(size=(3, 2, 3 + len(K4))).astype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-12
    t = backend.asarray(theta)
    samplers = [
        lambda th, nz: S.spanning_tree.sample(th, K4, 4, noise=nz, num_samples=3),
        lambda th, nz: S.top_k.sample(th, 3, noise=nz, num_samples=3),
        lambda th, nz: S.binary_tree.sample(th, noise=nz, num_samples=3),
    ]
    for sample in samplers:
        y_np, tr_np = sample(theta, eps)
        y, tr = sample(t, backend.asarray(eps))
        np.testing.assert_array_equal(backend.to_numpy(y), y_np)
        np.testing.assert_array_equal(backend.to_numpy(tr.choices), tr_np.choices)
        np.testing.assert_array_equal(backend.to_numpy(tr.active), tr_np.active)
        lp = S.log_prob(tr, t)
        np.testing.assert_allclose(backend.to_numpy(lp), S.log_prob(tr_np, theta), rtol=tol, atol=tol)
        g = np.ones((3, 2), dtype=dtype)
        if backend.autodiff is None:
            grad = dc.value_and_vjp(S.log_prob, tr, t)[1](backend.asarray(g))
        else:
            grad = backend.vjp(lambda th, tr=tr: S.log_prob(tr, th), (t,), {}, backend.asarray(g))
        np.testing.assert_allclose(
            backend.to_numpy(grad), S.score(tr_np, theta).sum(axis=0), rtol=10 * tol, atol=10 * tol
        )
        if tr_np.num_steps == 3:
            e = S.conditional_sample(tr, t, noise=backend.asarray(cond))
            e_np = S.conditional_sample(tr_np, theta, noise=cond)
            np.testing.assert_allclose(backend.to_numpy(e), e_np, rtol=tol)
    ym_np, _ = S.matching.sample(theta[0, :4].reshape(2, 2), noise=eps[:, 0, :4].reshape(3, 2, 2), num_samples=3)
    ym, _ = S.matching.sample(backend.asarray(theta[0, :4].reshape(2, 2)),
                              noise=backend.asarray(eps[:, 0, :4].reshape(3, 2, 2)), num_samples=3)
    np.testing.assert_array_equal(backend.to_numpy(ym), ym_np)


def test_log_prob_is_exact_for_widely_spread_scores() -> None:
    """Each step shifts by its largest active score: no underflow when the remaining
    scores are all far below the largest one (float32: e^-100 underflows)."""
    theta = np.array([100.0, 100.0, 0.0, 0.0], dtype=np.float32)
    _, trace = S.top_k.sample(theta, 3, noise=np.array([1.0, 1.0, 1.0, 2.0], dtype=np.float32))
    # p = 1/2 (two tied top scores) · ~1 · 1/2 (two tied low scores)
    np.testing.assert_allclose(S.log_prob(trace, theta), np.log(0.25), rtol=1e-6)
    np.testing.assert_allclose(S.score(trace, theta), [0.5, -0.5, 0.5, -0.5], atol=1e-6)


def test_sampling_and_log_prob_under_jax_jit() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    theta = jnp.asarray(_theta(len(K4), 18))
    eps = jnp.asarray(np.random.default_rng(19).exponential(size=(4, len(K4))))

    @jax.jit
    def f(th: Any, nz: Any) -> Any:
        _, trace = S.spanning_tree.sample(th, K4, 4, noise=nz, num_samples=4)
        return S.log_prob(trace, th).sum()

    _, tr_np = S.spanning_tree.sample(np.asarray(theta), K4, 4, noise=np.asarray(eps), num_samples=4)
    g = jax.grad(f)(theta, eps)
    np.testing.assert_allclose(np.asarray(g), S.score(tr_np, np.asarray(theta)).sum(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(float(f(theta, eps)), S.log_prob(tr_np, np.asarray(theta)).sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compact_spanning_tree_trace_matches_its_dense_masks(dtype: Any, monkeypatch: Any) -> None:
    """Kruskal traces hold no dense masks: their log-prob, score and conditional sample
    (chunked over rows, batched θ) equal the dense-mask formulas on the same trace."""
    from dopt_core.structured import _trace  # noqa: PLC0415 - lazy: chunk size only

    monkeypatch.setattr(_trace, "_FOREST_ROWS", 4)  # several chunks of rows
    edges = list(itertools.combinations(range(5), 2))
    theta = _theta(len(edges), 21, shape=(3,)).astype(dtype)
    _, trace = S.spanning_tree.sample(theta, edges, 5, rng=22, num_samples=6)
    assert trace.forest is not None and trace.active.shape == (6, 3, 4, len(edges))
    dense = S.Trace(trace.choices, trace.active, trace.exponentials, None, "spanning_tree")
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(S.log_prob(trace, theta), S.log_prob(dense, theta), rtol=tol, atol=tol)
    np.testing.assert_allclose(S.score(trace, theta), S.score(dense, theta), rtol=tol, atol=tol)
    g = np.random.default_rng(23).normal(size=(6, 3))
    vjp = dc.value_and_vjp(S.log_prob, trace, theta)[1](g)
    np.testing.assert_allclose(vjp, dc.value_and_vjp(S.log_prob, dense, theta)[1](g), rtol=10 * tol, atol=10 * tol)
    noise = np.random.default_rng(24).exponential(size=(6, 3, 4 + len(edges))).astype(dtype)
    np.testing.assert_allclose(
        S.conditional_sample(trace, theta, noise=noise), S.conditional_sample(dense, theta, noise=noise), rtol=tol
    )
    np.testing.assert_array_equal(trace[1, 2].active, trace.active[1, 2])


def test_compact_spanning_tree_log_prob_for_widely_spread_scores() -> None:
    """float32 scores 100 apart: the compact log-prob works in float64 internally
    (e^-100 underflows in float32). Path 0-1-2 plus a cheap chord (0, 2): the tree
    takes both strong edges with probability 1 - O(e^-100), in either order."""
    theta = np.array([100.0, 100.0, 0.0], dtype=np.float32)
    _, trace = S.spanning_tree.run(np.array([1.0, 2.0, 3.0], dtype=np.float32), [(0, 1), (1, 2), (0, 2)], 3)
    # step 0: 2 strong + 1 weak edge, edge 0 wins with p ≈ 1/2; step 1: edge 1 of {1, 2}
    np.testing.assert_allclose(S.log_prob(trace, theta), np.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(S.score(trace, theta), [0.5, -0.5, 0.0], atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_prob_of_an_unlikely_choice_is_finite(dtype: Any) -> None:
    """A step whose choice scores far below another active entry (a trace evaluated
    under other scores): log p = θ_c - log Σ e^θ is finite, here -spread - log(1 + e^-spread)
    ≈ -spread, and the score is (1 - p, -(1 - p)) with p = 1/(1 + e^spread) ≈ 0.
    Shifting a step by its chosen score overflowed (float32 beyond 88, float64 beyond 709)."""
    spread = 200.0 if dtype == np.float32 else 1000.0
    theta = np.array([0.0, spread], dtype=dtype)
    _, trace = S.top_k.run(np.array([1.0, 2.0], dtype=dtype), 1)  # item 0 first
    np.testing.assert_allclose(S.log_prob(trace, theta), -spread, rtol=1e-6)
    np.testing.assert_allclose(S.score(trace, theta), [1.0, -1.0], atol=1e-6)
    _, vjp = dc.value_and_vjp(S.log_prob, trace, theta)
    np.testing.assert_allclose(vjp(np.asarray(1.0, dtype=dtype)), [1.0, -1.0], atol=1e-6)
    # matching: the first step takes the weakest of four entries; the second is certain
    th = np.array([[0.0, spread], [spread, spread]], dtype=dtype)
    _, tr = S.matching.run(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=dtype))
    lse = spread + np.log(3.0)  # log(1 + 3 e^spread)
    np.testing.assert_allclose(S.matching.log_prob(tr, th), -lse, rtol=1e-6)


def test_compact_spanning_tree_law_for_scores_1000_apart() -> None:
    """Triangle with θ = (1000, 0, 0) and the trace (edge 0, then edge 1): step 0 is
    certain up to e^-1000, step 1 picks one of two equal edges, so log p = -log 2 and
    the score is (0, 1/2, -1/2). A single shift by the largest score underflowed the
    second step's sum in float64 (log p = +inf, NaN scores); the conditional
    exponentials must reproduce the trace and be finite."""
    edges = [(0, 1), (1, 2), (0, 2)]
    theta = np.array([1000.0, 0.0, 0.0])
    _, trace = S.spanning_tree.run(np.array([1.0, 2.0, 3.0]), edges, 3)
    np.testing.assert_allclose(S.log_prob(trace, theta), -np.log(2.0), rtol=1e-12)
    np.testing.assert_allclose(S.score(trace, theta), [0.0, 0.5, -0.5], atol=1e-12)
    _, vjp = dc.value_and_vjp(S.log_prob, trace, theta)
    np.testing.assert_allclose(vjp(np.asarray(2.0)), [0.0, 1.0, -1.0], atol=1e-12)
    e = S.conditional_sample(trace, theta, rng=0)
    assert np.all(np.isfinite(e))
    np.testing.assert_array_equal(S.spanning_tree.run(e, edges, 3)[1].choices, trace.choices)


@pytest.mark.parametrize("offset", [1000.0, -1000.0])
def test_sampling_is_invariant_to_a_common_offset_of_the_scores(offset: float) -> None:
    """The law of every structure depends on θ up to a common additive constant, and
    with the same ε the sampled structure is the same: E(θ + c) = E(θ) e^{-c} only
    rescales the race. At c = ±1000 the float64 exponentials under/overflow (e^-1000 =
    0: every sample became the index-order tie-break; e^1000 = inf raised on E).
    Also top-1 of (1000, 999, 0): frequency of item 0 is σ(1) within 5 standard errors."""
    gen = np.random.default_rng(31)
    k = 64
    samplers = {
        "top_k": (5, lambda th, nz: S.top_k.sample(th, 2, noise=nz, num_samples=k)),
        "ordering": (4, lambda th, nz: S.top_k.ordering(th, noise=nz, num_samples=k)),
        "spanning_tree": (
            len(G5), lambda th, nz: S.spanning_tree.sample(th, G5, 5, noise=nz, num_samples=k)
        ),
        "binary_tree": (5, lambda th, nz: S.binary_tree.sample(th, noise=nz, num_samples=k)),
        "matching": (9, lambda th, nz: S.matching.sample(
            th.reshape(3, 3), noise=nz.reshape(k, 3, 3), num_samples=k
        )),
        "arborescence": (16, lambda th, nz: S.arborescence.sample(
            th.reshape(4, 4), root=1, noise=nz.reshape(k, 4, 4), num_samples=k
        )),
    }
    for name, (m, sample) in samplers.items():
        theta = _theta(m, 32)
        eps = gen.exponential(size=(k, m))
        y0, tr0 = sample(theta, eps)
        with np.errstate(over="ignore"):  # E = ε e^1000 itself is inf (unrepresentable)
            y1, tr1 = sample(theta + offset, eps)
        np.testing.assert_array_equal(y1, y0, err_msg=name)
        np.testing.assert_array_equal(tr1.choices, tr0.choices, err_msg=name)
        lp0, lp1 = S.log_prob(tr0, theta), S.log_prob(tr1, theta + offset)
        np.testing.assert_allclose(lp1, lp0, rtol=1e-9, err_msg=name)
    n = 20000
    y, _ = S.top_k.sample(np.array([1000.0, 999.0, 0.0]), 1, rng=33, num_samples=n)
    p = 1.0 / (1.0 + np.exp(-1.0))
    assert abs(y[:, 0].mean() - p) <= 5 * np.sqrt(p * (1 - p) / n)


def test_binary_tree_breaks_ties_by_index() -> None:
    """Tied exponentials (given e, or float32 keys) are broken towards the lower index,
    as the other samplers do: (0.5, 0.5, 1) is the tree of (0.5, 0.5 + 1e-9, 1), a
    chain 0 → 1 → 2 with log p = log(1/3 · 1/2) at θ = 0. Strict comparisons made
    both tied items roots of the whole interval (two roots, one edge)."""
    y, trace = S.binary_tree.run(np.array([0.5, 0.5, 1.0]))
    y_ref, trace_ref = S.binary_tree.run(np.array([0.5, 0.5 + 1e-9, 1.0]))
    np.testing.assert_array_equal(trace.parent, [-1, 0, 1])
    np.testing.assert_array_equal(trace.parent, trace_ref.parent)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(trace.active, trace_ref.active)
    np.testing.assert_allclose(S.log_prob(trace, np.zeros(3)), np.log(1 / 6), rtol=1e-12)


def test_compact_conditional_sample_at_large_equal_scores() -> None:
    """θ = 720 on every edge of a triangle: E ~ e^-720 ≈ 2e-313 is a float64
    subnormal, the θ = 0 draw rescaled by e^-720. The never-chosen edge's term
    u e^{-θ} was computed as u / e^θ = u / inf = 0 (and an overflow warning) on the
    compact path; the dense path must agree."""
    edges = [(0, 1), (1, 2), (0, 2)]
    theta = np.full(3, 720.0)
    _, trace = S.spanning_tree.run(np.array([1.0, 2.0, 3.0]), edges, 3)
    noise = np.random.default_rng(41).exponential(size=(2 + 3,))
    e = S.conditional_sample(trace, theta, noise=noise)
    ref = S.conditional_sample(trace, np.zeros(3), noise=noise) * np.exp(-720.0)
    assert np.all(ref > 0)
    np.testing.assert_allclose(e, ref, rtol=1e-8)
    dense = S.Trace(trace.choices, trace.active, trace.exponentials, None, "spanning_tree")
    np.testing.assert_allclose(S.conditional_sample(dense, theta, noise=noise), ref, rtol=1e-8)


def test_compact_spanning_tree_law_for_scores_1000_apart_on_eager_jax() -> None:
    """The same triangle as above through JAX without jit: log_prob is an Op whose
    forward JAX always traces, so the dense fallback is chosen from the concrete θ
    before entering it (numpy/torch/array_api_strict gave -log 2, JAX gave +inf)."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    theta = jnp.asarray(np.array([1000.0, 0.0, 0.0], dtype=np.float32))
    _, trace = S.spanning_tree.run(jnp.asarray(np.array([1.0, 2.0, 3.0], dtype=np.float32)),
                                   [(0, 1), (1, 2), (0, 2)], 3)
    np.testing.assert_allclose(float(S.log_prob(trace, theta)), -np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(S.score(trace, theta)), [0.0, 0.5, -0.5], atol=1e-6)


def test_conditional_sample_rejects_negative_noise_and_score_a_non_bool_flag() -> None:
    """noise holds standard exponentials: a negative v_t lowers a step's minimum below
    the previous one, and the exponentials no longer reproduce the trace (top-2 of 3
    at θ = 0 with v = (1, -0.9): E_{c_1} = 1/3 − 0.9/2 < 0 < E_{c_0} = 1/3)."""
    theta = np.zeros(3)
    _, trace = S.top_k.run(np.array([0.1, 0.2, 0.3]), 2)
    bad = np.array([1.0, -0.9, 1.0, 1.0, 1.0])
    e = S.conditional_sample(trace, theta, noise=np.abs(bad))
    np.testing.assert_allclose(e[:2], [1 / 3, 1 / 3 + 0.9 / 2], rtol=1e-12)
    with pytest.raises(ValueError, match="noise"):
        S.conditional_sample(trace, theta, noise=bad)
    with pytest.raises(TypeError, match="check_finite"):
        S.score(trace, theta, check_finite="no")


def test_log_prob_exponentials_rejects_negative_exponentials() -> None:
    """E ~ Exp(λ) has no mass below 0: E = -1 at θ = 0 gave the 'log-density' +1
    (θ − λE), more than the density's maximum log 1 = 0. E = 0 (an underflow) is kept:
    log p = θ."""
    theta = np.zeros(2)
    np.testing.assert_allclose(S.log_prob_exponentials(np.array([0.0, 0.5]), theta), -0.5)
    for fn in (S.log_prob_exponentials, S.score_exponentials):
        with pytest.raises(ValueError, match="e must"):
            fn(np.array([-1.0, 0.5]), theta)


def test_float32_sampling_is_invariant_to_an_offset_of_100() -> None:
    """float32: e^-100 ≈ 4e-44 is a subnormal with ~5 significant bits, so the old
    exponentials tied often (top-1 of (100, 100): item 0 in 51.3% of 20000 draws).
    The orderings of θ + 100 and θ match those of θ for the same ε."""
    theta = _theta(6, 34).astype(np.float32)
    eps = np.random.default_rng(35).exponential(size=(200, 6)).astype(np.float32)
    _, tr0 = S.top_k.ordering(theta, noise=eps, num_samples=200)
    _, tr1 = S.top_k.ordering(theta + np.float32(100.0), noise=eps, num_samples=200)
    np.testing.assert_array_equal(tr1.choices, tr0.choices)
