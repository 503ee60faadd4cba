"""The Newton-losses ranking example (issue 16): its relaxations follow permutation_loss's
P convention, its baseline loss is the relaxed ranking loss itself, its Newton losses use
that same ℓ, and the quick mode learns orders well above chance."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

import dopt_core as dc  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "example_newton_ranking", ROOT / "examples" / "newton_ranking.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


ex = _load()
_S = torch.tensor([[0.3, -1.1, 2.0, 0.9, -0.2], [1.5, 0.1, -0.6, 0.4, 2.2]], dtype=torch.float64)
_RANKS = torch.tensor([[3.0, 1.0, 5.0, 4.0, 2.0], [4.0, 2.0, 1.0, 3.0, 5.0]], dtype=torch.float64)


@pytest.mark.parametrize("relaxation", ex.RELAXATIONS)
def test_relaxed_permutation_is_ascending_item_by_slot(relaxation: str) -> None:
    """Well-separated scores: ``s @ P`` is the ascending sort and P is the exact permutation
    matrix ``P[i, j] = 1[j = rank_i − 1]`` that permutation_loss compares against."""
    s = 40.0 * _S  # gaps ≥ 8 ≫ τ = 1 and 1/steepness = 0.1: the relaxations are near hard
    P = ex.relaxed_permutation(s, relaxation)
    # the Cauchy comparator's heavy tail leaves 1/(π·βΔ) ≈ 0.004 per comparator here
    tol = 2e-2 if relaxation == "cauchy_dsn" else 1e-3
    exact = torch.nn.functional.one_hot(_RANKS.long() - 1, 5).to(P.dtype)
    np.testing.assert_allclose(P, exact, atol=tol)
    sorted_ = (s.unsqueeze(-2) @ P).squeeze(-2)
    np.testing.assert_allclose(sorted_, s.sort(-1).values, atol=5 * tol * float(s.abs().max()))
    assert float(dc.relax.permutation_loss(P, _RANKS)) < tol


@pytest.mark.parametrize("relaxation", ex.RELAXATIONS)
def test_baseline_loss_is_the_permutation_bce(relaxation: str) -> None:
    """The baseline's scalar is Σ over sets of the mean BCE between P(s) and the true P*,
    written out here in NumPy; a wrong ℓ (other P, ranks or reduction) changes it."""
    ranks = _RANKS.flip(-1)  # not the scores' order: a loss far from 0
    loss_fn = ex.ranking_loss_fn(relaxation, ranks)
    got = float(ex.training_loss("baseline", loss_fn, _S, 0.0))
    P = ex.relaxed_permutation(_S, relaxation).numpy()
    T = np.eye(5)[ranks.numpy().astype(int) - 1]
    bce = -(T * np.log(P) + (1 - T) * np.log(1 - P)).mean((-1, -2))
    assert got == pytest.approx(bce.sum(), rel=1e-10)
    assert got > 0.1  # a loss value that could be wrong


@pytest.mark.parametrize("method", ["hessian", "fisher"])
@pytest.mark.parametrize("relaxation", ["neural_sort", "logistic_dsn"])
def test_newton_loss_wraps_the_same_ell(method: str, relaxation: str) -> None:
    """As λ → ∞ the Newton loss's gradient tends to ∇ℓ / λ (the damped Newton direction
    (H + λI)⁻¹∇ℓ = ∇ℓ/λ + O(‖H‖/λ²)), so λ·gradient equals the baseline's gradient."""
    loss_fn = ex.ranking_loss_fn(relaxation, _RANKS)
    y = _S.clone().requires_grad_(True)
    (g_base,) = torch.autograd.grad(ex.training_loss("baseline", loss_fn, y, 0.0), y)
    lam = 1e6
    (g_newton,) = torch.autograd.grad(ex.training_loss(method, loss_fn, y, lam), y)
    assert float(g_base.abs().max()) > 1e-3
    np.testing.assert_allclose(lam * g_newton, g_base, rtol=1e-4, atol=1e-8)


def test_bad_choices_raise() -> None:
    with pytest.raises(ValueError, match="relaxation"):
        ex.relaxed_permutation(_S, "soft_sort")
    with pytest.raises(ValueError, match="method"):
        ex.training_loss("newton", ex.ranking_loss_fn("neural_sort", _RANKS), _S, 1.0)


@pytest.mark.slow
def test_quick_mode_beats_chance() -> None:
    """Fixed seeds. Chance for n = 5 is 1/120 exact match and 1/5 element-wise. Over the
    1000 test sets a random order's element-wise accuracy has std 1/√(25·1000) ≈ 0.006
    (the number of fixed points of a random permutation has variance 1) and its exact
    match std √(1/120/1000) ≈ 0.003, so the thresholds 0.4 and 0.1 are > 30 standard
    errors above chance; 300 steps reach about 0.6 and 0.3 on this machine."""
    out = ex.main(["--quick"])
    assert set(out["results"]) == {("neural_sort", m) for m in ex.METHODS}
    for a in out["results"].values():
        em, ew = a[0]
        assert 0.0 <= em <= 1.0 and 0.0 <= ew <= 1.0
        assert ew > 0.4 and em > 0.1
