"""Estimators of ∇θ E[f(X)]: unbiased against the exact gradient by enumeration, and the
variance reductions of the leave-one-out baseline and RELAX, measured.

Exact gradient: ``Σ_T f(X(T)) p(T) ∇ log p(T)`` over every trace of the instance.
Each estimator is averaged over many independent draws; the mean must lie within
5 Monte-Carlo standard errors (per coordinate) of the exact gradient.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import dopt_core as dc

S = dc.structured
E = S.estimators
N_ITEMS, K_SUB = 4, 2
THETA = np.array([0.3, -0.5, 0.8, 0.0])
TARGET = np.array([1.0, 1.0, 0.0, 0.0])
WEIGHTS = np.array([1.0, 2.0, 0.5, 1.5])
G4 = [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)]


def _f(y: Any) -> Any:
    return ((y - TARGET) ** 2 * WEIGHTS).sum(-1)


def _exact_gradient_top_k() -> np.ndarray:
    perms = np.array(list(itertools.permutations(range(N_ITEMS))), dtype=float) + 1.0
    y, trace = S.top_k.run(perms, K_SUB)
    keys = {tuple(c): i for i, c in enumerate(trace.choices)}
    sub = trace[np.array(list(keys.values()))]
    ys = y[np.array(list(keys.values()))]
    p = np.exp(S.log_prob(sub, THETA))
    assert abs(p.sum() - 1) < 1e-12
    return np.sum((_f(ys) * p)[:, None] * S.score(sub, THETA), axis=0)


def _within(draws: np.ndarray, exact: np.ndarray, z: float = 5.0) -> None:
    mean = draws.mean(axis=0)
    se = draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    assert np.all(np.abs(mean - exact) <= z * se), (mean, exact, se)


def test_reinforce_of_the_trace_and_of_the_exponentials_are_unbiased() -> None:
    exact = _exact_gradient_top_k()
    y, trace = S.top_k.sample(THETA, K_SUB, rng=0, num_samples=40000)
    loss = _f(y)
    per_t = loss[:, None] * S.score(trace, THETA)
    per_e = loss[:, None] * S.score_exponentials(trace.exponentials, THETA)
    _within(per_t, exact)
    _within(per_e, exact)
    # the estimator functions compute these averages
    np.testing.assert_allclose(E.reinforce(loss, S.score(trace, THETA)), per_t.mean(0), rtol=1e-12)
    # E-REINFORCE ignores the structure and is the noisier of the two
    assert per_e.var(0).sum() > per_t.var(0).sum()


def test_leave_one_out_baseline_is_unbiased_and_lowers_the_variance() -> None:
    exact = _exact_gradient_top_k()
    groups, k = 10000, 4
    y, trace = S.top_k.sample(THETA, K_SUB, rng=1, num_samples=groups * k)
    loss = np.reshape(_f(y), (groups, k))
    sc = np.reshape(S.score(trace, THETA), (groups, k, N_ITEMS))
    plain = np.stack([E.reinforce(loss[i], sc[i]) for i in range(groups)])
    loo = np.stack([E.reinforce(loss[i], sc[i], baseline="loo") for i in range(groups)])
    _within(plain, exact)
    _within(loo, exact)
    v_plain, v_loo = plain.var(0).sum(), loo.var(0).sum()
    assert v_loo < 0.5 * v_plain, (v_loo, v_plain)


def test_estimators_are_unbiased_on_spanning_trees() -> None:
    m = len(G4)
    theta = np.array([0.5, -0.2, 0.1, 0.9, -0.6])
    target = np.array([1.0, 1.0, 1.0, 0.0, 0.0])
    perms = np.array(list(itertools.permutations(range(m))), dtype=float) + 1.0
    y, trace = S.spanning_tree.run(perms, G4, 4)
    keys = {tuple(c): i for i, c in enumerate(trace.choices)}
    idx = np.array(list(keys.values()))
    p = np.exp(S.log_prob(trace[idx], theta))
    f = ((y[idx] - target) ** 2).sum(-1)
    exact = np.sum((f * p)[:, None] * S.score(trace[idx], theta), axis=0)
    groups, k = 8000, 3
    ys, tr = S.spanning_tree.sample(theta, G4, 4, rng=2, num_samples=groups * k)
    loss = np.reshape(((ys - target) ** 2).sum(-1), (groups, k))
    sc = np.reshape(S.score(tr, theta), (groups, k, m))
    loo = np.stack([E.reinforce(loss[i], sc[i], baseline="loo") for i in range(groups)])
    _within(loo, exact)


def test_relax_is_unbiased_and_a_good_critic_lowers_the_variance() -> None:
    torch = pytest.importorskip("torch")
    exact = _exact_gradient_top_k()
    n = 20000
    theta = torch.tensor(THETA).expand(n, N_ITEMS).clone().requires_grad_(True)
    target, weights = torch.tensor(TARGET), torch.tensor(WEIGHTS)
    gen = np.random.default_rng(3)
    eps = torch.tensor(gen.exponential(size=(n, N_ITEMS)))
    cond = torch.tensor(gen.exponential(size=(n, K_SUB + N_ITEMS)))

    def critic(e: Any) -> Any:  # the loss of a relaxed top-2 (a smooth surrogate of f)
        soft = K_SUB * torch.softmax(-torch.log(e) / 0.4, dim=-1)
        return ((soft - target) ** 2 * weights).sum(-1)

    y, trace = S.top_k.sample(theta, K_SUB, noise=eps)
    e = trace.exponentials  # ε·exp(−θ), reparametrised
    e_cond = S.conditional_sample(trace, theta, noise=cond)
    grad_c = torch.autograd.grad(critic(e).sum(), theta)[0]
    c_cond = critic(e_cond)
    grad_cc = torch.autograd.grad(c_cond.sum(), theta)[0]
    loss = ((y.detach() - target) ** 2 * weights).sum(-1)
    score = S.score(trace, theta.detach())
    per = E.relax(loss[:, None], score[:, None], c_cond.detach()[:, None], grad_c[:, None], grad_cc[:, None])
    assert per.shape == (1, N_ITEMS)
    # per-draw estimates: K = 1 each
    draws = ((loss - c_cond.detach())[:, None] * score + grad_c - grad_cc).numpy()
    np.testing.assert_allclose(per[0].numpy(), draws.mean(0), rtol=1e-10, atol=1e-12)
    _within(draws, exact)
    plain = (loss[:, None] * score).numpy()
    # measured: about 0.77 of plain REINFORCE with this fixed (untrained) critic
    assert draws.var(0).sum() < 0.9 * plain.var(0).sum(), (draws.var(0).sum(), plain.var(0).sum())


def test_relax_stays_differentiable_in_the_critic() -> None:
    torch = pytest.importorskip("torch")
    a = torch.tensor(0.5, requires_grad=True)
    theta = torch.zeros(8, 3, requires_grad=True)
    y, trace = S.top_k.sample(theta, 1, rng=np.random.default_rng(4))
    e_cond = S.conditional_sample(trace, theta, rng=np.random.default_rng(5))
    gc = torch.autograd.grad((a * trace.exponentials).sum(), theta, create_graph=True)[0]
    cc = (a * e_cond).sum(-1)
    gcc = torch.autograd.grad(cc.sum(), theta, create_graph=True)[0]
    g = E.relax(y.sum(-1).detach(), S.score(trace, theta.detach()), cc, gc, gcc)
    (g**2).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad)


def test_relax_rejects_a_critic_value_of_another_shape() -> None:
    """critic_conditional must have loss's shape: a transposed (B, K) or flat (K·B,)
    array was reshaped silently into (K, B), pairing critic values with the wrong
    samples. With matching shapes the estimate is Σ_k (f_k − c_k) s_k / K (checked)."""
    k, b, m = 3, 2, 4
    gen = np.random.default_rng(0)
    loss, c = gen.normal(size=(k, b)), gen.normal(size=(k, b))
    score, zeros = gen.normal(size=(k, b, m)), np.zeros((k, b, m))
    np.testing.assert_allclose(
        E.relax(loss, score, c, zeros, zeros), ((loss - c)[..., None] * score).mean(0), rtol=1e-13
    )
    for bad in (c.T, c.reshape(-1)):
        with pytest.raises(ValueError, match="critic_conditional"):
            E.relax(loss, score, bad, zeros, zeros)
