"""Agreement with PyEPO on the same instances (optional: skipped without pyepo + gurobipy).

Sign conventions: dopt maximises scores θ, PyEPO minimises costs c, θ = -c; a gradient
in cost form is minus dopt's score-form one. The stochastic layers get PyEPO's own
noise (a fixed ``distribution`` for I-MLE / AI-MLE, its seeded ``torch.randn`` for DPO)
as z = -ξ, so they compare number for number; where the algorithms differ by design
(Frank-Wolfe variants, truncated cone projections, DPO's baselines) the test's
docstring says so and compares at convergence or in law.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest

import dopt_core as dc

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pyepo") is None or importlib.util.find_spec("gurobipy") is None,
    reason="pyepo and gurobipy not installed",
)
GRID = (5, 5)


def _pyepo_solutions(optmodel, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    sols, objs = [], []
    for c in costs:
        optmodel.setObj(c)
        w, z = optmodel.solve()
        sols.append(w)
        objs.append(z)
    return np.array(sols, dtype=np.float64), np.array(objs, dtype=np.float64)


def test_spo_plus_equals_pyepo() -> None:
    torch = pytest.importorskip("torch")
    import pyepo

    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs = dc.data.shortest_path(16, 5, GRID, deg=2, noise_width=0.5, seed=3)
    pred = costs + np.random.default_rng(0).normal(scale=0.5, size=costs.shape)
    w, z = _pyepo_solutions(optmodel, costs)
    spop = pyepo.func.SPOPlus(optmodel, processes=1)
    cp = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    loss = spop(cp, torch.tensor(costs), torch.tensor(w), torch.tensor(z).reshape(-1, 1))
    loss.backward()

    solver = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
    ours = dc.spo_plus_loss(solver)
    value, vjp = dc.value_and_vjp(ours, -pred, -costs, w)
    np.testing.assert_allclose(float(value), loss.item(), rtol=1e-6)
    # our gradient is with respect to θ̂ = -ĉ
    np.testing.assert_allclose(-vjp(np.array(1.0)), cp.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_regret_equals_pyepo() -> None:
    import pyepo

    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs = dc.data.shortest_path(12, 5, GRID, deg=2, noise_width=0.5, seed=4)
    pred = costs + np.random.default_rng(1).normal(scale=0.5, size=costs.shape)
    w_hat, _ = _pyepo_solutions(optmodel, pred)
    w, z = _pyepo_solutions(optmodel, costs)
    theirs = np.sum(costs * w_hat, axis=1) - z  # regret in cost form
    solver = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
    ours = dc.regret(solver, -pred, -costs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)  # Gurobi tolerances


def test_perturbed_fenchel_young_gradient_matches_pyepo_in_law() -> None:
    """PyEPO's PFY gradient (cost form, its own noise) and ours agree within Monte-Carlo
    error: both estimate w* - E[w*(ĉ + σξ)] (ours as -(y_ε(θ) - y) with θ = -ĉ).
    Every entry is a difference of two Bernoulli means: tolerance 5 standard errors."""
    torch = pytest.importorskip("torch")
    import pyepo

    m, sigma = 3000, 1.0
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs = dc.data.shortest_path(3, 5, GRID, deg=2, noise_width=0.5, seed=5)
    pred = costs + np.random.default_rng(2).normal(scale=0.3, size=costs.shape)
    w, _ = _pyepo_solutions(optmodel, costs)
    pfy = pyepo.func.perturbedFenchelYoung(optmodel, n_samples=m, sigma=sigma, processes=1, seed=7)
    cp = torch.tensor(pred, requires_grad=True)
    pfy(cp, torch.tensor(w)).backward()
    theirs = cp.grad.numpy() * len(pred)  # undo the batch mean

    solver = functools.partial(dc.solvers.shortest_path_dag, grid=GRID)
    y_eps = dc.perturbed(solver, sigma=sigma, num_samples=m)(-pred, rng=8)
    ours = w - y_eps
    p = np.clip((y_eps + (w - theirs)) / 2, 0, 1)  # pooled estimate of E[w*(ĉ + σξ)]
    se = np.sqrt(2 * p * (1 - p) / m) + 1e-12
    assert np.all(np.abs(ours - theirs) <= 5 * se + 1e-9)
    assert np.abs(ours).max() > 0.1  # the gradient is not trivially zero


# ---------------------------------------------------------------------------------
# shared fixtures of the tests below: a 5x5 shortest-path batch in float64
# ---------------------------------------------------------------------------------
def _batch(n: int, seed: int, scale: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, true costs and noisy predicted costs (continuous: no ties in any solve)."""
    x, costs = dc.data.shortest_path(n, 5, GRID, deg=2, noise_width=0.5, seed=seed)
    pred = costs + np.random.default_rng(seed + 100).normal(scale=scale, size=costs.shape)
    return x, costs, pred


def _solver():  # type: ignore[no-untyped-def]
    return functools.partial(dc.solvers.shortest_path_dag, grid=GRID)


def _grad(module, pred: np.ndarray, *args, cotangent: np.ndarray | None = None):  # type: ignore[no-untyped-def]
    """PyEPO's output and its gradient with respect to the predicted cost (cost form)."""
    import torch

    cp = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    out = module(cp, *(torch.as_tensor(a, dtype=torch.float64) for a in args))
    (out if cotangent is None else (out * torch.tensor(cotangent)).sum()).backward()
    return out.detach().numpy(), cp.grad.numpy()


class _FixedNoise:
    """A PyEPO noise ``distribution`` returning pre-drawn noise ``(batch, n_samples, d)``."""

    def __init__(self, xi: np.ndarray) -> None:
        self.xi = xi

    def sample(self, size, device=None, dtype=None):  # type: ignore[no-untyped-def]
        import torch

        assert tuple(size) == self.xi.shape
        return torch.tensor(self.xi, dtype=dtype or torch.float64)


def _sog_noise(shape: tuple[int, ...], seed: int) -> np.ndarray:
    like = np.zeros(1)
    law = dc.noise.SumOfGamma(5.0, 10)
    return law.sample(dc.backend_for(like), np.random.default_rng(seed), shape, like=like)


# ---------------------------------------------------------------------------------
# gradient replacements and perturbed optimizers, on the same noise
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("two_sided", [False, True])
def test_imle_equals_pyepo_on_the_same_noise(two_sided: bool) -> None:
    """I-MLE with PyEPO's noise fed to both sides. PyEPO perturbs the cost, ĉ + σξ; in
    score form that is θ̂ + σz with z = -ξ, so dopt gets -ξ (samples axis first). The
    forward averages and the finite-difference gradients are then the same numbers
    (gradient in cost form = minus the score-form one); PyEPO's λ + 1e-8 denominator is
    the only rounding difference."""
    pytest.importorskip("torch")
    import pyepo

    b, m, sigma, lam = 4, 6, 1.0, 10.0
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, _, pred = _batch(b, 11)
    xi = _sog_noise((b, m, pred.shape[1]), 1)
    cot = np.random.default_rng(2).normal(size=pred.shape)
    mod = pyepo.func.implicitMLE(optmodel, n_samples=m, sigma=sigma, lambd=lam,
                                 distribution=_FixedNoise(xi), two_sides=two_sided)
    y_theirs, g_theirs = _grad(mod, pred, cotangent=cot)

    f = dc.imle(_solver(), lam=lam, num_samples=m, sigma=sigma, two_sided=two_sided)
    y, vjp = dc.value_and_vjp(f, -pred, noise=-np.transpose(xi, (1, 0, 2)))
    np.testing.assert_allclose(y, y_theirs, atol=1e-9)
    ours = -vjp(cot)
    np.testing.assert_allclose(ours, g_theirs, rtol=1e-10 + 1e-8 / lam, atol=1e-12)
    assert np.abs(ours).max() > 0.01  # some solutions moved


@pytest.mark.parametrize("two_sided", [False, True])
def test_aimle_equals_pyepo_on_the_same_noise(two_sided: bool) -> None:
    """AI-MLE (same noise as the I-MLE test) over three backward passes: the adaptive
    step λ = α‖ĉ‖/‖g‖ (batch norms on both sides), the gradients, and the state (α and
    the moving average u of the non-zero fraction) after every pass agree; u to 1e-7,
    because PyEPO rounds each fraction to float32, and the gradients to the relative
    1e-8/λ of PyEPO's λ + 1e-8 denominator (the cotangent's scale changes per pass,
    so λ does)."""
    pytest.importorskip("torch")
    import pyepo

    b, m = 4, 5
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    f = dc.aimle(_solver(), num_samples=m, two_sided=two_sided)
    mod = None
    for step in range(3):
        _, _, pred = _batch(b, 20 + step)
        xi = _sog_noise((b, m, pred.shape[1]), 30 + step)
        cot = np.random.default_rng(40 + step).normal(size=pred.shape) * 10.0 ** (step - 1)
        if mod is None:
            mod = pyepo.func.adaptiveImplicitMLE(
                optmodel, n_samples=m, distribution=_FixedNoise(xi), two_sides=two_sided
            )
        mod.distribution = _FixedNoise(xi)
        lam = mod.alpha * np.linalg.norm(pred) / np.linalg.norm(cot)  # this pass's step
        y_theirs, g_theirs = _grad(mod, pred, cotangent=cot)
        y, vjp = dc.value_and_vjp(f, -pred, noise=-np.transpose(xi, (1, 0, 2)))
        np.testing.assert_allclose(y, y_theirs, atol=1e-9)
        ours = -vjp(cot)
        np.testing.assert_allclose(ours, g_theirs, rtol=1e-10 + 1e-8 / lam, atol=1e-12)
        assert np.abs(ours).max() > 0
        assert f.state.alpha == pytest.approx(mod.alpha, abs=1e-12)
        # PyEPO takes the non-zero fraction in float32 (``.float().mean()``)
        assert f.state.u == pytest.approx(mod.grad_norm_avg, abs=1e-7)


def test_interpolation_equals_pyepo_blackbox() -> None:
    """DBB: PyEPO's (w*(ĉ + λg) - w*(ĉ))/λ in cost form is minus dopt's
    (y*(θ̂) - y*(θ̂ - λg))/λ at θ̂ = -ĉ; no randomness, the same numbers."""
    pytest.importorskip("torch")
    import pyepo

    lam = 10.0
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, _, pred = _batch(8, 12)
    cot = np.random.default_rng(3).normal(size=pred.shape)
    y_theirs, g_theirs = _grad(pyepo.func.blackboxOpt(optmodel, lambd=lam), pred, cotangent=cot)
    y, vjp = dc.value_and_vjp(dc.interpolation(_solver(), lam=lam), -pred)
    np.testing.assert_allclose(y, y_theirs, atol=1e-9)
    ours = -vjp(cot)
    # PyEPO divides by λ + 1e-8
    np.testing.assert_allclose(ours, g_theirs, rtol=1e-10 + 1e-8 / lam, atol=1e-12)
    assert np.abs(ours).max() > 0.01


def test_identity_equals_pyepo_negative_identity() -> None:
    """NID: the forward solutions agree, and PyEPO's cost-form gradient -g is minus
    dopt's score-form identity gradient g."""
    pytest.importorskip("torch")
    import pyepo

    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, _, pred = _batch(8, 13)
    cot = np.random.default_rng(4).normal(size=pred.shape)
    y_theirs, g_theirs = _grad(pyepo.func.negativeIdentity(optmodel), pred, cotangent=cot)
    y, vjp = dc.value_and_vjp(dc.identity(_solver()), -pred)
    np.testing.assert_allclose(y, y_theirs, atol=1e-9)
    np.testing.assert_allclose(-vjp(cot), g_theirs, rtol=1e-12, atol=1e-12)


def test_perturbed_equals_pyepo_dpo_on_the_same_noise() -> None:
    """DPO: PyEPO draws ξ with ``torch.randn`` from a generator seeded with its ``seed``;
    the test draws the same ξ and gives dopt z = -ξ. With ``variance_reduction=False``
    both compute the plain score-function estimate (1/(Mσ)) Σ_m <w_m, g> ξ_m, so the
    expected solution and the gradient agree to rounding. By design dopt has no
    leave-one-out baseline (PyEPO's default ``variance_reduction=True``: rewards minus
    their sample mean, times M/(M-1)); its own ``control_variate`` subtracts
    <y*(θ), g> instead — another unbiased estimator of the same gradient, not the same
    numbers, so that pairing is not compared here."""
    torch = pytest.importorskip("torch")
    import pyepo

    b, m, sigma, seed = 4, 8, 0.7, 135
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, _, pred = _batch(b, 14)
    cot = np.random.default_rng(5).normal(size=pred.shape)
    mod = pyepo.func.perturbedOpt(
        optmodel, n_samples=m, sigma=sigma, seed=seed, variance_reduction=False
    )
    y_theirs, g_theirs = _grad(mod, pred, cotangent=cot)
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn((b, m, pred.shape[1]), dtype=torch.float64, generator=gen).numpy()

    f = dc.perturbed(_solver(), sigma=sigma, num_samples=m)
    y, vjp = dc.value_and_vjp(f, -pred, noise=-np.transpose(xi, (1, 0, 2)))
    np.testing.assert_allclose(y, y_theirs, atol=1e-9)
    # PyEPO divides by Mσ + 1e-8
    np.testing.assert_allclose(-vjp(cot), g_theirs, rtol=1e-10 + 1e-8 / (m * sigma), atol=1e-12)


# ---------------------------------------------------------------------------------
# solution-pool losses on the same pool (PyEPO with solve_ratio=0: no pool refresh)
# ---------------------------------------------------------------------------------
_POOL_CASES = {  # PyEPO class, dopt loss, its keywords, second argument: solutions or costs
    "nce": ("NCE", dc.nce_loss, {}, "sol"),
    "cmap": ("contrastiveMAP", dc.cmap_loss, {}, "sol"),
    "pointwise": ("pointwiseLearningToRank", dc.ltr_loss, {"kind": "pointwise"}, "cost"),
    "pairwise": ("pairwiseLearningToRank", dc.ltr_loss, {"kind": "pairwise"}, "cost"),
    "listwise": ("listwiseLearningToRank", dc.ltr_loss, {"kind": "listwise"}, "cost"),
}


@pytest.mark.parametrize("kind", list(_POOL_CASES))
def test_pool_losses_equal_pyepo(kind: str) -> None:
    """NCE, CMAP and the three LTR losses on PyEPO's own pool (the distinct training
    solutions of an ``optDataset``, ``solve_ratio=0`` so it never changes), given to
    dopt as a ``SolutionPool``: value and gradient agree to float64 rounding.

    Where they could differ by design, the instance rules it out, and the test checks
    that it does: pairwise LTR divides by P - 1 in PyEPO and by the number of pool
    members strictly worse under the true cost in dopt (equal when the true objectives
    of distinct paths are distinct, as for continuous costs); listwise LTR clamps
    PyEPO's target probabilities at 1e-8 (a numerical guard dopt does not have), so
    the costs are scaled to keep every target probability above it."""
    pytest.importorskip("torch")
    import pyepo

    cls, ours_fn, kw, target = _POOL_CASES[kind]
    x, costs, pred = _batch(40, 15, scale=1.0)
    if kind == "listwise":
        costs, pred = costs / 4, pred / 4
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    data = pyepo.data.dataset.optDataset(optmodel, x, costs)
    mod = getattr(pyepo.func, cls)(optmodel, solve_ratio=0.0, dataset=data)
    members = mod.solpool.double().numpy()
    b = 8
    sols = np.asarray(data.sols[:b], dtype=np.float64)
    c, cp = costs[:b], pred[:b]
    value, grad = _grad(mod, cp, sols if target == "sol" else c)
    assert np.array_equal(mod.solpool.double().numpy(), members)  # the pool did not change

    pool = dc.SolutionPool(members)
    assert len(pool) == len(members) > 10
    t = -(c @ members.T)  # true scores of the members
    assert np.all(np.abs(t[:, :, None] - t[:, None, :]) + np.eye(len(members)) > 1e-9)  # distinct
    if kind == "listwise":
        p = np.exp(t - t.max(axis=1, keepdims=True))
        assert (p / p.sum(axis=1, keepdims=True)).min() > 1e-8
    v, vjp = dc.value_and_vjp(ours_fn, -cp, sols if target == "sol" else -c, pool, **kw)
    np.testing.assert_allclose(float(v), float(value), rtol=1e-10, atol=1e-12)
    ours = -vjp(np.array(1.0))
    np.testing.assert_allclose(ours, grad, rtol=1e-10, atol=1e-12)
    assert np.abs(ours).max() > 1e-3


# ---------------------------------------------------------------------------------
# perturbation gradient (PG)
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("two_sided", [False, True])
def test_perturbation_gradient_equals_pyepo(two_sided: bool) -> None:
    """PG: PyEPO's cost-form (z(ĉ) - z(ĉ - σc))/σ (or the central difference) is dopt's
    (F(θ̂ - σθ) - F(θ̂))/σ at θ̂ = -ĉ, θ = -c (F the max, F(-x) = -z(x)): the same value,
    and the gradient in cost form is minus dopt's. PyEPO divides by σ + 1e-8 (or
    2σ + 1e-8); the test undoes that factor and then asks for float64 agreement."""
    pytest.importorskip("torch")
    import pyepo
    from pyepo.utils import _EPS

    sigma = 0.5
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs, pred = _batch(16, 16, scale=1.0)
    mod = pyepo.func.perturbationGradient(optmodel, sigma=sigma, two_sides=two_sided)
    value, grad = _grad(mod, pred, costs)
    width = 2 * sigma if two_sided else sigma
    value, grad = value * (width + _EPS) / width, grad * (width + _EPS) / width
    f = dc.perturbation_gradient_loss(_solver(), sigma=sigma, two_sided=two_sided)
    v, vjp = dc.value_and_vjp(f, -pred, -costs)
    np.testing.assert_allclose(float(v), float(value), rtol=1e-10, atol=1e-12)
    ours = -vjp(np.array(1.0))
    np.testing.assert_allclose(ours, grad, rtol=1e-10, atol=1e-12)
    assert np.abs(ours).max() > 1e-3


# ---------------------------------------------------------------------------------
# regularized Fenchel-Young (RFY), CaVE, kNN targets
# ---------------------------------------------------------------------------------
def test_regularized_fenchel_young_equals_pyepo_at_convergence() -> None:
    """RFY: the same loss, <ĉ, y - μ̂> + Ω(y) - Ω(μ̂) with μ̂ = proj_C(-ĉ/λ), computed by
    different Frank-Wolfe variants (dopt: pairwise steps; PyEPO: away steps) that stop
    at the same Frank-Wolfe gap ``tol``, so the two agree only up to a bound from that
    gap. With f(μ) = ½‖μ - θ/λ‖² (1-strongly convex) the gap bounds f(μ) - f*, the
    loss is -λ f(μ) + const, so each side's loss is within λ·tol of the exact one
    (batch mean: λ·tol apart), and ‖μ - μ*‖ ≤ √(2 tol), so each gradient entry of the
    batch mean is within √(2 tol)/b of it (2√(2 tol)/b apart)."""
    pytest.importorskip("torch")
    import pyepo

    b, lam, tol = 4, 0.5, 1e-10
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, costs, pred = _batch(b, 17, scale=1.0)
    w, _ = _pyepo_solutions(optmodel, costs)
    mod = pyepo.func.RFY(optmodel, lambd=lam, max_iter=2000, tol=tol)
    value, grad = _grad(mod, pred, w)
    f = dc.regularized_fenchel_young_loss(_solver(), lam=lam, max_iter=2000, tol=tol)
    v, vjp = dc.value_and_vjp(f, -pred, w)
    assert abs(float(v) - float(value)) <= lam * tol + 1e-12
    ours = -vjp(np.array(1.0))
    np.testing.assert_allclose(ours, grad, rtol=0, atol=2 * np.sqrt(2 * tol) / b)
    assert np.abs(ours).max() > 0.01
    assert 0.0 < float(v)


def test_cave_equals_pyepo() -> None:
    """CaVE on PyEPO's binding normals of the true paths (``optDatasetConstrs``: ± the
    flow-conservation rows and -e_j for the arcs off the path, the cone of dopt's
    ``shortest_path_normals``).

    * CaVE-E: dopt's exact NNLS projection against PyEPO's Clarabel solve run to
      convergence (``max_iter=100``): PyEPO rounds the projection to float32 (relative
      error 6e-8) and Clarabel stops at its 1e-8 gap, hence value and gradient to 1e-7
      (values ~0.02, gradient entries ≤ 3e-3 here).
    * dopt's CaVE+ (projected gradient from x = 0) run to convergence (2000 steps)
      reaches the same value and gradient.
    * The truncated presets differ by design — PyEPO's CaVE+ is 3 interior-point
      iterations, dopt's 20 accelerated projected-gradient steps — and are not
      compared with each other. What both must satisfy: the truncated projection lies
      in the cone, and the exact projection maximises the cosine with θ̂ over the cone,
      so each truncated loss is at least the exact one."""
    pytest.importorskip("torch")
    pytest.importorskip("clarabel")
    import pyepo
    from pyepo.data.dataset import collate_tight_constraints, optDatasetConstrs

    b = 8
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    x, costs, pred = _batch(b, 18, scale=1.0)
    data = optDatasetConstrs(optmodel, x, costs)
    ctrs = collate_tight_constraints([data[i] for i in range(b)])[-1].double()
    normals = dc.shortest_path_normals(np.asarray(data.sols, dtype=np.float64), GRID)
    value, grad = _grad(pyepo.func.CaVE(optmodel, max_iter=100), pred, ctrs)
    plus, _ = _grad(pyepo.func.CaVE(optmodel, max_iter=3), pred, ctrs)

    exact, vjp = dc.value_and_vjp(dc.cave_loss, -pred, normals)
    np.testing.assert_allclose(float(exact), float(value), rtol=0, atol=1e-7)
    np.testing.assert_allclose(-vjp(np.array(1.0)), grad, rtol=0, atol=1e-7)
    assert np.abs(grad).max() > 1e-3 and float(exact) > 1e-3
    conv, vjp_conv = dc.value_and_vjp(dc.cave_loss, -pred, normals, method="pgd", max_iter=2000)
    np.testing.assert_allclose(float(conv), float(value), rtol=0, atol=1e-7)
    np.testing.assert_allclose(-vjp_conv(np.array(1.0)), grad, rtol=0, atol=1e-7)

    ours_plus = dc.cave_loss(-pred, normals, method="pgd", max_iter=20, reduction="none")
    exact_each = dc.cave_loss(-pred, normals, reduction="none")
    assert np.all(ours_plus >= exact_each - 1e-12)
    plus_each, _ = _grad(pyepo.func.CaVE(optmodel, max_iter=3, reduction="none"), pred, ctrs,
                         cotangent=np.ones(b))
    assert np.all(plus_each >= exact_each - 1e-7)
    assert float(plus) > float(value)  # truncation shows (not the same loss)


def test_knn_targets_equal_pyepo() -> None:
    """kNN-robust targets: the same neighbours (Euclidean, self excluded; continuous
    features, no ties), blended costs and mean solutions. PyEPO stores both in float32
    (``_as_float_tensor``), hence rtol 1e-6 on the costs and atol 1e-6 on the mean
    solutions (multiples of 1/k)."""
    pytest.importorskip("torch")
    import pyepo

    k, weight = 5, 0.3
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    x, costs, _ = _batch(30, 19)
    data = pyepo.data.dataset.optDatasetKNN(optmodel, x, costs, k=k, weight=weight)
    c_bar, y_bar = dc.knn_targets(x, costs, _solver(), k=k, weight=weight)
    np.testing.assert_allclose(c_bar, np.asarray(data.costs, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(y_bar, np.asarray(data.sols, dtype=np.float64), rtol=0, atol=1e-6)
    assert np.any((y_bar > 0) & (y_bar < 1))  # the neighbours' solutions do differ


def test_perturbed_gradient_matches_pyepo_dpo_default_in_law() -> None:
    """DPO with PyEPO's default leave-one-out baseline against dopt's
    ``control_variate=True`` (baseline <y*(θ), g>): two unbiased estimators of the same
    J^T g of the smoothed solution map, on independent noise. Each is a mean of M
    per-sample terms; the tolerance is 5 standard errors of the difference, from the
    terms' sample variances (computed with the same noise and dopt's solver, whose
    solutions are Gurobi's: the same-noise test above)."""
    torch = pytest.importorskip("torch")
    import pyepo

    b, m, sigma, seed = 2, 2000, 1.0, 7
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    _, _, pred = _batch(b, 21)
    cot = np.random.default_rng(6).normal(size=pred.shape)
    mod = pyepo.func.perturbedOpt(optmodel, n_samples=m, sigma=sigma, seed=seed)
    _, theirs = _grad(mod, pred, cotangent=cot)
    gen = torch.Generator().manual_seed(seed)
    xi = torch.randn((b, m, pred.shape[1]), dtype=torch.float64, generator=gen).numpy()
    xi = np.transpose(xi, (1, 0, 2))  # (M, b, d)
    z = np.random.default_rng(8).standard_normal(xi.shape)

    f = dc.perturbed(_solver(), sigma=sigma, num_samples=m, control_variate=True)
    _, vjp = dc.value_and_vjp(f, -pred, noise=z)
    ours = -vjp(cot)

    solve = _solver()
    # cost-form per-sample terms of both estimators (minus the score-form ones for dopt)
    r = np.sum(solve(-pred - sigma * xi) * cot, axis=-1, keepdims=True)  # <w*(ĉ + σξ), g>
    t_theirs = (r - r.mean(axis=0)) * m / (m - 1) * xi / sigma
    r0 = np.sum(solve(-pred) * cot, axis=-1, keepdims=True)
    r_ours = np.sum(solve(-pred + sigma * z) * cot, axis=-1, keepdims=True)
    t_ours = -(r_ours - r0) * z / sigma
    np.testing.assert_allclose(t_theirs.mean(axis=0), theirs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(t_ours.mean(axis=0), ours, rtol=1e-8, atol=1e-10)
    se = np.sqrt((t_theirs.var(axis=0, ddof=1) + t_ours.var(axis=0, ddof=1)) / m)
    assert np.all(np.abs(ours - theirs) <= 5 * se)
    assert np.abs(theirs).max() > 5 * se.max()  # the gradient is resolved, not noise
