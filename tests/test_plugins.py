"""Plugin-specific behaviour: autograd wiring, jit/vmap/grad, exported names, CuPy skips."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import dopt_core as dc


@pytest.mark.parametrize("plugin", ["dopt_torch", "dopt_jax", "dopt_cupy"])
def test_plugins_export_the_core_names(plugin: str) -> None:
    framework = {"dopt_torch": "torch", "dopt_jax": "jax", "dopt_cupy": "cupy"}[plugin]
    try:
        importlib.import_module(framework)
    except Exception:  # noqa: BLE001
        pytest.skip("no CUDA device (cupy not importable)" if framework == "cupy" else f"{framework} not installed")
    mod = importlib.import_module(plugin)
    missing = [n for n in dc.__all__ if not hasattr(mod, n) or n not in mod.__all__]
    assert not missing
    assert mod.solvers.sort is dc.solvers.sort


# --- torch --------------------------------------------------------------------------------
def test_torch_gradcheck_sort() -> None:
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dc.solvers.sort(t), (x,))
    assert torch.autograd.gradcheck(lambda t: dc.solvers.sort(t, descending=True), (x,))


def test_torch_autograd_bridge() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor([[3.0, 1.0, 2.0]], requires_grad=True)
    y = dc.solvers.sort(x)
    assert y.requires_grad and y.grad_fn is not None
    (y * torch.tensor([1.0, 10.0, 100.0])).sum().backward()
    assert x.grad.tolist() == [[100.0, 1.0, 10.0]]
    # zero-gradient solvers: the graph is connected, the gradient is empty (zero)
    x.grad = None
    dc.solvers.argmax(x).sum().backward()
    assert x.grad is None or float(x.grad.abs().sum()) == 0.0
    with torch.no_grad():
        assert not dc.solvers.sort(x).requires_grad
    # half precision in, half precision out
    assert dc.solvers.rank(torch.tensor([1.0, 0.0], dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_torch_meta_device_stays() -> None:
    """Every array the solvers create follows the input's device (meta catches CPU defaults)."""
    torch = pytest.importorskip("torch")
    x = torch.empty(2, 5, device="meta")
    for f in (dc.solvers.argmax, dc.solvers.sort, dc.solvers.rank, dc.solvers.permutation):
        assert f(x, check_finite=False).device.type == "meta"


# --- jax ------------------------------------------------------------------------------------
def test_jax_grad_jit_vmap_compose() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from jax.test_util import check_grads

    x = jax.random.normal(jax.random.key(0), (4, 6), dtype=jnp.float64)
    check_grads(lambda t: dc.solvers.sort(t), (x,), order=1, modes=["rev"])
    w = jnp.arange(6.0)
    f = jax.jit(jax.grad(lambda t: (dc.solvers.sort(t, descending=True) * w).sum()))
    g = f(x)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(jax.vmap(jax.grad(lambda t: (dc.solvers.sort(t, descending=True) * w).sum()))(x)))
    order = np.argsort(-np.asarray(x), axis=-1, kind="stable")
    expected = np.empty_like(np.asarray(x))
    np.put_along_axis(expected, order, np.broadcast_to(np.arange(6.0), x.shape), axis=-1)
    np.testing.assert_array_equal(np.asarray(g), expected)


def test_jax_nan_check_eager_only() -> None:
    jax = pytest.importorskip("jax")
    bad = jax.numpy.array([1.0, jax.numpy.nan])
    with pytest.raises(ValueError, match="theta contains NaN"):
        dc.solvers.argmax(bad)
    jax.jit(dc.solvers.argmax)(bad)  # traced: values unknown, no check, no error


# --- cupy -----------------------------------------------------------------------------------
def _cupy():  # type: ignore[no-untyped-def]
    try:
        cupy = importlib.import_module("cupy")
        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError
    except Exception:  # noqa: BLE001
        pytest.skip("no CUDA device")
    return cupy


def test_cupy_value_and_vjp() -> None:
    cupy = _cupy()
    import dopt_cupy

    theta = np.random.default_rng(0).normal(size=(3, 5))
    y, vjp = dopt_cupy.value_and_vjp(dopt_cupy.solvers.sort, cupy.asarray(theta))
    assert isinstance(y, cupy.ndarray)
    g = np.random.default_rng(1).normal(size=(3, 5))
    _, ref_vjp = dc.value_and_vjp(dc.solvers.sort, theta)
    np.testing.assert_array_equal(cupy.asnumpy(vjp(cupy.asarray(g))), ref_vjp(g))
