"""Differentiable sorting networks and soft top-k: limits, stochasticity, VJPs, diffsort."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools

import numpy as np
import pytest

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp as _fd_vjp
from dopt_core.relax import (
    cdfs,
    network_permutation,
    network_sort,
    soft_top_k,
    sorting_network,
    sorting_network_layers,
)

NETWORKS = ("odd_even", "bitonic")
DIFFSORT = cdfs.DIFFSORT_NAMES


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Distinct values, pairwise gaps >= 0.05 in each row."""
    n = shape[-1]
    rows = [
        rng.permutation(n) * 0.1 + rng.uniform(0, 0.05, n) for _ in range(int(np.prod(shape[:-1])))
    ]
    return np.array(rows).reshape(shape) - 0.05 * n


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 11, 16])
def test_layers_are_disjoint_and_hard_network_sorts(network: str, n: int) -> None:
    layers = sorting_network_layers(network, n)
    for layer in layers:
        wires = [w for a, b, _, _ in layer for w in (a, b)]
        assert len(wires) == len(set(wires)) and all(0 <= w < n for w in wires)
        assert all(a < b and {lo, hi} == {a, b} for a, b, lo, hi in layer)
    # 0-1 principle: the hard network sorts every 0/1 input, hence every input
    for bits in itertools.product((0, 1), repeat=min(n, 11)):
        v = list(bits) + [1] * (n - len(bits))
        for layer in layers:
            v2 = list(v)
            for a, b, lo, hi in layer:
                v2[lo], v2[hi] = min(v[a], v[b]), max(v[a], v[b])
            v = v2
        assert v == sorted(v)
    expected = (
        min(n, 1 if n == 2 else n)
        if network == "odd_even"
        else sum(b + 1 for b in range(int(np.ceil(np.log2(n)))))
    )
    assert len(layers) == (expected if n > 1 else 0)  # odd-even n=2: the shifted layer is empty


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("sigmoid", cdfs.NAMES)
def test_infinite_steepness_gives_exact_sort_and_permutation(network: str, sigmoid: str) -> None:
    rng = np.random.default_rng(5)
    x = _distinct(rng, (3, 7))
    y, P = sorting_network(x, network=network, sigmoid=sigmoid, steepness=1e12)
    atol = 1e-3 if sigmoid.startswith("levy") else 1e-9  # Lévy's tail: 1 - F(v) ~ v^(-1/2)
    np.testing.assert_allclose(y, np.sort(x, axis=-1), atol=atol)
    np.testing.assert_allclose(P, dc.solvers.permutation(x), atol=atol)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("sigmoid", ["cauchy", "logistic_phi", "gaussian", "gumbel_max", "uniform"])
def test_permutation_doubly_stochastic_and_consistent(network: str, sigmoid: str) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 9))
    y, P = sorting_network(x, network=network, sigmoid=sigmoid, steepness=3.0)
    assert P.shape == (2, 3, 9, 9) and np.all(P >= -1e-15) and np.all(P <= 1 + 1e-15)
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(P.sum(-2), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("...i,...ij->...j", x, P), y, atol=1e-12)
    np.testing.assert_allclose(
        network_sort(x, network=network, sigmoid=sigmoid, steepness=3.0), y, atol=1e-12
    )
    # batch axes are independent
    y0, P0 = sorting_network(x[1, 2], network=network, sigmoid=sigmoid, steepness=3.0)
    np.testing.assert_allclose(y[1, 2], y0, rtol=1e-15)
    np.testing.assert_allclose(P[1, 2], P0, rtol=1e-15)
    # a relaxed sort keeps the mean; low steepness pulls values towards it
    np.testing.assert_allclose(y.mean(-1), x.mean(-1), atol=1e-12)


def test_every_layer_is_doubly_stochastic() -> None:
    """Prefixes of the network: P of the first l layers is doubly stochastic for every l."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=6)
    from dopt_core.relax import _network_ops as nwo, _network_tables as nwt

    full = nwt.layers("bitonic", 6)
    for L in range(1, full.num_layers + 1):
        sub = dataclasses.replace(
            full,
            **{
                f: getattr(full, f)[:L]
                for f in (
                    "ia",
                    "ib",
                    "dmn",
                    "dmx",
                    "src",
                    "back",
                    "counts",
                    "partner",
                    "sel",
                    "asc",
                )
            },
        )
        idx = nwo._Idx(sub, x, np)
        spec = nwo.Spec("bitonic", 2.0, "logistic", 0.25)
        _, alphas, _, _ = nwo._values_forward(x, spec, idx, xp=np)
        X = np.eye(6)
        for l in range(L):
            X = nwo._mix(X, alphas[l][None, :], idx.ia[l], idx.ib[l], idx.src[l], 1, xp=np)
        np.testing.assert_allclose(X.sum(0), 1, atol=1e-13)
        np.testing.assert_allclose(X.sum(1), 1, atol=1e-13)
        assert np.all(X >= 0)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("sigmoid", ["cauchy", "logistic_phi", "gaussian", "optimal", "gamma"])
def test_vjps_match_finite_differences(network: str, sigmoid: str) -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2, 6))
    kw = dict(network=network, sigmoid=sigmoid, steepness=2.5)
    for f, shape in ((network_sort, (2, 6)), (network_permutation, (2, 6, 6))):
        g = rng.normal(size=shape)
        _, vjp = dc.value_and_vjp(f, x, **kw)
        np.testing.assert_allclose(vjp(g), _fd_vjp(lambda t: f(t, **kw), x, g), atol=1e-6)
    g = rng.normal(size=(2, 6, 3))
    _, vjp = dc.value_and_vjp(soft_top_k, x, 3, **kw)
    np.testing.assert_allclose(vjp(g), _fd_vjp(lambda t: soft_top_k(t, 3, **kw), x, g), atol=1e-6)


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("n", [5, 8])
def test_soft_top_k_is_last_columns_of_P(network: str, n: int) -> None:
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, n))
    P = network_permutation(x, network=network, steepness=4.0)
    for k in (1, 3, n):
        T = soft_top_k(x, k, network=network, steepness=4.0)
        np.testing.assert_allclose(T, P[..., n - k :], atol=1e-13)
    x2 = _distinct(rng, (4, n))
    np.testing.assert_allclose(
        soft_top_k(x2, 3, network=network, steepness=1e12).sum(-1),
        dc.solvers.top_k(x2, 3),
        atol=1e-9,
    )


def _jacobian(x: np.ndarray, **kw) -> np.ndarray:
    n = x.size
    _, vjp = dc.value_and_vjp(network_sort, x, **kw)
    return np.stack([vjp(np.eye(n)[j]) for j in range(n)])  # J[j, i] = d y_j / d x_i


@pytest.mark.parametrize("network", NETWORKS)
def test_monotonic_sigmoids_give_monotone_networks(network: str) -> None:
    rng = np.random.default_rng(10)
    worst = {}
    for sigmoid in ("cauchy", "reciprocal", "optimal", "logistic"):
        worst[sigmoid] = min(
            _jacobian(rng.normal(size=8) * s, network=network, sigmoid=sigmoid, steepness=1.0).min()
            for s in (0.3, 1.0, 3.0, 10.0)
            for _ in range(10)
        )
    for sigmoid in ("cauchy", "reciprocal", "optimal"):
        assert worst[sigmoid] >= -1e-12, (sigmoid, worst[sigmoid])
    assert worst["logistic"] < -1e-3  # the ICLR'22 counter-example: logistic is not monotone


@pytest.mark.skipif(importlib.util.find_spec("diffsort") is None, reason="diffsort not installed")
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("sigmoid", DIFFSORT)
def test_equals_diffsort(network: str, sigmoid: str) -> None:
    import diffsort
    import torch

    rng = np.random.default_rng(11)
    # bitonic: diffsort's layout only for powers of two (for other n diffsort's network
    # does not always sort, and dopt uses the all-ascending form; see _bitonic_comparators)
    sizes = (
        ((4, np.float32), (8, np.float32), (16, np.float64))
        if network == "bitonic"
        else ((5, np.float32), (8, np.float32), (6, np.float64))
    )
    for n, dtype in sizes:
        x = rng.normal(size=(3, n)).astype(dtype)
        gy, gP = rng.normal(size=(3, n)).astype(dtype), rng.normal(size=(3, n, n)).astype(dtype)
        net = diffsort.DiffSortNet(network, n, steepness=6.0, distribution=sigmoid, art_lambda=0.3)
        xt = torch.tensor(x, requires_grad=True)
        yd, Pd = net(xt)
        (gd,) = torch.autograd.grad(
            (yd * torch.tensor(gy)).sum() + (Pd * torch.tensor(gP)).sum(), xt
        )
        kw = dict(network=network, steepness=6.0, sigmoid=sigmoid, art_lambda=0.3)
        y, vjp_y = dc.value_and_vjp(network_sort, x, **kw)
        P, vjp_P = dc.value_and_vjp(network_permutation, x, **kw)
        np.testing.assert_allclose(y, yd.detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(P, Pd.detach().numpy(), atol=1e-5)
        g = vjp_y(gy) + vjp_P(gP)
        # float32 gradients (|g| up to ~10, accumulated over the layers): 1e-5 relative to their scale
        scale = max(1.0, float(np.abs(gd.numpy()).max())) if dtype == np.float32 else 1.0
        np.testing.assert_allclose(g, gd.numpy(), atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", [np.float32])  # float64: the conformance cases
def test_backends_values_and_gradients(backend, dtype) -> None:
    """Every backend: type, device and dtype kept; gradients of P and of sorted = x @ P."""
    x_np = np.array([[0.3, -1.0, 2.0, 0.1], [1.0, 0.5, -0.5, 2.5]], dtype=dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    x = backend.asarray(x_np)
    y, P = sorting_network(x, network="bitonic")
    assert dc.backend_for(P) is dc.backend_for(x)
    assert backend.same_device(backend.device_of(P), backend.device_of(x))
    assert backend.to_numpy(P).dtype == dtype and backend.to_numpy(P).shape == (2, 4, 4)
    np.testing.assert_allclose(
        backend.to_numpy(P), sorting_network(x_np, network="bitonic")[1], atol=tol
    )
    ones = backend.asarray(np.ones((2, 4, 4), dtype=dtype))
    g = backend.vjp(network_permutation, (x,), {"network": "bitonic"}, ones)
    np.testing.assert_allclose(backend.to_numpy(g), 0.0, atol=tol)  # P's entries always sum to n
    if backend.autodiff is not None:
        # sorted = x @ P differentiated by the framework equals network_sort's explicit VJP
        gy = np.array([[1.0, -2.0, 0.5, 3.0], [0.0, 1.0, 2.0, -1.0]], dtype=dtype)
        native = backend.vjp(
            lambda t: sorting_network(t, network="bitonic")[0], (x,), {}, backend.asarray(gy)
        )
        _, vjp = dc.value_and_vjp(network_sort, x_np, network="bitonic")
        np.testing.assert_allclose(backend.to_numpy(native), vjp(gy), atol=tol)


def test_bad_arguments() -> None:
    x = np.array([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="network"):
        sorting_network(x, network="merge")
    with pytest.raises(ValueError, match="sigmoid"):
        sorting_network(x, sigmoid="sigmoid")
    with pytest.raises(ValueError, match="steepness"):
        sorting_network(x, steepness=0.0)
    with pytest.raises(ValueError, match="steepness"):
        network_sort(x, steepness=-1.0)
    with pytest.raises(TypeError, match="steepness"):
        network_sort(x, steepness=None)
    with pytest.raises(ValueError, match="art_lambda"):
        sorting_network(x, sigmoid="logistic_phi", art_lambda=1.0)
    with pytest.raises(ValueError, match="x"):
        sorting_network(np.array([np.nan, 1.0]))
    with pytest.raises(TypeError, match="return_permutation"):
        sorting_network(x, return_permutation="yes")
    with pytest.raises(ValueError, match="k"):
        soft_top_k(x, 4)
    with pytest.raises(ValueError, match="k"):
        soft_top_k(x, 0)
    with pytest.raises(ValueError, match="network"):
        sorting_network_layers("bubble", 3)


@pytest.mark.parametrize("network", NETWORKS)
def test_hard_networks_sort_every_binary_input(network: str) -> None:
    """0-1 principle: a comparator network sorts everything iff it sorts all 2^n binary
    inputs. Exhaustive for n = 2..18 (diffsort's bitonic construction fails from n = 22;
    see the next test)."""
    from dopt_core.relax import _network as nw

    for n in range(2, 19):
        X = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int8)
        for layer in nw.sorting_network_layers(network, n):
            for a, b, lo, hi in layer:
                mn, mx = np.minimum(X[:, a], X[:, b]), np.maximum(X[:, a], X[:, b])
                X[:, lo], X[:, hi] = mn, mx
        assert np.all(np.diff(X, axis=1) >= 0), (network, n)


@pytest.mark.parametrize("n", [22, 38, 45, 54])
def test_bitonic_sorts_where_diffsorts_construction_fails(n: int) -> None:
    """At these n, diffsort's padded bitonic network leaves some inputs unsorted even
    at infinite steepness; dopt's all-ascending form sorts them exactly."""
    x = np.random.default_rng(n).normal(size=(200, n))
    y, P = sorting_network(x, network="bitonic", steepness=1e9, sigmoid="logistic")
    np.testing.assert_allclose(y, np.sort(x, axis=-1), atol=1e-9)
    np.testing.assert_allclose(P, dc.solvers.permutation(x), atol=1e-9)


def _dense_layer_product(x: np.ndarray, network: str, **kw) -> np.ndarray:
    """P as the plain product of dense n×n layer matrices (the definition), one row of x."""
    from dopt_core.relax import _network as nw, _network_ops as nwo, _network_tables as nwt

    n = x.shape[-1]
    spec = nw._spec(network, kw.get("steepness", 10.0), kw.get("sigmoid", "cauchy"), 0.25)
    idx = nwo._Idx(nwt.layers(network, n), x, np)
    _, alphas, _, _ = nwo._values_forward(x, spec, idx, xp=np)
    P = np.eye(n)
    for layer, alpha in zip(sorting_network_layers(network, n), alphas, strict=True):
        A = np.eye(n)  # column j of A: where the value on wire j goes (sorted = x @ P)
        for c, (a, b, lo, hi) in enumerate(layer):
            al = alpha[c]
            A[[a, b]] = 0.0
            A[a, lo], A[b, lo] = al, 1 - al
            A[a, hi], A[b, hi] = 1 - al, al
        P = P @ A
    return P


@pytest.mark.parametrize("n", [2, 3, 4, 5, 7, 8, 12, 16, 22, 33, 64])
def test_bitonic_merge_matrices_equal_dense_layer_products(n: int) -> None:
    """The bitonic P is built one merge matrix and one matrix product per block
    (dopt_core.relax._bitonic_merge); it equals the product of the dense layer matrices,
    for powers of two (diffsort's layout) and for other n (all-ascending form)."""
    rng = np.random.default_rng(100 + n)
    x = rng.normal(size=(3, n))
    P = network_permutation(x, network="bitonic", steepness=2.0)
    for row in range(3):
        np.testing.assert_allclose(
            P[row], _dense_layer_product(x[row], "bitonic", steepness=2.0), atol=1e-13
        )


@pytest.mark.parametrize("n", [3, 4, 6, 8, 11, 16, 22])
def test_bitonic_merge_vjp_equals_layer_by_layer_vjp(n: int) -> None:
    """The merge path's VJP equals the layer-by-layer VJP (the odd-even code path run on
    the bitonic comparators) to rounding, and central differences at one size."""
    from dopt_core.relax import _network as nw, _network_ops as nwo

    class LayerByLayer(nwo.NetworkPermutationOp):
        def _blocked(self) -> bool:
            return False

    rng = np.random.default_rng(200 + n)
    x = rng.normal(size=(2, 3, n))
    spec = nw._spec("bitonic", 3.0, "logistic", 0.25)
    fast, slow = nwo.NetworkPermutationOp(spec, n), LayerByLayer(spec, n)
    P1, r1 = fast.forward(x, xp=np)
    P2, r2 = slow.forward(x, xp=np)
    np.testing.assert_allclose(P1, P2, atol=1e-14)
    G = rng.normal(size=P1.shape)
    np.testing.assert_allclose(fast.vjp(r1, G, xp=np)[0], slow.vjp(r2, G, xp=np)[0], atol=1e-13)
    if n in (6, 8):
        kw = dict(network="bitonic", steepness=3.0, sigmoid="logistic")
        _, vjp = dc.value_and_vjp(network_permutation, x, **kw)
        fd = _fd_vjp(lambda t: network_permutation(t, **kw), x, G)
        np.testing.assert_allclose(vjp(G), fd, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [(), (0,), (2, 1)])
def test_bitonic_permutation_batch_shapes_and_dtypes(dtype, batch) -> None:
    rng = np.random.default_rng(7)
    for n in (1, 2, 5, 8):
        x = rng.normal(size=(*batch, n)).astype(dtype)
        P, vjp = dc.value_and_vjp(network_permutation, x, network="bitonic", steepness=3.0)
        assert P.shape == (*batch, n, n) and P.dtype == dtype
        g = vjp(np.ones_like(P))
        assert g.shape == x.shape and g.dtype == dtype
        if x.size:
            np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-5 if dtype == np.float32 else 1e-12)
            ref = _dense_layer_product(
                x.reshape(-1, n)[0].astype(np.float64), "bitonic", steepness=3.0
            )
            np.testing.assert_allclose(
                P.reshape(-1, n, n)[0], ref, atol=1e-5 if dtype == np.float32 else 1e-12
            )
            # every entry of P sums to n whatever x is: the all-ones cotangent has zero VJP
            np.testing.assert_allclose(g, 0.0, atol=1e-4 if dtype == np.float32 else 1e-12)


def test_bitonic_merge_path_on_every_backend(backend) -> None:
    """The merge path (transposed matrix products, the relabelling gather for n = 6 and 40,
    batch-last small layers and the switch to batch-first at n = 40) gives NumPy's P and
    VJP on every backend, float64 (n = 40 not on JAX: eager JAX compiles every new op
    shape, ~40 s; its jit gradient is checked at n = 22 below)."""
    rng = np.random.default_rng(12)
    for n in (6, 8) if backend.name.startswith("jax") else (6, 8, 40):
        x_np = rng.normal(size=(2, n))
        G_np = rng.normal(size=(2, n, n))
        kw = {"network": "bitonic", "steepness": 2.0}
        P_ref, vjp = dc.value_and_vjp(network_permutation, x_np, **kw)
        x = backend.asarray(x_np)
        np.testing.assert_allclose(
            backend.to_numpy(network_permutation(x, **kw)), P_ref, atol=1e-12
        )
        g = backend.vjp(network_permutation, (x,), kw, backend.asarray(G_np))
        np.testing.assert_allclose(backend.to_numpy(g), vjp(G_np), atol=1e-12)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
def test_jax_jit_gradient_of_the_merge_path_runs(tmp_path) -> None:
    """jit(grad) through the bitonic P at batch 128 (in a subprocess: jaxlib 0.10's
    XLA:CPU YNN fusions segfaulted on rank-7 intermediates of an earlier version, so
    the merge code keeps every array at rank <= 6); the gradient equals NumPy's VJP."""
    import subprocess
    import sys

    script = tmp_path / "jit_grad.py"
    script.write_text(
        "import jax, jax.numpy as jnp, numpy as np\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "import dopt_core as dc\n"
        "rng = np.random.default_rng(0)\n"
        "for n in (8, 16, 22):\n"
        "    x = rng.normal(size=(128, n))\n"
        "    G = rng.normal(size=(128, n, n))\n"
        "    f = lambda t: (dc.relax.network_permutation(t, network='bitonic') * G).sum()\n"
        "    g = jax.jit(jax.grad(f))(jnp.asarray(x))\n"
        "    _, vjp = dc.value_and_vjp(dc.relax.network_permutation, x, network='bitonic')\n"
        "    np.testing.assert_allclose(np.asarray(g), vjp(G), atol=1e-10)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


@pytest.mark.parametrize("n", [100, 256])
def test_bitonic_merge_path_float32_accuracy(n: int) -> None:
    """float32 P and VJP stay within ~100 float32 ulps of float64 at large n (36 layers,
    blocks of 256 in BLAS): no error build-up in the merge products."""
    rng = np.random.default_rng(n)
    x = rng.normal(size=(2, n))
    G = rng.normal(size=(2, n, n))
    P64, v64 = dc.value_and_vjp(network_permutation, x, network="bitonic")
    P32, v32 = dc.value_and_vjp(network_permutation, x.astype(np.float32), network="bitonic")
    assert P32.dtype == np.float32
    np.testing.assert_allclose(P32, P64, atol=1e-5)
    g64, g32 = v64(G), v32(G.astype(np.float32))
    np.testing.assert_allclose(g32, g64, atol=1e-4 * np.abs(g64).max())


def test_public_docstrings_are_written_out() -> None:
    """The network functions carry literal docstrings (sorting_network's was None when it
    was built by concatenation) with parameters and Examples; the bitonic text matches
    the code (all-ascending form for n not a power of two, not diffsort's layout)."""
    from dopt_core import relax

    for f in (relax.sorting_network, relax.network_sort, relax.network_permutation):
        doc = f.__doc__
        assert doc is not None and "Parameters\n    ----------" in doc and "Examples\n    --------" in doc
        assert "all-ascending" in doc and "as diffsort does" not in doc
