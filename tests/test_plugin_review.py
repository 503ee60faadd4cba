"""Plugin review (torch and JAX bridges): each test pins a defect that was fixed.

Every expected value is computed independently: a Python loop over the batch, the
NumPy reference VJP, finite differences or a fresh draw from the same seed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import dopt_core as dc

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_JAX = importlib.util.find_spec("jax") is not None
torch_only = pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
jax_only = pytest.mark.skipif(not HAS_JAX, reason="needs jax")


@torch_only
def test_torch_vmap_of_grad_of_a_second_order_op_using_sign_matches_a_loop() -> None:
    # torch.func.grad records its backward (create_graph): a second-order op recomputes
    # its forward there, batched by the vmap outside; neural_sort's forward takes a sign,
    # whose array-api-compat version indexes with a boolean mask, which vmap refuses
    import torch
    from torch.func import grad, vmap

    import dopt_torch as dt

    x = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.5, 0.2, -0.7, 0.1]], dtype=torch.float64)
    w = torch.sin(torch.arange(16, dtype=torch.float64)).reshape(4, 4)

    def h(t):
        return (dt.relax.neural_sort(t, tau=0.5) * w).sum()

    batched = vmap(grad(h))(x)
    for b in range(x.shape[0]):  # the NumPy reference VJP, slice by slice
        _, vjp = dc.value_and_vjp(dc.relax.neural_sort, x[b].numpy(), tau=0.5)
        np.testing.assert_allclose(batched[b].numpy(), vjp(w.numpy()), rtol=1e-12, atol=1e-12)

