"""PyEPO's decision-focused-learning methods: AI-MLE, PG losses, solution-pool losses,
regularised FY by Frank-Wolfe, CaVE and kNN targets.

Every loss is checked against a direct NumPy transcription of the paper's formula on
small instances (value and gradient), and a small gradient step must lower it.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

import dopt_conformance as conformance
import dopt_core as dc

S = dc.solvers
GRID = (3, 3)
SP = functools.partial(S.shortest_path_dag, grid=GRID)
TOPK = functools.partial(S.top_k, k=2)


def _all_paths(grid: tuple[int, int]) -> np.ndarray:
    """Every monotone path of the grid DAG as arc indicators (enumeration)."""
    arcs = S.grid_dag_arcs(grid)
    h, w = grid
    out = []
    for moves in set(itertools.permutations("R" * (w - 1) + "D" * (h - 1))):
        v, y = 0, np.zeros(len(arcs))
        for mv in moves:
            nxt = v + 1 if mv == "R" else v + w
            y[np.flatnonzero((arcs[:, 0] == v) & (arcs[:, 1] == nxt))[0]] = 1
            v = nxt
        out.append(y)
    return np.array(out)


PATHS = _all_paths(GRID)


def _brute(theta: np.ndarray, sols: np.ndarray = PATHS) -> np.ndarray:
    return sols[np.argmax(theta @ sols.T, axis=-1)]


def _grad(loss, *args, **kw):  # type: ignore[no-untyped-def]
    value, vjp = dc.value_and_vjp(loss, *args, **kw)
    return float(value), vjp(np.array(1.0))


# ---------------------------------------------------------------------------------
# AI-MLE
# ---------------------------------------------------------------------------------
def _aimle_reference(theta, z, g, alpha, sigma, two_sided):  # type: ignore[no-untyped-def]
    lam = alpha * np.linalg.norm(theta) / np.linalg.norm(g)
    eta = theta + sigma * z
    if two_sided:
        d = _brute(eta + lam * g) - _brute(eta - lam * g)
        return d.mean(0) / (2 * lam)
    return (_brute(eta) - _brute(eta - lam * g)).mean(0) / lam


@pytest.mark.parametrize("two_sided", [False, True])
def test_aimle_matches_formula_and_adapts_alpha(two_sided: bool) -> None:
    rng = np.random.default_rng(0)
    f = dc.aimle(SP, num_samples=3, noise="gumbel", sigma=0.5, two_sided=two_sided, alpha=1.0)
    alpha, u = 1.0, 1.0
    for _ in range(4):
        theta, z, g = rng.normal(size=(4, 12)), rng.gumbel(size=(3, 4, 12)), rng.normal(size=(4, 12))
        y, vjp = dc.value_and_vjp(f, theta, noise=z)
        np.testing.assert_allclose(y, _brute(theta + 0.5 * z).mean(0))
        ref = _aimle_reference(theta, z, g, alpha, 0.5, two_sided)
        np.testing.assert_allclose(vjp(g), ref, atol=1e-12)
        u = 0.9 * u + 0.1 * np.mean(ref != 0)
        alpha = alpha + 1e-3 if u < 1 else max(0.0, alpha - 1e-3)
        assert f.state.alpha == pytest.approx(alpha) and f.state.u == pytest.approx(u)
    f.state.reset()
    assert (f.state.alpha, f.state.u) == (1.0, 1.0)


def test_aimle_zero_cotangent_and_bad_arguments() -> None:
    f = dc.aimle(S.argmax)
    _, vjp = dc.value_and_vjp(f, np.array([1.0, 2.0]), rng=0)
    np.testing.assert_array_equal(vjp(np.zeros(2)), [0.0, 0.0])
    with pytest.raises(ValueError, match="decay"):
        dc.aimle(S.argmax, decay=1.0)
    with pytest.raises(ValueError, match="alpha"):
        dc.aimle(S.argmax, alpha=-1.0)
    with pytest.raises(ValueError, match="target must be a fraction"):
        dc.aimle(S.argmax, target=2.0)  # u ≤ 1 < target: α would only ever grow


@pytest.mark.parametrize(("theta_scale", "g_scale"), [(1e20, 1.0), (1.0, 1e-21), (1e-25, 1.0)])
def test_aimle_step_at_extreme_scales(theta_scale: float, g_scale: float) -> None:
    """λ = α‖θ‖/‖g‖ in float32 when ‖θ‖² or ‖g‖² over- or underflows: the step λg and
    the estimate (y*(θ) - y*(θ - λg))/λ are those of the rescaled problem."""
    f = dc.aimle(S.argmax, alpha=1.0)
    theta = np.array([3.0, 0.0, 0.0], dtype=np.float32) * np.float32(theta_scale)
    g = np.array([1.0, -1.0, 0.0], dtype=np.float32) * np.float32(g_scale)
    _, vjp = dc.value_and_vjp(f, theta, noise=np.zeros((1, 3), np.float32))
    lam = 3.0 * theta_scale / (np.sqrt(2.0) * g_scale)  # θ - λg = [0.88, 2.12, 0]·theta_scale
    np.testing.assert_allclose(vjp(g), np.array([1.0, -1.0, 0.0]) / lam, rtol=1e-5)


def test_aimle_sign_step() -> None:
    """L = |y - e_1|²: a step along minus the estimate moves the decision to item 1."""
    f = dc.aimle(S.argmax, noise="gumbel", sigma=0.01)
    theta = np.array([1.0, 0.5, 0.0])
    z = np.zeros((1, 3))
    y, vjp = dc.value_and_vjp(f, theta, noise=z)
    target = np.array([0.0, 1.0, 0.0])
    grad = vjp(2 * (y - target))
    after = f(theta - 1.0 * grad, noise=z)
    assert np.sum((after - target) ** 2) < np.sum((y - target) ** 2)


# ---------------------------------------------------------------------------------
# perturbation-gradient losses
# ---------------------------------------------------------------------------------
def _pg_reference(theta_hat, theta, sigma, two_sided):  # type: ignore[no-untyped-def]
    """PyEPO's cost form: c = -θ, V(c) = min_w c·w."""
    c_hat, c = -theta_hat, -theta
    V = lambda cc: np.min(cc @ PATHS.T, axis=-1)  # noqa: E731
    W = lambda cc: PATHS[np.argmin(cc @ PATHS.T, axis=-1)]  # noqa: E731
    if two_sided:
        value = (V(c_hat + sigma * c) - V(c_hat - sigma * c)) / (2 * sigma)
        grad_c = (W(c_hat + sigma * c) - W(c_hat - sigma * c)) / (2 * sigma)
    else:
        value = (V(c_hat) - V(c_hat - sigma * c)) / sigma
        grad_c = (W(c_hat) - W(c_hat - sigma * c)) / sigma
    return value, -grad_c  # d/dθ̂ = -d/dĉ


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pg_loss_matches_pyepo_formula(two_sided: bool, dtype: type) -> None:
    rng = np.random.default_rng(1)
    theta_hat, theta = rng.normal(size=(6, 12)), -rng.uniform(0.5, 1.5, size=(6, 12))
    loss = dc.perturbation_gradient_loss(SP, sigma=0.3, two_sided=two_sided, reduction="none")
    values, vjp = dc.value_and_vjp(loss, theta_hat.astype(dtype), theta.astype(dtype))
    ref_v, ref_g = _pg_reference(theta_hat, theta, 0.3, two_sided)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(values, ref_v, rtol=tol, atol=tol)
    g = rng.normal(size=6)
    np.testing.assert_allclose(vjp(g.astype(dtype)), g[:, None] * ref_g, rtol=tol, atol=tol)


@pytest.mark.parametrize("two_sided", [False, True])
def test_pg_loss_float32_small_sigma(two_sided: bool) -> None:
    """float32, σ = 1e-4, scores ~10: the value is the float64 formula to float32
    precision of the scores, not the rounding of F(θ̂ ± σθ) (~1e-6) amplified by 1/σ."""
    rng = np.random.default_rng(3)
    theta = (rng.normal(size=(2000, 10)) + 10).astype(np.float32)
    theta_hat = (rng.normal(size=theta.shape) + 10).astype(np.float32)
    sigma = 1e-4
    loss = dc.perturbation_gradient_loss(S.argmax, sigma=sigma, two_sided=two_sided, reduction="none")
    values = loss(theta_hat, theta)
    t, h = theta.astype(np.float64), theta_hat.astype(np.float64)

    def F(x: np.ndarray) -> np.ndarray:
        return np.sum(S.argmax(x) * x, axis=-1)

    hi = h + sigma * t if two_sided else h
    ref = (F(h - sigma * t) - F(hi)) / (sigma * (2 if two_sided else 1))
    np.testing.assert_allclose(values, ref, rtol=1e-5)  # was off by ~5e-3 (rel. 5e-4)


def test_pg_loss_tends_to_decision_cost_and_step_lowers_it() -> None:
    rng = np.random.default_rng(2)
    theta_hat, theta = rng.normal(size=(5, 12)), -rng.uniform(0.5, 1.5, size=(5, 12))
    loss = dc.perturbation_gradient_loss(SP, sigma=1e-4, reduction="none")
    cost = -np.sum(theta * _brute(theta_hat), axis=-1)
    np.testing.assert_allclose(loss(theta_hat, theta), cost, rtol=1e-3)
    big = dc.perturbation_gradient_loss(SP, sigma=1.0)
    v0, grad = _grad(big, theta_hat, theta)
    assert np.abs(grad).sum() > 0
    assert float(big(theta_hat - 0.05 * grad / np.abs(grad).max(), theta)) < v0


# ---------------------------------------------------------------------------------
# the solution pool
# ---------------------------------------------------------------------------------
def test_pool_dedup_bound_and_update(backend: conformance.Env) -> None:
    base = PATHS[[0, 1, 0, 2, 1]]
    pool = dc.SolutionPool(backend.asarray(base), max_size=4)
    assert len(pool) == 3
    np.testing.assert_array_equal(backend.to_numpy(pool.solutions), PATHS[[0, 1, 2]])
    pool.add(backend.asarray(PATHS[[2, 3, 3, 4]]))  # 3 and 4 are new: 0 leaves
    np.testing.assert_array_equal(backend.to_numpy(pool.solutions), PATHS[[1, 2, 3, 4]])
    assert backend.same_device(backend.device_of(pool.solutions), backend.device_of(backend.asarray(base)))
    theta = backend.asarray(PATHS[[5]] * 3.0 - 1.0)  # solving it gives path 5
    new = pool.update(theta, SP, solve_ratio=1.0, rng=0)
    np.testing.assert_array_equal(backend.to_numpy(new), PATHS[[5]])
    np.testing.assert_array_equal(backend.to_numpy(pool.solutions), PATHS[[2, 3, 4, 5]])


@pytest.mark.parametrize("name", ["numpy", "torch", "array_api_strict"])  # JAX: the test above
def test_pool_dedup_is_exact_where_the_expanded_distance_rounds(name: str) -> None:
    """Re-adding members must not grow the pool, also when |x|² + |y|² - 2<x, y> rounds
    above ``atol`` (non-integer float32 solutions, large float64 ones); members at a
    squared distance above ``atol`` stay distinct."""
    try:
        backend = conformance.setup(name)
    except conformance.Skip as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(11)
    for sols in (rng.uniform(0, 3, size=(4, 200)).astype(np.float32),
                 rng.uniform(0, 1e5, size=(4, 50))):
        pool = dc.SolutionPool(backend.asarray(np.concatenate([sols, sols[:2]])))
        assert len(pool) == 4
        pool.add(backend.asarray(sols[::-1].copy()))
        assert len(pool) == 4
        np.testing.assert_array_equal(backend.to_numpy(pool.solutions), sols)
    near = np.zeros((2, 3))
    near[1, 0] = 2e-3  # squared distance 4e-6 > atol
    assert len(dc.SolutionPool(backend.asarray(near))) == 2


def test_pool_update_solves_the_ratio() -> None:
    calls: list[int] = []

    def counting(theta: np.ndarray) -> np.ndarray:
        calls.append(theta.shape[0])
        return SP(theta)

    counting.event_ndim = 1  # type: ignore[attr-defined]
    pool = dc.SolutionPool(PATHS[:1])
    pool.update(np.random.default_rng(0).normal(size=(10, 12)), counting, solve_ratio=0.3, rng=1)
    pool.update(np.zeros((10, 12)), counting, solve_ratio=0.0)
    assert calls == [3]
    with pytest.raises(ValueError, match="solve_ratio"):
        pool.update(np.zeros((2, 12)), SP, solve_ratio=1.5)
    with pytest.raises(ValueError, match="solutions"):
        pool.add(np.zeros((1, 5)))
    # θ whose trailing axes are not the pool's event, even when its size would reshape
    for bad in (np.zeros((2, 6)), np.zeros((3, 8)), np.zeros((12, 2))):
        with pytest.raises(ValueError, match="theta"):
            pool.update(bad, SP)


def _pool_reference(kind, theta_hat, target, pool, tau=1.0):  # type: ignore[no-untyped-def]
    """Per-instance values and gradients, one instance at a time."""
    vals, grads = [], []
    for th, tg in zip(theta_hat, target):
        s = pool @ th
        if kind == "nce":
            vals.append(np.mean(s - th @ tg))
            grads.append(pool.mean(0) - tg)
        elif kind == "cmap":
            p = int(np.argmax(s))
            vals.append(s[p] - th @ tg)
            grads.append(pool[p] - tg)
        else:
            t = pool @ tg
            if kind == "pointwise":
                vals.append(np.mean((s - t) ** 2))
                grads.append(2 * (s - t) @ pool / len(pool))
            elif kind == "pairwise":
                b = int(np.argmax(t))
                worse = [p for p in range(len(pool)) if t[p] < t[b]]
                vals.append(np.mean([max(0.0, s[p] - s[b]) for p in worse]))
                grads.append(np.mean([(s[p] > s[b]) * (pool[p] - pool[b]) for p in worse], axis=0))
            else:
                q = np.exp(t / tau) / np.exp(t / tau).sum()
                ps = np.exp(s / tau) / np.exp(s / tau).sum()
                vals.append(-np.sum(q * np.log(ps)))
                grads.append((ps - q) @ pool / tau)
    return np.array(vals), np.array(grads)


POOL_KINDS = ["nce", "cmap", "pointwise", "pairwise", "listwise"]


def _pool_loss(kind: str):  # type: ignore[no-untyped-def]
    if kind == "nce":
        return dc.nce_loss, {}
    if kind == "cmap":
        return dc.cmap_loss, {}
    return dc.ltr_loss, {"kind": kind, "tau": 0.7 if kind == "listwise" else 1.0}


@pytest.mark.parametrize("kind", POOL_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_losses_match_formulas(kind: str, dtype: type) -> None:
    rng = np.random.default_rng(3)
    theta_hat = rng.normal(size=(5, 12))
    theta = -rng.uniform(0.5, 1.5, size=(5, 12))
    target = _brute(theta) if kind in ("nce", "cmap") else theta
    pool = PATHS[rng.permutation(len(PATHS))[:4]]
    fn, kw = _pool_loss(kind)
    values, vjp = dc.value_and_vjp(fn, theta_hat.astype(dtype), target.astype(dtype), pool.astype(dtype),
                                   reduction="none", **kw)
    ref_v, ref_g = _pool_reference(kind, theta_hat, target, pool, kw.get("tau", 1.0))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(values, ref_v, rtol=tol, atol=tol)
    g = rng.normal(size=5)
    np.testing.assert_allclose(vjp(g.astype(dtype)), g[:, None] * ref_g, rtol=tol, atol=tol)
    # mean reduction and the pool object give the same
    sp = dc.SolutionPool(pool.astype(dtype))
    mean = fn(theta_hat.astype(dtype), target.astype(dtype), sp, **kw)
    np.testing.assert_allclose(mean, ref_v.mean(), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_pool_loss_step_lowers_it(kind: str) -> None:
    rng = np.random.default_rng(4)
    theta_hat, theta = rng.normal(size=(4, 12)), -rng.uniform(0.5, 1.5, size=(4, 12))
    target = _brute(theta) if kind in ("nce", "cmap") else theta
    pool = PATHS
    fn, kw = _pool_loss(kind)
    v0, grad = _grad(fn, theta_hat, target, pool, **kw)
    assert np.abs(grad).sum() > 0
    assert float(fn(theta_hat - 1e-3 * grad / np.abs(grad).max(), target, pool, **kw)) < v0


@pytest.mark.parametrize("kind", POOL_KINDS)
def test_pool_loss_on_a_pool_of_another_dtype_follows_its_updates(kind: str) -> None:
    """A float32 SolutionPool scored by float64 predictions: its members are converted
    once and reused; after ``add`` the loss sees the new members (the formula on the
    grown pool)."""
    rng = np.random.default_rng(9)
    theta_hat, theta = rng.normal(size=(3, 12)), -rng.uniform(0.5, 1.5, size=(3, 12))
    target = _brute(theta) if kind in ("nce", "cmap") else theta
    fn, kw = _pool_loss(kind)
    sp = dc.SolutionPool(PATHS[:2].astype(np.float32))
    for members in (PATHS[:2], PATHS[:5]):
        sp.add(members.astype(np.float32))
        for _ in range(2):  # the second call takes the converted members again
            values = fn(theta_hat, target, sp, reduction="none", **kw)
            assert values.dtype == np.float64
            ref_v, _ = _pool_reference(kind, theta_hat, target, members, kw.get("tau", 1.0))
            np.testing.assert_allclose(values, ref_v, rtol=1e-12, atol=1e-12)


def test_pool_loss_bad_inputs() -> None:
    th = np.zeros((2, 12))
    with pytest.raises(ValueError, match="pool"):
        dc.nce_loss(th, th, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="kind"):
        dc.ltr_loss(th, th, PATHS, kind="triplet")
    with pytest.raises(ValueError, match="y_true"):
        dc.cmap_loss(th, np.zeros((2, 3)), PATHS)


# ---------------------------------------------------------------------------------
# regularised optimizer / FY loss by Frank-Wolfe
# ---------------------------------------------------------------------------------
def _sparsemax(z: np.ndarray) -> np.ndarray:
    """Martins & Astudillo's closed form, row by row."""
    out = []
    for row in z:
        u = np.sort(row)[::-1]
        css = np.cumsum(u)
        k = np.arange(1, len(u) + 1)
        support = k[1 + k * u > css].max()
        tau = (css[support - 1] - 1) / support
        out.append(np.maximum(row - tau, 0))
    return np.array(out)


@pytest.mark.parametrize("lam", [0.5, 2.0])
def test_regularized_optimizer_over_simplex_is_sparsemax(lam: float) -> None:
    rng = np.random.default_rng(5)
    theta = rng.normal(size=(6, 5))
    f = dc.regularized_optimizer(S.argmax, lam=lam, max_iter=200, tol=1e-12)
    mu, vjp = dc.value_and_vjp(f, theta)
    np.testing.assert_allclose(mu, _sparsemax(theta / lam), atol=1e-9)
    g = rng.normal(size=(6, 5))
    _, ref_vjp = dc.value_and_vjp(dc.relax.sparsemax, theta / lam)
    np.testing.assert_allclose(vjp(g), ref_vjp(g) / lam, atol=1e-5)


def test_regularized_optimizer_on_paths_is_the_projection() -> None:
    """μ̂ is optimal: the Frank-Wolfe gap over every path is ~0; its VJP matches
    central finite differences."""
    rng = np.random.default_rng(6)
    theta = rng.normal(size=(4, 12))
    f = dc.regularized_optimizer(SP, lam=1.0, max_iter=500, tol=1e-12)
    mu, vjp = dc.value_and_vjp(f, theta)
    grad = mu - theta
    gaps = np.max(np.einsum("nd,npd->np", grad, mu[:, None, :] - PATHS[None]), axis=1)
    assert np.all(gaps < 1e-8), gaps
    g = rng.normal(size=(4, 12))
    eps = 1e-6
    fd = np.zeros_like(theta)
    for j in range(12):
        e = np.zeros(12)
        e[j] = eps
        fd[:, j] = np.sum((f(theta + e) - f(theta - e)) * g, axis=1) / (2 * eps)
    np.testing.assert_allclose(vjp(g), fd, atol=1e-4)


def test_regularized_optimizer_direct_oracle_matches_public_calls() -> None:
    """A dopt solver runs as its Op's forward inside the Frank-Wolfe loop
    (``solver_kernel``); wrapped in a plain function (public calls, validated each
    time) it must give the same iterates, atoms and weights, to the last bit."""
    rng = np.random.default_rng(8)
    theta = rng.normal(size=(6, 12))
    fw = dc.regularized.FrankWolfe(SP, 1.0, 7, 1e-6)
    plain = dc.regularized.FrankWolfe(lambda t: SP(t), 1.0, 7, 1e-6)
    assert dc.op.solver_kernel(SP, theta, xp=np) is not None
    assert dc.op.solver_kernel(plain.solver, theta, xp=np) is None
    for a, b in zip(fw.run(theta, xp=np), plain.run(theta, xp=np), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regularized_fy_loss_formula_and_step(dtype: type) -> None:
    rng = np.random.default_rng(7)
    theta = rng.normal(size=(5, 4))
    y = np.eye(4)[rng.integers(0, 4, size=5)]
    lam = 0.8
    loss = dc.regularized_fenchel_young_loss(S.argmax, lam=lam, max_iter=200, tol=1e-10, reduction="none")
    values, vjp = dc.value_and_vjp(loss, theta.astype(dtype), y.astype(dtype))
    mu = _sparsemax(theta / lam)
    ref = np.sum(theta * (mu - y), 1) + lam / 2 * (np.sum(y * y, 1) - np.sum(mu * mu, 1))
    tol = 1e-5 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(values, ref, atol=tol)
    assert np.all(values >= -tol)
    np.testing.assert_allclose(vjp(np.ones(5, dtype=dtype)), mu - y, atol=tol)
    mean_loss = dc.regularized_fenchel_young_loss(S.argmax, lam=lam)
    v0, grad = _grad(mean_loss, theta, y)
    assert float(mean_loss(theta - 0.5 * grad, y)) < v0


# ---------------------------------------------------------------------------------
# CaVE
# ---------------------------------------------------------------------------------
def _cone_projection(normals: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Bounded least squares (a different algorithm from the library's NNLS)."""
    from scipy.optimize import lsq_linear

    rows = normals[np.any(normals != 0, axis=1)]
    x = lsq_linear(rows.T, theta, bounds=(0, np.inf), method="bvls", tol=1e-12).x
    return rows.T @ x


def test_shortest_path_cone_is_the_optimality_cone() -> None:
    """θ is in the cone of y*(θ)'s binding normals (CaVE loss 0), and not in the cone
    of a path that is not optimal for it."""
    rng = np.random.default_rng(8)
    theta = rng.normal(size=(6, 12))
    y = SP(theta)
    loss = functools.partial(dc.cave_loss, reduction="none")
    np.testing.assert_allclose(loss(theta, dc.shortest_path_normals(y, GRID)), 0.0, atol=1e-9)
    worst = PATHS[np.argmin(theta @ PATHS.T, axis=1)]
    assert np.all(loss(theta, dc.shortest_path_normals(worst, GRID)) > 1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cave_value_and_gradient_match_formula(dtype: type) -> None:
    rng = np.random.default_rng(9)
    theta_hat = rng.normal(size=(5, 12))
    normals = dc.shortest_path_normals(SP(rng.normal(size=(5, 12))), GRID)
    values, vjp = dc.value_and_vjp(dc.cave_loss, theta_hat.astype(dtype), normals.astype(dtype), reduction="none")
    ref_v, ref_g = [], []
    for th, nm in zip(theta_hat, normals):
        p = _cone_projection(nm, th)
        cos = th @ p / (np.linalg.norm(th) * np.linalg.norm(p))
        ref_v.append(1 - cos)
        # gradient of 1 - cos(θ, p) with p fixed, by central differences
        f = lambda t: 1 - t @ p / (np.linalg.norm(t) * np.linalg.norm(p))  # noqa: B023,E731
        ref_g.append([(f(th + 1e-6 * e) - f(th - 1e-6 * e)) / 2e-6 for e in np.eye(12)])
    tol = 1e-4 if dtype == np.float32 else 1e-7
    np.testing.assert_allclose(values, ref_v, atol=tol)
    g = rng.normal(size=5)
    np.testing.assert_allclose(vjp(g.astype(dtype)), g[:, None] * np.array(ref_g), atol=tol)


def test_cave_pgd_approaches_exact_and_step_lowers_loss() -> None:
    rng = np.random.default_rng(10)
    theta_hat = rng.normal(size=(4, 12))
    normals = dc.shortest_path_normals(SP(rng.normal(size=(4, 12))), GRID)
    exact = dc.cave_loss(theta_hat, normals, reduction="none")
    long = dc.cave_loss(theta_hat, normals, method="pgd", max_iter=3000, reduction="none")
    np.testing.assert_allclose(long, exact, atol=1e-4)
    short = dc.cave_loss(theta_hat, normals, method="pgd", max_iter=5, reduction="none")
    assert np.all(short >= exact - 1e-9)  # a truncated projection is no closer than the exact one
    for method in ("exact", "pgd"):
        v0, grad = _grad(dc.cave_loss, theta_hat, normals, method=method)
        assert float(dc.cave_loss(theta_hat - 0.05 * grad / np.abs(grad).max(), normals, method=method)) < v0


def test_cave_exact_projection_with_two_sided_rows_matches_bvls() -> None:
    """The exact projection splits off the subspace of rows present with both signs
    (``cave._nnls_block``): on normals mixing ± pairs, a repeated row, a row that is
    only nearly opposite and one-sided rows — and on normals without any pair — it
    must match bounded least squares on all rows (BVLS, another algorithm)."""
    from dopt_core.cave import _nnls_block, _two_sided

    rng = np.random.default_rng(11)
    eq = rng.normal(size=(3, 6))
    one = rng.normal(size=(4, 6))
    near = -eq[1] * (1 + 1e-9)  # in the span of the pairs: adds nothing
    tilt = -eq[2] + 1e-4 * rng.normal(size=6)  # a small genuine direction outside it
    rows = np.concatenate([eq, -eq, one, eq[:1], near[None], tilt[None], np.zeros((2, 6))])
    mixed = np.stack([rows[rng.permutation(len(rows))] for _ in range(3)])
    plain = np.stack([np.concatenate([one, np.zeros((1, 6))])] * 2)
    two = _two_sided(mixed)
    for b in range(3):  # a marked row's negation is a row; an unmarked one's is not,
        for r, mark in zip(mixed[b], two[b], strict=True):  # unless r is repeated
            opposite = bool(np.any(r != 0) and np.any(np.all(mixed[b] == -r, axis=1)))
            repeated = int(np.sum(np.all(mixed[b] == r, axis=1))) > 1
            assert mark <= opposite and (mark or not opposite or repeated)
        assert two[b].sum() >= 4  # at least the pairs of eq[1], eq[2]
    assert not _two_sided(plain).any()
    padded = np.pad(plain, ((0, 0), (0, mixed.shape[1] - plain.shape[1]), (0, 0)))
    both = np.concatenate([mixed, padded])  # instances with and without two-sided rows
    same = np.stack([mixed[0]] * 2)  # one group: the same two-sided rows in every instance
    for normals in (mixed, plain, both, same):
        theta = rng.normal(size=(normals.shape[0], 6))
        got = _nnls_block(normals, theta)
        for nm, th, p in zip(normals, theta, got, strict=True):
            np.testing.assert_allclose(p, _cone_projection(nm, th), atol=1e-9)


def test_empty_batches_give_empty_losses_and_projections() -> None:
    """A batch of zero instances: ``reduction="none"`` gives shape ``(0,)``, ``"sum"`` 0
    (CaVE-E, PGD and the Frank-Wolfe optimizer / loss, like the pool losses)."""
    for method in ("exact", "pgd"):
        v = dc.cave_loss(np.zeros((0, 3)), np.zeros((0, 2, 3)), method=method, reduction="none")
        assert v.shape == (0,)
        total = dc.cave_loss(np.zeros((0, 3)), np.zeros((0, 2, 3)), method=method, reduction="sum")
        assert float(total) == 0.0
    mu, vjp = dc.value_and_vjp(dc.regularized_optimizer(S.argmax), np.zeros((0, 4)))
    assert mu.shape == (0, 4) and vjp(np.zeros((0, 4))).shape == (0, 4)
    loss = dc.regularized_fenchel_young_loss(S.argmax, reduction="sum")
    assert float(loss(np.zeros((0, 4)), np.zeros((0, 4)))) == 0.0


def test_binding_normals_inequalities_and_errors() -> None:
    y = np.array([[1.0, 0.0, 1.0]])
    A, b = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]), np.array([2.0, 3.0])
    nm = dc.binding_normals(y, A_ub=A, b_ub=b, upper=None)
    np.testing.assert_array_equal(nm[0, :2], [[1, 1, 1], [0, 0, 0]])  # row 0 binds, row 1 not
    np.testing.assert_array_equal(nm[0, 2:], [[0, 0, 0], [0, -1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="b_ub"):
        dc.binding_normals(y, A_ub=A)
    with pytest.raises(ValueError, match="normals"):
        dc.cave_loss(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="method"):
        dc.cave_loss(np.ones((1, 3)), np.ones((1, 2, 3)), method="cvxpy")


# ---------------------------------------------------------------------------------
# kNN-robust targets
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["numpy", "torch"])  # device arithmetic; JAX's eager compiles cost ~15 s here
def test_knn_targets_match_loop(name: str) -> None:
    try:
        backend = conformance.setup(name)
    except conformance.Skip as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(11)
    x, c = rng.normal(size=(9, 3)), rng.uniform(0.5, 1.5, size=(9, 12))
    c_bar, y_bar = dc.knn_targets(backend.asarray(x), backend.asarray(c), SP, k=3, weight=0.3)
    for i in range(9):
        d = np.sum((x - x[i]) ** 2, axis=1)
        d[i] = np.inf
        nb = np.argsort(d, kind="stable")[:3]
        blended = 0.3 * c[i] + 0.7 * c[nb]
        np.testing.assert_allclose(backend.to_numpy(c_bar)[i], blended.mean(0), rtol=1e-12)
        np.testing.assert_allclose(backend.to_numpy(y_bar)[i], _brute(-blended).mean(0))
    with pytest.raises(ValueError, match="k"):
        dc.knn_targets(x, c, SP, k=9)
