r"""Subset sampling: the exact Gumbel top-k sampler and its relaxation (Xie & Ermon
2019). The exact k-subset distribution (its marginals and sampler) is in
:mod:`dopt_core.relax._k_subsets`.

Every function acts on the last axis (leading axes are batch axes) and keeps θ's dtype
and device. The relaxation loops in Python over its ``k`` rounds; each round is a few
array operations over the whole batch, so everything runs on the array's own device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import (
    check_flag,
    check_in_dtype_range,
    check_positive,
    check_scores,
    check_subset_size,
)
from .._lib._compat import device
from .._lib._random import bind_noise
from ..noise import GUMBEL
from ..op import Bound, Op, ZeroGradient, op_function
from ._common import shifted_scaled

__all__ = ["gumbel_top_k", "relaxed_subset"]


# ---------------------------------------------------------------------------------
# Gumbel top-k (exact sampler)
# ---------------------------------------------------------------------------------
def _top_k_order(keys: Any, k: int, *, xp: Any) -> Any:
    """Indices of the ``k`` largest keys, largest first (stable: ties to the lowest index)."""
    order = xp.argsort(keys, axis=-1, descending=True, stable=True)
    return order[..., :k]


def _k_hot(keys: Any, k: int, *, xp: Any) -> Any:
    order = xp.argsort(keys, axis=-1, descending=True, stable=True)
    slots = xp.argsort(order, axis=-1, stable=True)
    return xp.astype(slots < k, keys.dtype)


@dataclass(frozen=True)
class GumbelTopKOp(ZeroGradient, Op):
    k: int
    return_order: bool = False
    name: ClassVar[str] = "gumbel_top_k"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, noise: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        keys = theta + noise
        if not self.return_order:
            return _k_hot(keys, self.k, xp=xp), ()
        idx = _top_k_order(keys, self.k, xp=xp)
        cols = xp.arange(theta.shape[-1], device=device(theta))
        return xp.astype(xp.expand_dims(idx, axis=-1) == cols, theta.dtype), ()

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return (None, None)



def _check_tau(tau: Any, theta: Any, xp: Any) -> float:
    tau = check_positive(tau, name="tau")
    return check_in_dtype_range(tau, name="tau", dtype=theta.dtype, xp=xp)


@op_function
def gumbel_top_k(
    theta: Any,
    /,
    k: int,
    *,
    rng: Any = None,
    noise: Any = None,
    return_order: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Exact sample of a size-``k`` subset without replacement, by the Gumbel top-k trick.

    With keys :math:`r = \theta + G`, :math:`G_i` i.i.d. standard Gumbel, the indices of
    the ``k`` largest keys, taken in decreasing order, are the first ``k`` draws of a
    Plackett-Luce permutation with weights :math:`w = \exp\theta` (sampling without
    replacement: item :math:`i` comes next with probability
    :math:`w_i / \sum_{j \text{ not drawn}} w_j`). Kool, van Hoof and Welling (ICML 2019)
    and Vieira (2014) give the proof. The output is piecewise constant in θ: its
    gradient is zero (use :func:`relaxed_subset` or :func:`k_subset_sample` with
    ``simple=True`` for a gradient).

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Log-weights; leading axes are batch axes.
    k : int, ``1 <= k <= n``
        Subset size.
    rng : generator, key or int, optional
        The backend's own generator or an int seed; not together with ``noise``.
    noise : array shaped like ``theta``, optional
        Pre-drawn standard Gumbel noise :math:`G`.
    return_order : bool
        Return the sampled order instead of the k-hot vector.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., n)`` (``(..., k, n)`` with ``return_order=True``)
        The k-hot indicator of the subset, in θ's dtype; with ``return_order=True`` the
        first ``k`` rows of the sampled permutation matrix (row ``j`` is the one-hot of
        the ``j``-th draw), whose column sums are the k-hot vector.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> theta = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    >>> g = np.array([2.0, 0.0, 0.5, -1.0])
    >>> dc.relax.gumbel_top_k(theta, 2, noise=g)
    array([1., 0., 1., 0.])
    >>> dc.relax.gumbel_top_k(theta, 2, noise=g, return_order=True)
    array([[1., 0., 0., 0.],
           [0., 0., 1., 0.]])

    References
    ----------
    Kool, van Hoof and Welling, "Stochastic beams and where to find them: the Gumbel-top-k
    trick for sampling sequences without replacement", ICML 2019, arXiv:1903.06059.
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    k = check_subset_size(k, theta)
    return_order = check_flag(return_order, name="return_order")
    noise = bind_noise(theta, rng, noise, law=GUMBEL, check_finite=check_finite)
    return Bound(GumbelTopKOp(k, return_order), (theta, noise), out_dtype)


# ---------------------------------------------------------------------------------
# Relaxed subset (Xie & Ermon 2019)
# ---------------------------------------------------------------------------------
def _round_stats(z: Any, *, xp: Any) -> tuple[Any, Any, Any]:
    """``e = exp z`` for shifted scaled logits ``z = α^j/τ + c`` (``max z = 0``) and the
    row sums ``R = Σ_{e_i < 1} e_i``, ``C = #{e_i = 1}`` (the maximisers, and any entry
    within rounding of them): ``S = R + C`` and ``a^j = e/S``."""
    e = xp.exp(z)
    top = xp.floor(e)  # 1 where e == 1, else 0 (0 <= e <= 1): cheaper than a cast mask
    return e, xp.sum(e - top, axis=-1, keepdims=True), xp.sum(top, axis=-1, keepdims=True)


def _leave_one_out(e: Any, rest: Any, count: Any, *, xp: Any) -> Any:
    """``S_{-i} + tiny`` with ``S_{-i} = S - e_i`` formed as ``(C - e_i) + R``: no
    cancellation, since off the maximisers it is ``>= C >= 1`` and at a unique maximiser
    it is ``R`` itself (accurate when ``1 - a_p = R/S`` is ~1e-30, where ``1 - e_p/S``
    rounds to 0). ``tiny`` (the dtype's smallest normal) plays the reference code's
    clamp ``max(1 - a, tiny)`` (the two differ only below ``tiny``) and keeps the
    logarithm finite and smooth."""
    tiny = float(xp.finfo(e.dtype).smallest_normal)
    return (count - e) + (rest + tiny)


def _next_round(z: Any, e: Any, rest: Any, count: Any, tau: float, *, xp: Any) -> Any:
    """``z^{j+1}``: ``α^{j+1} = α^j + log(1 - a^j)`` with ``1 - a_i = S_{-i}/S``. The
    softmax is shift-invariant, so ``log S`` is dropped and the result shifted back to
    maximum 0: ``z + log S_{-i} / τ - max(·)``."""
    w = z + xp.log(_leave_one_out(e, rest, count, xp=xp)) * (1.0 / tau)
    return w - xp.max(w, axis=-1, keepdims=True)


def _relaxed_rounds_sum(keys: Any, k: int, tau: float, *, xp: Any) -> Any:
    z = shifted_scaled(keys, tau, xp=xp, divide=True)
    out = None
    for j in range(k):
        e, rest, count = _round_stats(z, xp=xp)
        a = e * (1.0 / (rest + count))
        out = a if out is None else out + a
        if j < k - 1:
            z = _next_round(z, e, rest, count, tau, xp=xp)
    return out


def _round_vjp(parts: tuple[Any, Any, Any], g: Any, gbar: Any, tau: float, *, xp: Any) -> Any:
    r"""Adjoint of ``z^j`` from the round's ``parts = (e, R, C)`` (:func:`_round_stats`),
    the output cotangent ``g`` (of ``a^j``) and the adjoint ``ḡ`` of
    ``z^{j+1} = z^j + L/τ``, ``L_i = log(S_{-i} + tiny)`` (the shift back to maximum 0 is
    taken through by :func:`_through_shift`).

    With ``c = ḡ/τ`` and ``∂S_{-i}/∂z_m = e_m [m ≠ i]`` the log terms give
    ``Σ_{i≠m} c_i e_m / (S_{-i} + tiny)``. Off the maximisers ``h_i = c_i / S_{-i}`` is
    bounded (``S_{-i} >= 1``) and gives ``e_m (Σ_i h_i - h_m)``. The maximisers ``P``
    share ``S_P = R + C - 1``, which can be tiny, so their part is formed as
    ``(c_P e_m - c_m [m ∈ P]) / (S_P + tiny)`` with ``c_P = Σ_{i∈P} c_i``: ``e_m <= S_P``
    off ``P``, and the numerator is exactly 0 at a unique maximiser, so the huge
    ``c_P / S_P`` is never formed.
    """
    e, rest, count = parts
    tiny = float(xp.finfo(e.dtype).smallest_normal)
    top = xp.floor(e)
    inv_s = 1.0 / (rest + count)
    c = gbar * (1.0 / tau)
    c_top = c * top
    h = (c - c_top) / _leave_one_out(e, rest, count, xp=xp)  # 0 at the maximisers
    del c, top  # (temporaries are freed early: the peak memory of the pass)
    c_sum = xp.sum(c_top, axis=-1, keepdims=True)
    top_part = (c_sum * e - c_top) * (1.0 / (rest + (count - 1.0) + tiny))
    del c_top
    # ḡ + a (g - <g, a>) + e (Σ h - h) + (c_P e - c_m [m ∈ P]) / S_P, the first three
    # grouped as ḡ + e · (g/S - h + row)
    row = xp.sum(h, axis=-1, keepdims=True) - xp.sum(g * e, axis=-1, keepdims=True) * inv_s**2
    return (gbar + top_part) + e * ((g * inv_s - h) + row)


def _through_shift(gbar: Any, parts: tuple[Any, Any, Any], *, xp: Any) -> Any:
    """The adjoint of ``w`` from that of ``z^j = w - max(w)``: ``ḡ - 1_P Σḡ / |P|``, with
    ``P`` the maximisers (``e = 1``; the share of the max's gradient among ties). In exact
    arithmetic ``Σḡ = 0`` (what follows is shift-invariant) and this changes nothing,
    but :func:`_round_vjp` maps a constant ``ε 1`` in ``ḡ`` to about ``ε/τ · 1``: without
    it a rounding-level sum grows by ``1/τ`` every round (``1e14`` over 8 rounds at
    ``τ = 0.01``)."""
    e, _, count = parts
    top = xp.floor(e)
    return gbar - top * (xp.sum(gbar, axis=-1, keepdims=True) / count)


@dataclass(frozen=True)
class RelaxedSubsetOp(Op):
    k: int
    tau: float = 1.0
    hard: bool = False
    name: ClassVar[str] = "relaxed_subset"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, noise: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        keys = theta + noise
        if self.hard:
            y = _k_hot(keys, self.k, xp=xp)
        else:
            y = _relaxed_rounds_sum(keys, self.k, self.tau, xp=xp)
        # the only residual is the keys (O(B·n)): the rounds are recomputed backward
        return y, (keys,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (keys,) = residuals
        k, tau = self.k, self.tau
        # the logits z^j at every s-th round (s ~ sqrt(k)), then, segment by segment from
        # the last, the segment's rounds recomputed and back-propagated: O((k/s + s)·B·n)
        # transient memory, about two forward passes of extra work
        s = max(1, math.isqrt(k))
        starts = list(range(0, k, s))
        checkpoints = {}
        z = shifted_scaled(keys, tau, xp=xp, divide=True)
        for j in range(starts[-1] + 1):
            if j % s == 0:
                checkpoints[j] = z
            if j < starts[-1]:
                z = _next_round(z, *_round_stats(z, xp=xp), tau, xp=xp)
        del z
        gbar = None
        for start in reversed(starts):
            z, parts = checkpoints.pop(start), []
            for j in range(start, min(start + s, k)):
                parts.append(_round_stats(z, xp=xp))
                if j < min(start + s, k) - 1:
                    z = _next_round(z, *parts[-1], tau, xp=xp)
            del z
            while parts:
                if gbar is None:  # the last round: nothing downstream of z^{k+1}
                    gbar = xp.zeros_like(keys)
                part = parts.pop()
                gbar = _round_vjp(part, cotangent, gbar, tau, xp=xp)
                gbar = _through_shift(gbar, part, xp=xp)
        return (gbar / tau, None)


@op_function
def relaxed_subset(
    theta: Any,
    /,
    k: int,
    *,
    tau: float = 1.0,
    rng: Any = None,
    noise: Any = None,
    hard: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Reparameterisable relaxed k-subset sample (Xie & Ermon, IJCAI 2019).

    With keys :math:`r = \theta + G` (:math:`G_i` i.i.d. standard Gumbel), the relaxed
    top-k runs ``k`` softmax rounds that each remove (softly) the mass already taken:

    .. math::

        \alpha^1 = r, \qquad a^j = \operatorname{softmax}(\alpha^j/\tau), \qquad
        \alpha^{j+1} = \alpha^j + \log\max(1 - a^j, \text{tiny}), \qquad
        y = \sum_{j=1}^k a^j .

    ``y`` is non-negative and sums to ``k``; as ``tau → 0`` it tends to the k-hot
    :func:`gumbel_top_k` sample of the same keys, an exact sample of ``k`` items without
    replacement with weights :math:`\exp\theta`. At finite ``tau`` an entry can exceed 1
    (a key that dominates keeps some weight in every round); the overshoot shrinks as
    ``tau → 0``. ``hard=True`` returns the exact k-hot sample of the same keys and
    the relaxed gradient (straight-through).

    The VJP stores only the keys (O(B·n) residuals) and recomputes the rounds backward
    (checkpointing every :math:`\lfloor\sqrt k\rfloor` rounds); :math:`1 - a^j` is computed
    without cancellation, so float32 stays finite down to ``tau = 0.01``.

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Log-weights; leading axes are batch axes.
    k : int, ``1 <= k <= n``
        Subset size.
    tau : float > 0
        Temperature.
    rng : generator, key or int, optional
        The backend's own generator or an int seed; not together with ``noise``.
    noise : array shaped like ``theta``, optional
        Pre-drawn standard Gumbel noise (receives no gradient).
    hard : bool
        Straight-through: exact k-hot forward, relaxed gradient.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., n)``
        The relaxed k-hot vector (sums to ``k``), in θ's dtype.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> theta = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    >>> g = np.array([2.0, 0.0, 0.5, -1.0])
    >>> y = dc.relax.relaxed_subset(theta, 2, tau=0.1, noise=g)
    >>> np.round(y, 3), round(float(y.sum()), 6)
    (array([0.982, 0.   , 1.018, 0.   ]), 2.0)
    >>> dc.relax.relaxed_subset(theta, 2, tau=0.1, noise=g, hard=True)
    array([1., 0., 1., 0.])

    References
    ----------
    Xie and Ermon, "Reparameterizable subset sampling via continuous relaxations",
    IJCAI 2019, arXiv:1901.10517.
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    k = check_subset_size(k, theta)
    tau = _check_tau(tau, theta, xp)
    hard = check_flag(hard, name="hard")
    noise = bind_noise(theta, rng, noise, law=GUMBEL, check_finite=check_finite)
    return Bound(RelaxedSubsetOp(k, tau, hard), (theta, noise), out_dtype)
