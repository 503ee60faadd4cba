"""dopt_core.logic: truth tables, the 16-gate reference, VJPs by finite differences,
wiring semantics, group_sum, the bit-packed evaluator, convolution vs a direct loop."""

from __future__ import annotations

import itertools

import array_api_compat.numpy as npx
import numpy as np
import pytest

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp

L = dc.logic

# difflogic's 16 real-valued gates, written out one by one (the reference sum)
REFERENCE = [
    lambda a, b: 0 * a,
    lambda a, b: a * b,
    lambda a, b: a - a * b,
    lambda a, b: a,
    lambda a, b: b - a * b,
    lambda a, b: b,
    lambda a, b: a + b - 2 * a * b,
    lambda a, b: a + b - a * b,
    lambda a, b: 1 - (a + b - a * b),
    lambda a, b: 1 - (a + b - 2 * a * b),
    lambda a, b: 1 - b,
    lambda a, b: 1 - b + a * b,
    lambda a, b: 1 - a,
    lambda a, b: 1 - a + a * b,
    lambda a, b: 1 - a * b,
    lambda a, b: 0 * a + 1,
]
BOOLEAN = [
    lambda a, b: False, lambda a, b: a and b, lambda a, b: a and not b, lambda a, b: a,
    lambda a, b: (not a) and b, lambda a, b: b, lambda a, b: a != b, lambda a, b: a or b,
    lambda a, b: not (a or b), lambda a, b: a == b, lambda a, b: not b, lambda a, b: a or not b,
    lambda a, b: not a, lambda a, b: (not a) or b, lambda a, b: not (a and b), lambda a, b: True,
]


def _reference(x, ia, ib, W, share=1):
    p = np.exp(W - W.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p = np.repeat(p, share, axis=0)
    a, b = x[..., ia], x[..., ib]
    return sum(p[:, i] * REFERENCE[i](a, b) for i in range(16))


def test_truth_tables() -> None:
    for g in range(16):
        T = L.gate_truth_table(g)
        for a, b in itertools.product((0, 1), repeat=2):
            assert bool(T[a, b]) == bool(BOOLEAN[g](bool(a), bool(b))), (g, L.GATE_NAMES[g], a, b)
    assert len(set(L.GATE_NAMES)) == 16 and L.GATE_COEFFS.shape == (16, 4)
    # bit i of the gate id is the output at (a, b) = (1,1), (1,0), (0,1), (0,0)
    for g in range(16):
        T = L.gate_truth_table(g)
        assert g == T[1, 1] + 2 * T[1, 0] + 4 * T[0, 1] + 8 * T[0, 0]


def test_coefficients_match_the_reference_gates() -> None:
    a, b = np.random.default_rng(0).random((2, 50))
    for g in range(16):
        c = L.GATE_COEFFS[g]
        np.testing.assert_allclose(c[0] + c[1] * a + c[2] * b + c[3] * a * b, REFERENCE[g](a, b), atol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("share", [1, 3])
def test_soft_layer_equals_16_gate_sum(dtype: str, share: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((2, 5, 7)).astype(dtype)
    ia, ib = rng.integers(0, 7, 12), rng.integers(0, 7, 12)
    W = (rng.normal(size=(12 // share, 16)) * 2).astype(dtype)
    y = L.logic_layer(x, ia, ib, W)
    assert y.dtype == np.dtype(dtype) and y.shape == (2, 5, 12)
    np.testing.assert_allclose(y, _reference(x.astype(float), ia, ib, W.astype(float), share), atol=1e-6)


def test_hard_layer_is_the_argmax_gate() -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, (9, 6)).astype(float)
    ia, ib = rng.integers(0, 6, 32), rng.integers(0, 6, 32)
    W = rng.normal(size=(32, 16))
    g = W.argmax(-1)
    y = L.logic_layer(x, ia, ib, W, mode="hard")
    want = np.array([[BOOLEAN[g[j]](bool(r[ia[j]]), bool(r[ib[j]])) for j in range(32)] for r in x], float)
    np.testing.assert_array_equal(y, want)


def _op_vjp(x, ia, ib, W, g, **kw):
    bound = L.logic_layer.bind(x, ia, ib, W, **kw)
    _, res = bound.op.forward(*bound.inputs, xp=npx)
    return bound.op.vjp(res, g, xp=npx)


@pytest.mark.parametrize("share", [1, 2])
def test_vjp_finite_differences(share: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.random((3, 6))
    ia, ib = rng.integers(0, 6, 8), rng.integers(0, 6, 8)
    ia[0] = ib[0] = 2  # a neuron reading one input twice
    W = rng.normal(size=(8 // share, 16))
    g = rng.normal(size=(3, 8))
    gx, gW, *rest = _op_vjp(x, ia, ib, W, g, grad_factor=1.5)
    assert rest == [None, None, None]
    np.testing.assert_allclose(gx, 1.5 * finite_difference_vjp(lambda t: L.logic_layer(t, ia, ib, W), x, g), atol=1e-7)
    np.testing.assert_allclose(gW, finite_difference_vjp(lambda w: L.logic_layer(x, ia, ib, w), W, g), atol=1e-7)
    gx_h, gW_h, *_ = _op_vjp(x, ia, ib, W, g, mode="hard")
    assert gW_h is None
    np.testing.assert_allclose(gx_h, finite_difference_vjp(lambda t: L.logic_layer(t, ia, ib, W, mode="hard"), x, g),
                               atol=1e-7)


def test_random_connections_semantics() -> None:
    a, b = L.logic_connections(10, 7, rng=0)
    counts = np.bincount(np.concatenate([a, b]), minlength=10)
    assert set(counts.tolist()) <= {1, 2} and counts.sum() == 14  # floor/ceil of 14/10
    a2, b2 = L.logic_connections(10, 7, rng=0)
    np.testing.assert_array_equal(a, a2)
    np.testing.assert_array_equal(b, b2)
    with pytest.raises(ValueError, match="at least half of in_dim"):
        L.logic_connections(10, 4)


def test_unique_connections_semantics() -> None:
    a, b = L.logic_connections(6, 15, kind="unique", rng=1)
    pairs = {tuple(sorted(p)) for p in zip(a.tolist(), b.tolist())}
    assert len(pairs) == 15 == len(list(itertools.combinations(range(6), 2)))
    # the first in_dim-1 pairs are the neighbours (0,1),(2,3),(4,5),(1,2),(3,4)
    a, b = L.logic_connections(6, 5, kind="unique", rng=1)
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]
    with pytest.raises(ValueError, match="distinct pairs"):
        L.logic_connections(6, 16, kind="unique")
    with pytest.raises(ValueError, match="kind"):
        L.logic_connections(6, 6, kind="full")


def test_layer_errors() -> None:
    x, W = np.zeros((2, 4)), np.zeros((3, 16))
    with pytest.raises(ValueError, match=r"idx_a must lie in \[0, 4\)"):
        L.logic_layer(x, np.array([0, 1, 4]), np.array([0, 1, 2]), W)
    with pytest.raises(ValueError, match="same shape"):
        L.logic_layer(x, np.array([0, 1, 2]), np.array([0, 1]), W)
    with pytest.raises(TypeError, match="integer dtype"):
        L.logic_layer(x, np.array([0.0, 1, 2]), np.array([0, 1, 2]), W)
    with pytest.raises(ValueError, match="must divide"):
        L.logic_layer(x, np.array([0, 1]), np.array([0, 1]), W)
    with pytest.raises(ValueError, match=r"shape \(rows, 16\)"):
        L.logic_layer(x, np.array([0]), np.array([1]), np.zeros((1, 15)))
    with pytest.raises(ValueError, match="mode"):
        L.logic_layer(x, np.array([0]), np.array([1]), np.zeros((1, 16)), mode="discrete")


def test_group_sum() -> None:
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_allclose(L.group_sum(x, 3, tau=2.0), [[0.5, 2.5, 4.5], [6.5, 8.5, 10.5]])
    g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    _, vjp = dc.value_and_vjp(L.group_sum, x, 3, tau=2.0)
    np.testing.assert_allclose(vjp(g), np.repeat(g, 2, axis=1) / 2.0)
    with pytest.raises(ValueError, match="must divide"):
        L.group_sum(x, 4)


def _random_net(rng, in_dim, widths, k):
    layers, d = [], in_dim
    for w in widths:
        a, b = L.logic_connections(d, w, rng=rng)
        layers.append((a, b, rng.normal(size=(w, 16))))
        d = w
    return layers


@pytest.mark.parametrize("N", [1, 63, 64, 130])
def test_bitpacked_equals_hard_net(N: int) -> None:
    rng = np.random.default_rng(4)
    layers = _random_net(rng, 20, [48, 48, 32], k=4)
    layers[0] = (layers[0][0], layers[0][1], np.eye(16)[np.arange(48) % 16] * 5)  # every gate occurs
    X = rng.integers(0, 2, (N, 20))
    h = X.astype(float)
    for a, b, W in layers:
        h = L.logic_layer(h, a, b, W, mode="hard")
    counts = L.group_sum(h, 4)
    net = L.compile_logic_net([(a, b, L.gate_layers_hard(W)) for a, b, W in layers], in_dim=20, k=4)
    out = net(X.astype(bool))
    assert out.dtype == np.int64 and out.shape == (N, 4)
    np.testing.assert_array_equal(out, counts.astype(np.int64))
    np.testing.assert_array_equal(net.output_bits(X), h.astype(bool))
    assert net.num_gates == 128
    src = net.c_source()
    assert src.count(" = x") >= 1 and "void logic_net(" in src and src.count("uint64_t v") == 128


def test_bitpacked_errors() -> None:
    net = L.compile_logic_net([(np.array([0]), np.array([1]), np.array([1]))], in_dim=2)
    with pytest.raises(ValueError, match="binary"):
        net(np.array([[0.5, 1.0]]))
    with pytest.raises(ValueError, match="2 features"):
        net(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        L.compile_logic_net([(np.array([0]), np.array([2]), np.array([1]))], in_dim=2)
    with pytest.raises(ValueError, match="gate ids"):
        L.compile_logic_net([(np.array([0]), np.array([1]), np.array([16]))], in_dim=2)


def _conv_loop(x, leaves, weights, k, padding, mode):
    """Direct loop: every output channel, position and tree node, gate by gate."""
    C, H, W = x.shape
    xp_ = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    Ho, Wo = H + 2 * padding - k + 1, W + 2 * padding - k + 1
    out = np.zeros((leaves.shape[0], Ho, Wo))

    def gate(w, a, b):
        if mode == "hard":
            return REFERENCE[int(np.argmax(w))](a, b)
        p = np.exp(w - w.max())
        p /= p.sum()
        return sum(p[i] * REFERENCE[i](a, b) for i in range(16))

    for c in range(leaves.shape[0]):
        for i in range(Ho):
            for j in range(Wo):
                vals = [xp_[ch, i + dy, j + dx] for ch, dy, dx in leaves[c]]
                for lv, w in enumerate(weights):
                    n = len(vals) // 2
                    vals = [gate(w[c * n + g], vals[2 * g], vals[2 * g + 1]) for g in range(n)]
                out[c, i, j] = vals[0]
    return out


@pytest.mark.parametrize("mode,padding", [("soft", 0), ("soft", 1), ("hard", 1)])
def test_conv_equals_direct_loop(mode: str, padding: int) -> None:
    rng = np.random.default_rng(5)
    leaves = L.conv_tree_leaves(2, 3, kernel_size=3, depth=2, rng=rng)
    weights = [rng.normal(size=(6, 16)), rng.normal(size=(3, 16))]
    x = rng.random((2, 5, 4))
    if mode == "hard":
        x = x.round()
    y = L.logic_conv2d(x, leaves, weights, kernel_size=3, padding=padding, mode=mode)
    np.testing.assert_allclose(y, _conv_loop(x, leaves, weights, 3, padding, mode), atol=1e-12)
    yb = L.logic_conv2d(np.stack([x, x]), leaves, weights, kernel_size=3, padding=padding, mode=mode)
    np.testing.assert_allclose(yb[1], y, atol=1e-12)


def test_or_pool_and_vjp() -> None:
    rng = np.random.default_rng(6)
    x = rng.random((2, 3, 5, 4))
    y = L.or_pool2d(x)
    want = np.array([[[[x[b, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max() for j in range(2)] for i in range(2)]
                      for c in range(3)] for b in range(2)])
    np.testing.assert_array_equal(y, want)
    g = rng.normal(size=y.shape)
    _, vjp = dc.value_and_vjp(L.or_pool2d, x)
    np.testing.assert_allclose(vjp(g), finite_difference_vjp(L.or_pool2d, x, g), atol=1e-7)
    xb = rng.integers(0, 2, (3, 4, 6)).astype(float)
    np.testing.assert_array_equal(L.or_pool2d(xb, size=2) == 1,
                                  xb.reshape(3, 2, 2, 3, 2).max(axis=(2, 4)) == 1)


def test_encoders() -> None:
    X = np.array([[0.0, 5.0], [1.0, 6.0], [2.0, 7.0], [3.0, 8.0]])
    t = L.quantile_thresholds(X, 3)
    np.testing.assert_allclose(t, [[0.75, 1.5, 2.25], [5.75, 6.5, 7.25]])
    bits = L.thermometer(X, t)
    assert bits.shape == (4, 6) and bits.sum(axis=0).tolist() == [3, 2, 1, 3, 2, 1]
    with pytest.raises(ValueError, match="feature 0"):
        L.one_hot_bits(np.array([[3]]), [3])
