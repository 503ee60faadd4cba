"""Relaxed control flow and the permutation loss: closed forms, limits, VJPs, and two relaxed
algorithms (bubble sort, grid shortest path) against exact solutions as beta grows."""

from __future__ import annotations

import doctest
import importlib
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.special import expit

import dopt_core as dc
from dopt_core.testing import finite_difference_vjp as _fd
from dopt_core.relax import (
    cdfs,
    network_sort,
    permutation_loss,
    soft_argmax,
    soft_argmin,
    soft_compare,
    soft_if,
    soft_max,
    soft_min,
    sorting_network,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
relaxed_algorithms = importlib.import_module("relaxed_algorithms")  # the example under test




@pytest.mark.parametrize(
    "module",
    [
        "dopt_core.relax._simplex",
        "dopt_core.relax._network",
        "dopt_core.relax._softsort",
        "dopt_core.relax._control",
        "dopt_core.relax._losses",
        "dopt_core.relax.cdfs",
    ],
)
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0


def test_soft_compare_closed_forms_and_limits() -> None:
    a = np.array([-1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(soft_compare(a, 0.5, beta=3.0), expit(3.0 * (a - 0.5)), rtol=1e-14)
    np.testing.assert_allclose(
        soft_compare(a, 0.5, beta=3.0, distribution="cauchy"),
        np.arctan(3.0 * (a - 0.5)) / np.pi + 0.5,
        rtol=1e-14,
    )
    # asymmetric noise: Pr[b + G/beta < a] = F(beta (a - b)) for Gumbel G (the comparator)
    np.testing.assert_allclose(
        soft_compare(a, 0.5, beta=3.0, distribution="gumbel_max"),
        np.exp(-np.exp(-3.0 * (a - 0.5))),
        rtol=1e-13,
    )
    for dist in ("logistic", "cauchy", "gaussian", "gumbel_min"):
        p = soft_compare(a, 0.5, beta=1e12, distribution=dist)
        np.testing.assert_allclose(p[a != 0.5], (a > 0.5)[a != 0.5].astype(float), atol=1e-9)
    assert float(soft_compare(np.array(0.5), 0.5, distribution="gaussian")) == 0.5


def test_soft_compare_monte_carlo() -> None:
    """Probabilistic (fixed seed): the closed form is the probability under perturbation."""
    rng = np.random.default_rng(0)
    d, beta = 0.3, 2.0
    eps = rng.logistic(size=200_000)
    assert float(soft_compare(np.array(d), 0.0, beta=beta)) == pytest.approx(
        np.mean(d + eps / beta > 0), abs=4e-3
    )
    g = rng.gumbel(size=200_000)
    assert float(
        soft_compare(np.array(d), 0.0, beta=beta, distribution="gumbel_max")
    ) == pytest.approx(np.mean(0.0 + g / beta < d), abs=4e-3)


def test_vjps_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    a, b, p = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.uniform(0.1, 0.9, size=(3, 4))
    # explicit VJPs with respect to each input, against FD
    for fn, args, kw in (
        (soft_compare, (a, b), dict(beta=2.0, distribution="cauchy")),
        (soft_compare, (a, b), dict(beta=2.0, distribution="gumbel_max")),
        (soft_if, (p, a, b), {}),
        (soft_min, (a, b), dict(beta=1.5)),
        (soft_min, (a, b), dict(beta=1.5, distribution="gaussian")),
        (soft_max, (a, b), dict(beta=1.5, distribution="laplace")),
        (soft_min, (a, b), dict(beta=1.5, distribution="gumbel_max")),
        (soft_max, (a, b), dict(beta=1.5, distribution="gamma")),
        (soft_min, (a,), dict(beta=1.5)),
        (soft_max, (a,), dict(beta=0.7)),
        (soft_argmin, (a,), dict(beta=1.3)),
        (soft_argmax, (a,), dict(beta=1.3)),
    ):
        bound = fn.bind(*args, **kw)
        y, res = bound.op.forward(*bound.inputs, xp=np)
        gy = rng.normal(size=y.shape)
        grads = bound.op.vjp(res, gy, xp=np)
        for i, grad in enumerate(grads):

            def fi(t, i=i):
                return fn(*args[:i], t, *args[i + 1 :], **kw)

            np.testing.assert_allclose(
                grad, _fd(fi, args[i], gy), atol=1e-7, err_msg=f"{fn.__name__} input {i}"
            )


def test_min_max_pairs_and_vectors() -> None:
    a, b = np.array([1.0, 5.0, -2.0]), np.array([3.0, 4.0, -2.0])
    np.testing.assert_allclose(soft_min(a, b, beta=1e12), np.minimum(a, b), atol=1e-9)
    np.testing.assert_allclose(soft_max(a, b, beta=1e12), np.maximum(a, b), atol=1e-9)
    # pair = vector of two under logistic noise (softmin weights of two entries)
    pair = np.stack([a, b], -1)
    np.testing.assert_allclose(soft_min(a, b, beta=0.8), soft_min(pair, beta=0.8), rtol=1e-13)
    np.testing.assert_allclose(soft_max(a, b, beta=0.8), soft_max(pair, beta=0.8), rtol=1e-13)
    np.testing.assert_allclose(soft_min(a, b) + soft_max(a, b), a + b, rtol=1e-14)
    x = np.array([[2.0, 0.5, 4.0], [1.0, 1.0, 3.0]])
    np.testing.assert_allclose(soft_argmin(x, beta=1e4), [[0, 1, 0], [0.5, 0.5, 0]], atol=1e-12)
    np.testing.assert_allclose(soft_argmax(x, beta=1e4), [[0, 0, 1], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(soft_min(x, beta=1e4), [0.5, 1.0], atol=1e-12)
    e = np.exp(-2.0 * x)
    np.testing.assert_allclose(soft_min(x, beta=2.0), (e * x).sum(-1) / e.sum(-1), rtol=1e-14)
    np.testing.assert_allclose(
        soft_if(soft_compare(a, b, beta=1e12), a, b), np.maximum(a, b), atol=1e-9
    )


def _relaxed_odd_even_transposition(x: np.ndarray, beta: float) -> np.ndarray:
    cols = [x[..., i] for i in range(x.shape[-1])]
    n = len(cols)
    for t in range(n):
        for i in range(t % 2, n - 1, 2):
            cols[i], cols[i + 1] = (
                soft_min(cols[i], cols[i + 1], beta=beta),
                soft_max(cols[i], cols[i + 1], beta=beta),
            )
    return np.stack(cols, -1)


def test_relaxed_bubble_sort_against_network_and_exact() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 7))
    # odd-even transposition sort written with soft_min/soft_max = the odd-even network
    for beta in (0.5, 3.0, 20.0):
        np.testing.assert_allclose(
            _relaxed_odd_even_transposition(x, beta),
            network_sort(x, network="odd_even", sigmoid="logistic", steepness=beta),
            atol=1e-12,
        )
    inversions = np.array([sum(r[i] > r[j] for i in range(7) for j in range(i + 1, 7)) for r in x])
    errs = []
    for beta in (1.0, 10.0, 100.0, 1e4):
        y, swaps = relaxed_algorithms.relaxed_bubble_sort(x, beta)
        errs.append(np.abs(y - np.sort(x, -1)).max())
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-6
    y, swaps = relaxed_algorithms.relaxed_bubble_sort(x, 1e12)
    np.testing.assert_allclose(swaps, inversions, atol=1e-9)


def test_relaxed_shortest_path_converges_to_dijkstra() -> None:
    rng = np.random.default_rng(3)
    H, W = 5, 6
    cost = expit(4 * rng.normal(size=(H, W))) + 0.2
    rows, cols, vals = [], [], []
    for i, j in itertools.product(range(H), range(W)):
        for di, dj in itertools.product((-1, 0, 1), repeat=2):
            if (di, dj) != (0, 0) and 0 <= i + di < H and 0 <= j + dj < W:
                rows.append(i * W + j)
                cols.append((i + di) * W + j + dj)
                vals.append(cost[i + di, j + dj])
    exact = (
        dijkstra(csr_matrix((vals, (rows, cols)), shape=(H * W, H * W)), indices=0).reshape(H, W)
        + cost[0, 0]
    )
    errs = [
        np.abs(relaxed_algorithms.relaxed_grid_distances(cost, beta) - exact).max()
        for beta in (10.0, 100.0, 1e4)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-2


def test_permutation_loss_closed_form_and_torch() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5))
    _, P = sorting_network(x, steepness=2.0)
    ranks = dc.solvers.rank(rng.normal(size=(3, 5)))
    T = np.eye(5)[(ranks - 1).astype(int)]
    bce = -(T * np.log(P) + (1 - T) * np.log(1 - P))
    assert float(permutation_loss(P, ranks)) == pytest.approx(bce.mean(), rel=1e-13)
    assert float(permutation_loss(P, ranks.astype(np.int64), reduction="sum")) == pytest.approx(
        bce.sum(), rel=1e-13
    )
    np.testing.assert_allclose(
        permutation_loss(P, ranks, reduction="none"), bce.mean((-2, -1)), rtol=1e-13
    )
    # perfect prediction: the exact permutation has zero loss
    assert float(permutation_loss(dc.solvers.permutation(x), dc.solvers.rank(x))) == 0.0
    for red in ("mean", "none"):
        y, vjp = dc.value_and_vjp(permutation_loss, P, ranks, reduction=red)
        g = rng.normal(size=np.shape(y))
        np.testing.assert_allclose(
            vjp(g), _fd(lambda t: permutation_loss(t, ranks, reduction=red), P, g), atol=1e-7
        )
    torch = pytest.importorskip("torch")
    Pt = torch.tensor(P, requires_grad=True)
    lt = torch.nn.functional.binary_cross_entropy(Pt, torch.tensor(T))
    (gt,) = torch.autograd.grad(lt, Pt)
    y, vjp = dc.value_and_vjp(permutation_loss, P, ranks)
    assert float(y) == pytest.approx(float(lt.detach()), rel=1e-13)
    np.testing.assert_allclose(vjp(np.array(1.0)), gt.numpy(), rtol=1e-12)


def test_backends(backend) -> None:
    a = backend.asarray(np.array([[0.3, -1.0, 2.0]]))
    b = backend.asarray(np.array([[1.0, -1.0, 0.0]]))
    for y in (
        soft_compare(a, b),
        soft_if(soft_compare(a, 0.0), a, b),
        soft_min(a, b),
        soft_max(a),
        soft_argmin(a),
    ):
        assert dc.backend_for(y) is dc.backend_for(a)
        assert backend.same_device(backend.device_of(y), backend.device_of(a))


def test_bad_arguments() -> None:
    a = np.array([0.0, 1.0])
    with pytest.raises(ValueError, match="beta"):
        soft_compare(a, a, beta=0.0)
    with pytest.raises(ValueError, match="distribution"):
        soft_compare(a, a, distribution="logit")
    with pytest.raises(ValueError, match="distribution"):
        soft_compare(a, a, distribution="logistic_phi")
    with pytest.raises(ValueError, match="b"):
        soft_compare(a, np.array([np.nan, 0.0]))
    with pytest.raises(TypeError, match="b"):
        soft_compare(a, True)
    with pytest.raises(ValueError, match="p"):
        soft_if(np.array([1.5]), a, a)
    with pytest.raises(ValueError, match="distribution"):
        soft_min(a, beta=1.0, distribution="cauchy")
    with pytest.raises(ValueError, match="beta"):
        soft_argmin(a, beta=-1.0)
    P = np.full((2, 2), 0.5)
    with pytest.raises(ValueError, match="target_ranks"):
        permutation_loss(P, np.array([1, 1]))
    with pytest.raises(ValueError, match="target_ranks"):
        permutation_loss(P, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="P"):
        permutation_loss(np.full((2, 3), 0.5), np.array([1, 2]))
    with pytest.raises(ValueError, match="P"):
        permutation_loss(np.full((2, 2), 1.5), np.array([1, 2]))
    with pytest.raises(ValueError, match="reduction"):
        permutation_loss(P, np.array([2, 1]), reduction="avg")
    assert cdfs.get("logistic").symmetric


def test_vector_extrema_accept_the_logistic_in_every_form() -> None:
    # distribution= takes a name, a cdfs.Distribution or a cdfs.CDF everywhere; the vector
    # min/max (softmax weights, logistic only) rejected the logistic's objects as not logistic
    x = np.array([[2.0, 0.5, 4.0], [1.0, 1.0, -3.0]])
    w = np.exp(-1.5 * x) / np.exp(-1.5 * x).sum(-1, keepdims=True)
    for d in ("logistic", cdfs.distribution("logistic"), cdfs.get("logistic")):
        np.testing.assert_allclose(soft_min(x, beta=1.5, distribution=d), (w * x).sum(-1))
        np.testing.assert_allclose(
            soft_max(x, beta=1.5, distribution=d), soft_max(x, beta=1.5), rtol=1e-15
        )
    for d in ("cauchy", cdfs.distribution("gamma", shape=3.0)):
        with pytest.raises(ValueError, match="distribution must be 'logistic'"):
            soft_min(x, distribution=d)
