"""The batched KL PAV of soft sort / soft rank against the sequential one, row by row."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from dopt_core.relax import _pav_host as H


def _sequential(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Flat block starts of the reference loop (:func:`_kl_pav`), one row at a time."""
    y, w = np.broadcast_arrays(y, w)
    rows, n = y.shape
    starts = [H._kl_pav(y[r], w[r])[1][:-1] + r * n for r in range(rows)]
    return np.concatenate([*starts, [rows * n]]).astype(np.int64)


def _per_row(packed: np.ndarray, flat: bool) -> np.ndarray:
    """:func:`H.forward_host`'s result as ``(rows, K, n)``: flat positions come packed kind
    by kind, ``(K, rows, n)``, with the second source's row offset by ``rows · n``
    (removed here, so that results of different batch sizes compare)."""
    if not flat:
        return packed
    out = packed.transpose(1, 0, 2).copy()
    out[:, 4] -= out.shape[0] * out.shape[2]
    return out


def _problems(rng: np.random.Generator, rows: int, n: int, eps: float, rank: bool):
    """The KL problems of soft rank / soft sort (as ``_kl_blocks`` poses them) of normal
    data with ties (rounded to a grid half the time)."""
    x = rng.standard_normal((rows, n))
    if rng.random() < 0.5:
        x = np.round(x * 2.0) / 2.0  # many ties
    sk = np.sort(x, axis=-1)
    rho = np.arange(n, 0, -1.0)
    return (-sk / eps, np.log(rho)) if rank else (rho / eps, -sk)


@pytest.mark.parametrize("rounds", [True, False], ids=["rounds", "loop"])
@pytest.mark.parametrize("rank", [False, True], ids=["sort", "rank"])
@pytest.mark.parametrize("eps", [1e-3, 0.05, 0.1, 0.3, 1.0, 3.0, 10.0, 1e3])
def test_batched_blocks_equal_the_sequential_loop(
    monkeypatch: pytest.MonkeyPatch, rank: bool, eps: float, rounds: bool
) -> None:
    """Both ways of step (2): pooling rounds, and the loop on the mixed pieces only."""
    monkeypatch.setattr(H, "_SEQUENTIAL_BELOW", 0 if rounds else 10**9)
    rng = np.random.default_rng(int(eps * 1000) + rank)
    for n in (1, 2, 3, 8, 17, 64, 200):
        y, w = _problems(rng, 9, n, eps, rank)
        np.testing.assert_array_equal(H._pav_kl_flat(y, w), _sequential(y, w))


@pytest.mark.parametrize("rounds", [0, 1, 2, 5])
def test_the_sequential_finish_after_few_rounds_gives_the_same_blocks(
    monkeypatch: pytest.MonkeyPatch, rounds: int
) -> None:
    """Generic ``y``, ``w`` (long cascades of pooling); the loop finishes after ``rounds``."""
    monkeypatch.setattr(H, "_POOL_ROUNDS", rounds)
    monkeypatch.setattr(H, "_SEQUENTIAL_BELOW", 0)
    rng = np.random.default_rng(rounds)
    for n in (2, 5, 16, 40):
        y, w = rng.standard_normal((7, n)), rng.standard_normal((7, n)) * 0.5
        np.testing.assert_array_equal(H._pav_kl_flat(y, w), _sequential(y, w))
        y, w = _problems(rng, 7, n, 2.0, rank=True)
        np.testing.assert_array_equal(H._pav_kl_flat(y, w), _sequential(y, w))


def test_at_exact_kinks_the_solution_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Integer data can give adjacent blocks of exactly equal value (a kink, where
    rounding decides whether they pool, in either order of pooling): the loop on the mixed
    pieces repeats the reference's arithmetic, blocks and all; the rounds may pool such
    blocks differently, but the isotonic solution — every block's value
    ``LSE(y_B) - LSE(w_B)`` — is the same to rounding."""
    rng = np.random.default_rng(7)
    y, w = rng.integers(-2, 3, (400, 9)).astype(float), rng.integers(-2, 3, (400, 9)).astype(float)

    def solution(blocks: np.ndarray) -> np.ndarray:
        starts, sizes = blocks[:-1], np.diff(blocks)
        bid = np.repeat(np.arange(sizes.size), sizes)
        lse = [H._logsumexp_in_blocks(a.ravel(), starts, bid) for a in (y, w)]
        return np.repeat(lse[0] - lse[1], sizes)

    b = _sequential(y, w)
    monkeypatch.setattr(H, "_SEQUENTIAL_BELOW", 10**9)
    np.testing.assert_array_equal(H._pav_kl_flat(y, w), b)  # the loop
    monkeypatch.setattr(H, "_SEQUENTIAL_BELOW", 0)
    a = H._pav_kl_flat(y, w)
    assert not np.array_equal(a, b)  # this data has such kinks
    np.testing.assert_allclose(solution(a), solution(b), rtol=0, atol=1e-13)
    v = solution(a).reshape(y.shape)
    assert np.all(np.diff(v, axis=-1) <= 1e-13)  # feasible: non-increasing along each row


def test_non_finite_rows_give_blocks_without_warnings() -> None:
    y = np.array(
        [[np.inf, 1.0, np.nan, -np.inf, 2.0, 2.0, 3.0], [-np.inf, -np.inf, 1, 2, np.inf, np.inf, 0]]
    )
    w = np.zeros_like(y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocks = H._pav_kl_flat(y, w)
    assert blocks[0] == 0 and blocks[-1] == y.size and np.all(np.diff(blocks) > 0)
    # the finite pieces pool as the loop does
    np.testing.assert_array_equal(H._pav_kl_flat(y[:1], w[:1]), _sequential(y[:1], w[:1]))


@pytest.mark.parametrize("rank", [False, True], ids=["sort", "rank"])
def test_forward_host_kl_is_that_of_the_sequential_blocks(
    monkeypatch: pytest.MonkeyPatch, rank: bool
) -> None:
    """The whole packed host result (outputs and VJP residuals) is bit-identical with the
    blocks of the sequential loop, for float32 / float64, ties, and ε from 1e-6 to 1e3."""
    rng = np.random.default_rng(11 + rank)
    for eps in (1e-6, 0.1, 1.0, 1e3):
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((6, 13))
            x[:, 5:8] = x[:, :1]  # ties
            x = x.astype(dtype)
            kw = dict(rank=rank, reg="kl", eps=eps, descending=bool(rng.integers(2)))
            got = H.forward_host(x, **kw)
            with monkeypatch.context() as m:
                m.setattr(H, "_pav_kl_flat", _sequential)
                ref = H.forward_host(x, **kw)
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("reg", ["l2", "kl"])
@pytest.mark.parametrize("rank", [False, True], ids=["sort", "rank"])
@pytest.mark.parametrize("flat", [False, True])
def test_all_singleton_shortcut_equals_the_general_formulas(
    reg: str, rank: bool, flat: bool
) -> None:
    """Where every block is a singleton the host writes the result directly; bit for bit
    (signed zeros included) the rows the general formulas give when another row of the
    batch pools."""
    rng = np.random.default_rng(3 + rank + 2 * flat)
    for dtype in (np.float32, np.float64):
        spread = np.sort(rng.choice(np.arange(-40, 40), (5, 9), replace=True), axis=-1) * 3.0
        spread = rng.permuted(spread + np.arange(9) * 0.5, axis=-1)  # distinct, gaps >= 0.5
        spread[0, 3] = -0.0
        if rank:  # rank: gaps above ε·log(n), no tie; the pooling row is all ties
            x, eps, pool = spread, 0.01, np.zeros((1, 9))
        else:  # sort: gaps below 1/ε; the pooling row has one gap above it
            x, eps, pool = spread * 1e-3, 0.1, np.array([[0.0] * 8 + [100.0]])
        for descending in (False, True):
            kw = dict(rank=rank, reg=reg, eps=eps, descending=descending, flat_positions=flat)
            alone = _per_row(H.forward_host(x.astype(dtype), **kw), flat)
            both = _per_row(H.forward_host(np.concatenate([x, pool]).astype(dtype), **kw), flat)
            assert np.all(alone[:, 2] == alone[:, 3])  # every block a singleton
            assert np.any(both[-1, 2] != both[-1, 3])  # the extra row pools: general path
            np.testing.assert_array_equal(alone, both[:-1])
            np.testing.assert_array_equal(np.signbit(alone), np.signbit(both[:-1]))


@pytest.mark.parametrize("flat", [False, True])
def test_l2_sort_shortcut_keeps_the_pav_where_rounding_pools(flat: bool) -> None:
    """The L2 sort shortcut (no PAV when every gap is below 1/(2ε)) steps aside where the
    chained problem's rounding, not the gaps, decides: ties at ±5.6e20 with ε = 6e-6 pool
    in the chained PAV (ρ/ε is lost next to x and the row offsets), and must pool the
    same whether or not another row has a gap above 1/ε."""
    kw = dict(rank=False, reg="l2", eps=6.126e-6, descending=False, flat_positions=flat)
    x = np.full((40, 2), -5.56766509e20) * np.where(np.arange(40) % 2, 1.0, -1.0)[:, None]
    alone = _per_row(H.forward_host(x, **kw), flat)
    both = _per_row(H.forward_host(np.concatenate([x, [[0.0, 1e9]]]), **kw), flat)  # a gap above 1/ε
    np.testing.assert_array_equal(alone, both[:-1])
    assert np.any(alone[:, 2] != alone[:, 3])  # ties pooled
    y = np.array([[0.3, -1.0, 2.0, 0.5]])  # small gaps: the shortcut, the exact sort
    np.testing.assert_array_equal(_per_row(H.forward_host(y, **kw), flat)[0, 0], np.sort(y[0]))
