"""conv_tree_leaves(channels=m): each logic tree reads only m input channels (Petersen et
al., NeurIPS 2024), drawn uniformly; the default draws are unchanged; errors; the torch
module compiles to the same counts as its hard net."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import dopt_core as dc

L = dc.logic


def test_default_is_the_whole_field_and_unchanged() -> None:
    a = L.conv_tree_leaves(3, 7, kernel_size=3, depth=3, rng=11)
    b = L.conv_tree_leaves(3, 7, kernel_size=3, depth=3, channels=None, rng=11)
    np.testing.assert_array_equal(a, b)
    # the whole receptive field is used: over many trees every (channel, dy, dx) appears
    many = L.conv_tree_leaves(3, 400, kernel_size=3, depth=3, rng=0).reshape(-1, 3)
    assert len({tuple(r) for r in many}) == 27


def test_two_channels_per_tree_uniform_pairs() -> None:
    C, n = 6, 1500
    leaves = L.conv_tree_leaves(C, n, kernel_size=3, depth=3, channels=2, rng=3)
    assert leaves.shape == (n, 8, 3) and leaves[..., 1:].max() == 2 and leaves[..., 0].max() == C - 1
    used = [tuple(sorted(set(t[:, 0].tolist()))) for t in leaves]
    assert all(len(u) <= 2 for u in used)
    # a first-level pair falls in one given channel with probability (9/18)(8/17) = 4/17, so
    # a tree reads a single channel with probability 2 (4/17)^4 = 0.0061 (SE over 1500
    # trees 0.002): the share of two-channel trees is 0.994, bounded here at 7 SE below
    pairs = [u for u in used if len(u) == 2]
    assert len(pairs) > 0.98 * n
    # its channel pair is uniform over the C(6, 2) = 15 pairs: counts within 5 SE
    counts = np.array([pairs.count(p) for p in itertools.combinations(range(C), 2)])
    p = 1 / 15
    se = np.sqrt(len(pairs) * p * (1 - p))
    assert np.abs(counts - len(pairs) * p).max() < 5 * se, counts
    # the two leaves of every first-level gate are distinct entries
    first = leaves.reshape(n, 4, 2, 3)
    assert not (first[:, :, 0] == first[:, :, 1]).all(axis=-1).any()


def test_channels_errors() -> None:
    with pytest.raises(ValueError, match="channels"):
        L.conv_tree_leaves(3, 2, channels=4, rng=0)
    with pytest.raises(ValueError, match="channels"):
        L.conv_tree_leaves(3, 2, channels=0, rng=0)
    with pytest.raises(ValueError, match="at least 2 entries"):
        L.conv_tree_leaves(3, 2, kernel_size=1, channels=1, rng=0)
    # one channel with a 3x3 field is allowed: every leaf reads that tree's channel
    one = L.conv_tree_leaves(4, 50, kernel_size=3, depth=2, channels=1, rng=1)
    assert (one[:, :, 0] == one[:, :1, 0]).all()


def test_torch_module_with_two_channels_compiles_exactly() -> None:
    torch = pytest.importorskip("torch")
    dt = pytest.importorskip("dopt_torch")
    net = torch.nn.Sequential(
        dt.nn.LogicConv2d(3, 6, kernel_size=3, depth=2, padding=1, channels=2, seed=4),
        dt.nn.OrPool2d(2),
        torch.nn.Flatten(),
        dt.nn.LogicLayer(6 * 3 * 3, 30, seed=5),
        dt.nn.GroupSum(3, tau=2.0),
    ).double().eval()
    assert all(len(set(t[:, 0].tolist())) <= 2 for t in net[0].leaves.numpy())
    X = (torch.rand(70, 3, 6, 6, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    with torch.no_grad():
        counts = (net(X) * 2.0).round().long().numpy()
    layers, in_dim, k = dt.nn.logic_gate_layers(net, (3, 6, 6))
    compiled = L.compile_logic_net(layers, in_dim=in_dim, k=k)
    np.testing.assert_array_equal(compiled(X.reshape(70, -1).numpy()), counts)
