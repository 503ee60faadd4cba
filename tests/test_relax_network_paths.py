"""The fast code paths of the sorting-network permutation Op against its reference path.

The odd-even pair-view path (every layer one run of neighbour pairs) must give the
numbers of the generic layer-by-layer row-gather path to rounding, values and VJPs,
for odd and even ``n`` and any batch shape.
"""

from __future__ import annotations

import numpy as np
import pytest

from dopt_core.relax import _network as nw
from dopt_core.relax import _network_ops as nwo


class _Gathered(nwo.NetworkPermutationOp):
    def _paired(self) -> bool:
        return False


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10, 17])
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
@pytest.mark.parametrize("sigmoid", ["cauchy", "logistic_phi", "optimal"])
def test_odd_even_pair_path_equals_gather_path(n, batch, sigmoid) -> None:
    rng = np.random.default_rng(n + 10 * len(batch))
    x = rng.normal(size=(*batch, n))
    spec = nw._spec("odd_even", 3.0, sigmoid, 0.25)
    fast, ref = nwo.NetworkPermutationOp(spec, n), _Gathered(spec, n)
    P1, r1 = fast.forward(x, xp=np)
    P2, r2 = ref.forward(x, xp=np)
    np.testing.assert_allclose(P1, P2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(P1.sum(-1), 1, atol=1e-13)  # doubly stochastic
    np.testing.assert_allclose(P1.sum(-2), 1, atol=1e-13)
    G = rng.normal(size=P1.shape)
    g1, g2 = fast.vjp(r1, G, xp=np)[0], ref.vjp(r2, G, xp=np)[0]
    np.testing.assert_allclose(g1, g2, rtol=0, atol=1e-13)
    assert g1.shape == x.shape


@pytest.mark.parametrize("n", [64, 100, 256])
def test_bitonic_permutation_residuals_about_n_squared(n) -> None:
    """The bitonic permutation keeps the block input products (about n² entries per
    instance, in the padded size n2 = 2^⌈log₂n⌉) and the comparator residuals, not the
    merges: at most 1.5 n2² in all."""
    x = np.random.default_rng(n).normal(size=(2, n)).astype(np.float32)
    spec = nw._spec("bitonic", 3.0, "cauchy", 0.25)
    op = nwo.NetworkPermutationOp(spec, n)
    P, res = op.forward(x, xp=np)
    per_instance = sum(r.size for r in res) / 2
    n2 = 1 << (n - 1).bit_length()
    assert per_instance <= 1.5 * n2 * n2
    # and the VJP rebuilt from them is the layer-by-layer one
    G = np.random.default_rng(1).normal(size=P.shape).astype(np.float32)
    ref = _Layered(spec, n)
    P2, r2 = ref.forward(x, xp=np)
    np.testing.assert_allclose(P, P2, atol=2e-6)
    np.testing.assert_allclose(op.vjp(res, G, xp=np)[0], ref.vjp(r2, G, xp=np)[0], atol=2e-4)


class _Layered(nwo.NetworkPermutationOp):
    def _blocked(self) -> bool:
        return False
