"""The one relaxed comparator (dopt_core.relax._comparator), shared by the sorting
networks and soft_compare / soft_min / soft_max: on asymmetric CDFs its α is the
expectation it claims, checked against a direct numeric integration over the noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from dopt_core.relax import network_sort, soft_compare, soft_max, soft_min, sorting_network

# registry name -> the law of ε as a scipy.stats distribution (independent of dopt's formulas)
LAWS = {
    "exponential": stats.expon(),  # F(v) = 1 - e^{-v}, v >= 0 (shift 0)
    "gumbel_max": stats.gumbel_r(),  # F(v) = exp(-e^{-v})
    "gumbel_min": stats.gumbel_l(),  # F(v) = 1 - exp(-e^{v})
    "gamma": stats.gamma(2.0),  # P(2, v) (shape 2, shift 0)
}


class _Reflected:
    """The law of -X for X ~ ``law`` (GenDR's ``_rev`` families)."""

    def __init__(self, law):
        self.law = law

    def pdf(self, e):
        return self.law.pdf(-e)

    def support(self):
        lo, hi = self.law.support()
        return -hi, -lo


LAWS["exponential_rev"] = _Reflected(stats.expon())  # F(v) = e^{v}, v <= 0
LAWS["gamma_rev"] = _Reflected(stats.gamma(2.0))


def _expect(law, a: float, b: float, beta: float, branch) -> float:
    """E over ε of ``branch(a + ε/β < b)`` by quadrature (split at the decision point)."""
    lo, hi = law.support()
    cut = beta * (b - a)  # a + ε/β < b  <=>  ε < β (b - a)
    total = 0.0
    for s, t in ((lo, min(cut, hi)), (max(cut, lo), hi)):
        if s < t:
            val = branch(t <= cut)  # the left piece has a + ε/β < b
            with np.errstate(all="ignore"):  # the densities' far tails underflow/overflow
                total += integrate.quad(lambda e: law.pdf(e) * val, s, t, limit=200)[0]
    return total


@pytest.mark.parametrize("dist", sorted(LAWS))
def test_comparator_is_the_expectation_under_the_perturbation(dist: str) -> None:
    law = LAWS[dist]
    pairs = [(0.3, 1.1), (1.1, 0.3), (-0.4, -0.2), (2.0, -1.0), (0.5, 0.5)]
    beta = 1.7
    for a, b in pairs:
        # α = Pr[a + ε/β < b]; min/max are the expectations of the two branches
        alpha = _expect(law, a, b, beta, lambda a_is_min: 1.0 if a_is_min else 0.0)
        e_min = _expect(law, a, b, beta, lambda a_is_min, a=a, b=b: a if a_is_min else b)
        e_max = _expect(law, a, b, beta, lambda a_is_min, a=a, b=b: b if a_is_min else a)
        x, y = np.array(a), np.array(b)
        kw = dict(beta=beta, distribution=dist)
        np.testing.assert_allclose(float(soft_min(x, y, **kw)), e_min, atol=1e-9)
        np.testing.assert_allclose(float(soft_max(x, y, **kw)), e_max, atol=1e-9)
        # soft_compare(b, a) = Pr[a + ε/β < b] = α: the same α as the pair extrema
        np.testing.assert_allclose(float(soft_compare(y, x, **kw)), alpha, atol=1e-9)
        # the sorting network on two wires is the same comparator (wire 0 = a)
        v = np.array([a, b])
        net = dict(steepness=beta, sigmoid=dist)
        np.testing.assert_allclose(network_sort(v, **net), [e_min, e_max], atol=1e-9)
        np.testing.assert_allclose(sorting_network(v, **net)[0], [e_min, e_max], atol=1e-9)


def test_pair_extrema_vjp_equals_the_network_vjp() -> None:
    """soft_min / soft_max of a pair and the two-wire network share one VJP formula."""
    import dopt_core as dc

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=5), rng.normal(size=5)
    g = rng.normal(size=(5, 2))
    for dist in ("gumbel_max", "exponential_rev", "gamma"):
        v = np.stack([a, b], -1)
        _, vjp_net = dc.value_and_vjp(network_sort, v, steepness=1.3, sigmoid=dist)
        gn = vjp_net(g)
        grads = []
        for f, gf in ((soft_min, g[:, 0]), (soft_max, g[:, 1])):
            bound = f.bind(a, b, beta=1.3, distribution=dist)
            _, res = bound.op.forward(*bound.inputs, xp=np)
            grads.append(bound.op.vjp(res, gf, xp=np))
        (ga_min, gb_min), (ga_max, gb_max) = grads
        np.testing.assert_allclose(gn[:, 0], ga_min + ga_max, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gn[:, 1], gb_min + gb_max, rtol=1e-12, atol=1e-14)
