"""dopt_core.logic review: the generated C source against the NumPy evaluator, input
validation of the encoders and of the gate-coefficient helper, the wiring's coverage."""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import dopt_core as dc

L = dc.logic


def _random_gate_net(rng, in_dim, widths):
    layers, d = [], in_dim
    for w in widths:
        a, b = L.logic_connections(d, w, rng=rng)
        layers.append((a, b, rng.integers(0, 16, w)))
        d = w
    return layers


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_c_source_computes_the_compiled_net(tmp_path) -> None:
    # the C function must write output j of the network to out[j * n_words + w]
    rng = np.random.default_rng(0)
    layers = _random_gate_net(rng, 6, [16, 12, 8])
    net = L.compile_logic_net(layers, in_dim=6)
    X = rng.integers(0, 2, (100, 6)).astype(bool)
    words, N = L.pack_bits(X)
    (tmp_path / "net.c").write_text(net.c_source("net"))
    src, lib_path = str(tmp_path / "net.c"), str(tmp_path / "net.so")
    subprocess.run(["cc", "-O0", "-shared", "-fPIC", src, "-o", lib_path], check=True)
    lib = ctypes.CDLL(lib_path)
    out = np.zeros((8, words.shape[1]), dtype=np.uint64)
    lib.net(words.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_size_t(words.shape[1]))
    bits = np.unpackbits(out.view(np.uint8), axis=-1, bitorder="little")[:, :N].T.astype(bool)
    # the reference: the hard relaxed layers at 0/1 inputs, gate by gate
    h = X.astype(float)
    for a, b, g in layers:
        h = L.logic_layer(h, a, b, np.eye(16)[g], mode="hard")
    np.testing.assert_array_equal(net.output_bits(X), h.astype(bool))
    np.testing.assert_array_equal(bits, h.astype(bool))


def test_torch_gate_layers_reject_a_shape_the_module_does_not_take() -> None:
    # compiling for a shape the torch module would not accept gave a net that silently
    # differs from the torch one (extra inputs ignored, a missing Flatten unnoticed)
    torch = pytest.importorskip("torch")
    dt = pytest.importorskip("dopt_torch")
    net = torch.nn.Sequential(dt.nn.LogicLayer(8, 8, seed=0), dt.nn.GroupSum(2))
    assert dt.nn.logic_gate_layers(net, (8,))[1:] == (8, 2)
    with pytest.raises(ValueError, match="in_shape"):
        dt.nn.logic_gate_layers(net, (10,))
    conv = dt.nn.LogicConv2d(2, 4, kernel_size=3, depth=2, seed=0)
    with pytest.raises(ValueError, match="in_shape"):
        dt.nn.logic_gate_layers(conv, (3, 6, 6))
    # (4, 4, 4) images into a 4-input layer: no Flatten
    no_flatten = torch.nn.Sequential(conv, dt.nn.LogicLayer(4, 4, seed=1))
    with pytest.raises(ValueError, match="in_shape"):
        dt.nn.logic_gate_layers(no_flatten, (2, 6, 6))
    with pytest.raises(ValueError, match="in_shape"):
        dt.nn.logic_gate_layers(dt.nn.OrPool2d(2), (6, 6))


def test_encoders_reject_nan() -> None:
    # a NaN feature gave NaN thresholds and all-zero thermometer bits, silently
    X = np.array([[0.0, 1.0], [np.nan, 2.0], [2.0, 3.0]])
    with pytest.raises(ValueError, match="X"):
        L.quantile_thresholds(X, 2)
    with pytest.raises(ValueError, match="X"):
        L.thermometer(X, np.array([0.5]))
    with pytest.raises(ValueError, match="thresholds"):
        L.thermometer(np.zeros((2, 1)), np.array([np.nan]))


def test_quantile_thermometer_bit_shares() -> None:
    # bit i fires on the share 1 - (i+1)/(n_bits+1) of the training samples (the
    # n_bits + 1 intervals between thresholds hold equal shares), counted on 0..N-1
    N, n_bits = 1001, 4
    X = np.random.default_rng(0).permutation(N).astype(float)[:, None]
    bits = L.thermometer(X, L.quantile_thresholds(X, n_bits))
    want = 1 - np.arange(1, n_bits + 1) / (n_bits + 1)
    np.testing.assert_allclose(bits.mean(axis=0), want, atol=1.0 / N)


def test_gate_coefficients_checks_the_shape_of_W() -> None:
    W = np.random.default_rng(0).normal(size=(3, 16))
    np.testing.assert_allclose(L.gate_coefficients(W, mode="hard"), L.GATE_COEFFS[W.argmax(-1)])
    with pytest.raises(ValueError, match=r"W must have shape \(n, 16\)"):
        L.gate_coefficients(np.zeros((2, 3)))


def test_wiring_coverage_as_documented() -> None:
    # enumeration: "random" reads every input whenever 2·out_dim ≥ in_dim; "unique" does
    # unless in_dim is odd and out_dim < in_dim - 1, where exactly input in_dim - 1 is unread
    for n in range(2, 12):
        for o in range((n + 1) // 2, n * (n - 1) // 2 + 1):
            a, b = L.logic_connections(n, o, rng=o)
            assert set(a.tolist()) | set(b.tolist()) == set(range(n)), (n, o)
            a, b = L.logic_connections(n, o, kind="unique", rng=o)
            used = set(a.tolist()) | set(b.tolist())
            want = set(range(n)) if n % 2 == 0 or o >= n - 1 else set(range(n - 1))
            assert used == want, (n, o)
            pairs = {(min(p), max(p)) for p in zip(a.tolist(), b.tolist())}
            assert len(pairs) == o and all(i < j for i, j in pairs)  # distinct pairs of two inputs
            a2, b2 = L.logic_connections(n, o, kind="unique", rng=o)  # reproducible from the seed
            assert a.tolist() == a2.tolist() and b.tolist() == b2.tolist()


def test_half_precision_dtypes() -> None:
    # logic_conv2d returned float32 for float16 input (logic_layer, or_pool2d, group_sum
    # keep float16), and logic_layer accepted W of another dtype than x when either was
    # half precision (both were compared after the promotion to float32)
    rng = np.random.default_rng(0)
    leaves = L.conv_tree_leaves(2, 3, kernel_size=3, depth=2, rng=0)
    ws = [rng.normal(size=(6, 16)), rng.normal(size=(3, 16))]
    x = rng.random((2, 2, 5, 5))
    y64 = L.logic_conv2d(x, leaves, ws, kernel_size=3, padding=1)
    y16 = L.logic_conv2d(x.astype(np.float16), leaves, [w.astype(np.float16) for w in ws],
                         kernel_size=3, padding=1)
    assert y16.dtype == np.float16
    np.testing.assert_allclose(y16.astype(np.float64), y64, atol=5e-3)  # two float16 roundings
    ia, ib = np.array([0, 1]), np.array([2, 3])
    with pytest.raises(TypeError, match="W must have x's dtype"):
        L.logic_layer(np.zeros((2, 4), np.float32), ia, ib, np.zeros((2, 16), np.float16))
    with pytest.raises(TypeError, match="W must have x's dtype"):
        L.logic_layer(np.zeros((2, 4), np.float16), ia, ib, np.zeros((2, 16), np.float32))


def test_plugin_init_names_are_checked() -> None:
    # a misspelt init= silently gave the normal initialisation
    torch = pytest.importorskip("torch")
    dt = pytest.importorskip("dopt_torch")
    w = dt.nn.LogicLayer(4, 4, init="residual", seed=0).weight.detach().numpy()
    assert (w.argmax(axis=-1) == 3).mean() > 0.9  # the pass-through gate A dominates
    for make in (lambda: dt.nn.LogicLayer(4, 4, init="residul"),
                 lambda: dt.nn.LogicConv2d(1, 2, kernel_size=2, depth=1, init="Residual")):
        with pytest.raises(ValueError, match="init"):
            make()
    del torch
    jax = pytest.importorskip("jax")
    logic = pytest.importorskip("dopt_jax.logic")
    with pytest.raises(ValueError, match="init"):
        logic.init_logic_layer(jax.random.key(0), 4, 4, init="residul")
    with pytest.raises(ValueError, match="init"):
        logic.init_logic_conv2d(jax.random.key(0), 1, 2, 2, depth=1, init="zeros")


def test_encoders_on_empty_input() -> None:
    # no samples: the quantiles are undefined (this raised a bare IndexError); no
    # features: one_hot_bits gave a concatenate error instead of zero columns, as thermometer
    with pytest.raises(ValueError, match="X"):
        L.quantile_thresholds(np.zeros((0, 2)), 2)
    assert L.one_hot_bits(np.zeros((3, 0), dtype=int), []).shape == (3, 0)
    assert L.thermometer(np.zeros((3, 0)), np.zeros((0, 2))).shape == (3, 0)


def test_c_source_name_must_be_a_c_identifier() -> None:
    net = L.compile_logic_net([(np.array([0]), np.array([1]), np.array([1]))], in_dim=2)
    assert "void my_net2(" in net.c_source("my_net2")
    for bad in ("my-net", "2net", "", "net;"):
        with pytest.raises(ValueError, match="name"):
            net.c_source(bad)
    with pytest.raises(TypeError, match="name"):
        net.c_source(3)
