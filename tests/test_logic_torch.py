"""Logic networks in torch and JAX: train()/eval() switching, gradients equal to the core's
VJP, and the compiled bit-packed net equal to the hard torch net (dense and convolutional)."""

from __future__ import annotations

import numpy as np
import pytest

import dopt_core as dc

torch = pytest.importorskip("torch")
dt = pytest.importorskip("dopt_torch")

L = dc.logic


def _net(seed: int = 0) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        dt.nn.LogicConv2d(2, 4, kernel_size=3, depth=2, padding=1, seed=seed),
        dt.nn.OrPool2d(2),
        dt.nn.LogicConv2d(4, 6, kernel_size=2, depth=2, seed=seed + 1),
        torch.nn.Flatten(),
        dt.nn.LogicLayer(6 * 2 * 2, 40, seed=seed + 2),
        dt.nn.LogicLayer(40, 30, connections="unique", seed=seed + 3),
        dt.nn.GroupSum(3, tau=2.0),
    )


def test_train_eval_switches_soft_and_hard() -> None:
    torch.manual_seed(0)
    layer = dt.nn.LogicLayer(10, 12, seed=1)
    x = torch.rand(5, 10, dtype=torch.float64)
    W = layer.weight.detach().double()
    ia, ib = layer.idx_a.numpy(), layer.idx_b.numpy()
    layer = layer.double()
    np.testing.assert_allclose(layer(x).detach().numpy(), L.logic_layer(x.numpy(), ia, ib, W.numpy()), atol=1e-12)
    layer.eval()
    np.testing.assert_array_equal(layer(x).detach().numpy(), L.logic_layer(x.numpy(), ia, ib, W.numpy(), mode="hard"))
    xb = x.round()
    assert set(np.unique(layer(xb).detach().numpy())) <= {0.0, 1.0}
    layer.train()
    assert not set(np.unique(layer(x).detach().numpy())) <= {0.0, 1.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_gradients_equal_core_vjp(dtype: torch.dtype) -> None:
    layer = dt.nn.LogicLayer(7, 9, grad_factor=2.0, seed=2).to(dtype)
    x = torch.rand(3, 7, dtype=dtype, requires_grad=True)
    g = torch.randn(3, 9, dtype=dtype)
    (layer(x) * g).sum().backward()
    bound = L.logic_layer.bind(x.detach().numpy(), layer.idx_a.numpy(), layer.idx_b.numpy(),
                               layer.weight.detach().numpy(), grad_factor=2.0)
    import array_api_compat.numpy as npx

    _, res = bound.op.forward(*bound.inputs, xp=npx)
    gx, gW, *_ = bound.op.vjp(res, g.numpy(), xp=npx)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(x.grad.numpy(), gx, atol=tol)
    np.testing.assert_allclose(layer.weight.grad.numpy(), gW, atol=tol)


@pytest.mark.parametrize("N", [1, 70, 129])
def test_compiled_conv_net_equals_hard_torch_net(N: int) -> None:
    net = _net().eval()
    X = (torch.rand(N, 2, 6, 6, generator=torch.Generator().manual_seed(N)) > 0.5).double()
    net = net.double()
    with torch.no_grad():
        counts = (net(X) * 2.0).round().long().numpy()
    layers, in_dim, k = dt.nn.logic_gate_layers(net, (2, 6, 6))
    compiled = L.compile_logic_net(layers, in_dim=in_dim, k=k)
    np.testing.assert_array_equal(compiled(X.reshape(N, -1).numpy()), counts)


def test_conv_net_trains() -> None:
    # the soft net's loss goes down on a fixed batch: gradients flow through every layer type
    torch.manual_seed(0)
    net = _net(5)
    X = torch.rand(16, 2, 6, 6)
    y = torch.randint(0, 3, (16,))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    assert losses[-1] < losses[0] - 0.05


def test_jax_pure_functions_agree_with_numpy() -> None:
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    logic = pytest.importorskip("dopt_jax.logic")
    params, wiring = logic.init_logic_layer(jax.random.key(0), 6, 8, dtype=jnp.float64)
    x = np.random.default_rng(0).random((4, 6))
    W = np.asarray(params["W"])
    y = logic.logic_layer_apply(params, wiring, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(y), L.logic_layer(x, wiring["idx_a"], wiring["idx_b"], W), atol=1e-12)
    yh = logic.logic_layer_apply(params, wiring, jnp.asarray(x), train=False)
    # XLA may fuse c0 + c1 a + c2 b + c3 ab (one rounding less than NumPy): to an ulp
    np.testing.assert_allclose(
        np.asarray(yh), L.logic_layer(x, wiring["idx_a"], wiring["idx_b"], W, mode="hard"), atol=1e-12
    )
    gW = jax.grad(lambda p: logic.logic_layer_apply(p, wiring, jnp.asarray(x)).sum())(params)["W"]
    bound = L.logic_layer.bind(x, wiring["idx_a"], wiring["idx_b"], W)
    import array_api_compat.numpy as npx

    _, res = bound.op.forward(*bound.inputs, xp=npx)
    np.testing.assert_allclose(np.asarray(gW), bound.op.vjp(res, np.ones((4, 8)), xp=npx)[1], atol=1e-12)
