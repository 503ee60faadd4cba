"""DeviceConstants: static tables converted once per (namespace, device, dtype)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import dopt_core as dc
from dopt_core._lib._constants import DeviceConstants


def test_memoised_per_namespace_device_and_dtype() -> None:
    consts = DeviceConstants()
    table = np.arange(6).reshape(2, 3)
    a = consts.array("t", table, np, "cpu")
    assert consts.array("t", table, np, "cpu") is a
    np.testing.assert_array_equal(a, table)
    f = consts.array("t", table, np, "cpu", np.float32)
    assert f is not a and f.dtype == np.float32
    rows = consts.rows("t", table, np, "cpu")
    assert len(rows) == 2 and consts.rows("t", table, np, "cpu") is rows
    np.testing.assert_array_equal(rows[1], table[1])
    # unknown device (JAX tracers): converted every time
    one = consts.array("t", table, np, None, np.float32)
    assert consts.array("t", table, np, None, np.float32) is not one


def test_replaced_network_tables_do_not_share_a_cache() -> None:
    """A network built from another's tables (dataclasses.replace) gets its own memo."""
    import dataclasses

    from dopt_core.relax import _network_ops as nwo, _network_tables as nwt

    full = nwt.layers("bitonic", 6)
    sub = dataclasses.replace(full, ia=full.ia[:2], counts=full.counts[:2])
    assert sub.consts is not full.consts
    x = np.zeros(6)
    assert len(nwo._Idx(full, x, np).ia) == full.num_layers
    assert len(nwo._Idx(sub, x, np).ia) == 2


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_torch_inference_mode_first_call_does_not_poison_the_cache() -> None:
    """Tensors made under torch.inference_mode cannot be used by autograd later: a first
    call there must not leave them in the memo."""
    import torch

    x = torch.randn(3, 8, dtype=torch.float64)
    with torch.inference_mode():
        P0 = dc.relax.network_permutation(x, network="bitonic", steepness=2.0)
    xr = x.clone().requires_grad_(True)
    P = dc.relax.network_permutation(xr, network="bitonic", steepness=2.0)
    (P * torch.arange(64.0, dtype=torch.float64).reshape(8, 8)).sum().backward()
    assert xr.grad is not None and torch.isfinite(xr.grad).all()
    np.testing.assert_allclose(P.detach().numpy(), P0.numpy(), atol=1e-15)
