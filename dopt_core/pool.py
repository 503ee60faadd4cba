r"""Solution-pool losses: contrastive (Mulamba et al., 2021) and learning to rank (Mandi et al., 2022).

These losses never differentiate a solver. They compare the predicted scores
:math:`\hat\theta` on a cache :math:`\Gamma = \{w_1, \dots, w_P\}` of feasible
solutions, a :class:`SolutionPool`, initialised from the training targets and grown
by solving a fraction ``solve_ratio`` of the instances each step
(:meth:`SolutionPool.update`). With :math:`s_p = \langle\hat\theta, w_p\rangle`
(predicted scores), :math:`t_p = \langle\theta, w_p\rangle` (true scores) and the
target solution :math:`y`, in score form (maximisation; :math:`\theta = -c`):

* **NCE** (noise-contrastive): :math:`\frac1P\sum_p (s_p - \langle\hat\theta, y\rangle)`,
  gradient :math:`\bar w - y` (:math:`\bar w` the pool mean);
* **CMAP** (contrastive MAP): :math:`\max_p s_p - \langle\hat\theta, y\rangle`,
  gradient :math:`w_{\hat p} - y` with :math:`\hat p = \operatorname{argmax}_p s_p`;
* **pointwise LTR**: :math:`\frac1P\sum_p (s_p - t_p)^2`, gradient
  :math:`\frac2P\sum_p (s_p - t_p) w_p`;
* **pairwise LTR**: with :math:`b = \operatorname{argmax}_p t_p` the best pool member
  under the truth and :math:`Q = \{p : t_p < t_b\}` the strictly worse ones,
  :math:`\frac1{|Q|}\sum_{p\in Q}\max(0, s_p - s_b)`, gradient
  :math:`\frac1{|Q|}\sum_{p\in Q} [s_p > s_b](w_p - w_b)`;
* **listwise LTR**: the cross-entropy of the pool's softmax distributions,
  :math:`-\sum_p \operatorname{softmax}(t/\tau)_p \log\operatorname{softmax}(s/\tau)_p`,
  gradient :math:`\frac1\tau\sum_p(\operatorname{softmax}(s/\tau)_p - \operatorname{softmax}(t/\tau)_p) w_p`.

In cost form (:math:`\hat c = -\hat\theta`) NCE is PyEPO's ``NCE``
:math:`\frac1P\sum_p(\hat c^\top y - \hat c^\top w_p)`, CMAP its ``contrastiveMAP``,
and the LTR losses its ``pointwiseLearningToRank``, ``pairwiseLearningToRank``
(``ptLTR``, ``prLTR``; PyEPO 2.2 divides the pairwise sum by ``P - 1``, here by the
number of strictly worse members: the same when the pool's true objectives are
distinct) and ``listwiseLearningToRank`` (``lsLTR``, τ = 1; PyEPO clamps the target
probabilities at 1e-8, here they are not clamped). NCE and CMAP are zero or negative only
when :math:`y` scores at least as well as the pool under :math:`\hat\theta`; CMAP is
non-negative once :math:`y` is in the pool.

References
----------
M. Mulamba, J. Mandi, M. Diligenti, M. Lombardi, V. Bucarey, T. Guns. *Contrastive
losses and solution caching for predict-and-optimize.* IJCAI 2021.
https://arxiv.org/abs/2011.05354

J. Mandi, V. Bucarey, M. Mulamba, T. Guns. *Decision-focused learning: through the
lens of learning to rank.* ICML 2022. https://arxiv.org/abs/2112.03609
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ._lib._checks import (
    check_callable_solver,
    check_choice,
    check_int,
    check_nonempty_mean,
    check_positive,
    check_real,
    check_same_device,
    check_scores,
)
from ._lib._compat import device as _device
from ._lib._reduce import REDUCTIONS, reduce_batch, reduced_vjp
from .op import Bound, Op, op_function

__all__ = ["SolutionPool", "cmap_loss", "ltr_loss", "nce_loss"]

LTR_KINDS = ("pointwise", "pairwise", "listwise")


# ---------------------------------------------------------------------------------
# the pool
# ---------------------------------------------------------------------------------
class SolutionPool:
    """A cache of distinct feasible solutions, kept on the arrays' device.

    ``SolutionPool(solutions, max_size=None)`` starts from ``solutions`` of shape
    ``(N, *event)`` (typically the training targets), removing duplicates.
    :meth:`add` appends new solutions that are not in the pool yet; past
    ``max_size`` members the oldest are dropped (the memory bound).
    :meth:`update` solves a random ``solve_ratio`` fraction of a batch of predicted
    scores and adds the solutions (Mulamba et al., 2021). ``pool.solutions`` is the
    array the pool losses take (they also take the pool itself).

    Two solutions are the same when their squared distance is at most ``atol``
    (a matrix product on the device, no host transfer; each new solution's nearest
    candidate is then compared directly, so rounding of the expanded distance in
    float32 or at large magnitudes does not hide a duplicate).

    Parameters
    ----------
    solutions : array, shape ``(N, *event)``
        Initial members (N ≥ 1), any backend.
    max_size : int, optional
        Largest number of members kept.
    atol : float
        Squared-distance tolerance of the duplicate test.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> pool = dc.SolutionPool(np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]]), max_size=3)
    >>> len(pool)                                   # the duplicate is dropped
    2
    >>> pool.add(np.array([[0.0, 0, 1], [0, 1, 0]])); len(pool)   # one is new
    3
    >>> pool.add(np.array([[1.0, 1, 0]])); pool.solutions          # the oldest leaves
    array([[0., 1., 0.],
           [0., 0., 1.],
           [1., 1., 0.]])
    """

    def __init__(self, solutions: Any, *, max_size: int | None = None, atol: float = 1e-6) -> None:
        sols, xp, _ = check_scores(solutions, name="solutions", min_ndim=1)
        if sols.ndim < 1 or sols.shape[0] < 1:
            raise ValueError(f"solutions must hold at least one solution (shape (N, *event)), got {tuple(sols.shape)}")
        self.max_size = None if max_size is None else check_int(max_size, name="max_size", low=1)
        self.atol = check_positive(atol, name="atol")
        self.event_shape = tuple(sols.shape[1:])
        self._solutions = sols[:0, ...]
        self._cast: tuple[Any, Any] | None = None  # (dtype, the members in that dtype)
        self.add(sols)

    @property
    def solutions(self) -> Any:
        """The members, shape ``(P, *event)``, oldest first."""
        return self._solutions

    def _as_dtype(self, dtype: Any, xp: Any) -> Any:
        """The members in ``dtype`` (converted once per change of the pool, not per loss call)."""
        sols = self._solutions
        if sols.dtype == dtype:
            return sols
        if self._cast is None or self._cast[0] != dtype:
            self._cast = (dtype, xp.astype(sols, dtype))
        return self._cast[1]

    def __len__(self) -> int:
        return int(self._solutions.shape[0])

    def __repr__(self) -> str:
        return f"SolutionPool({len(self)} solutions of shape {self.event_shape}, max_size={self.max_size})"

    def _flat(self, a: Any, xp: Any) -> Any:
        return xp.reshape(a, (a.shape[0], math.prod(self.event_shape)))

    def add(self, solutions: Any) -> None:
        """Append the members of ``solutions`` (shape ``(n, *event)``) not yet in the pool."""
        new, xp, _ = check_scores(solutions, name="solutions", min_ndim=1)
        if tuple(new.shape[1:]) != self.event_shape:
            raise ValueError(
                f"solutions must have shape (n, *{self.event_shape}), got {tuple(new.shape)}"
            )
        if self._solutions.shape[0]:
            check_same_device({"pool": self._solutions, "solutions": new})
        new = xp.astype(new, self._solutions.dtype)
        n = int(new.shape[0])
        if n == 0:
            return
        f_new, f_old = self._flat(new, xp), self._flat(self._solutions, xp)
        sq_new = xp.sum(f_new * f_new, axis=1)
        # duplicates within the batch: keep the first of each group
        d_in = sq_new[:, None] + sq_new[None, :] - 2.0 * (f_new @ xp.permute_dims(f_new, (1, 0)))
        idx = xp.arange(n, device=_device(new))
        earlier = idx[:, None] > idx[None, :]
        # the expanded form |x|² + |y|² - 2<x, y> carries rounding of order eps·|x|²,
        # which exceeds atol for non-integer float32 or large-valued solutions: each
        # row's nearest candidate's squared distance is also computed directly ((n, D) work)
        d_in = xp.where(earlier, d_in, xp.inf)
        dup = xp.any(d_in <= self.atol, axis=1)
        diff = f_new - xp.take(f_new, xp.argmin(d_in, axis=1), axis=0)
        dup = dup | (xp.any(earlier, axis=1) & (xp.sum(diff * diff, axis=1) <= self.atol))
        if f_old.shape[0]:
            sq_old = xp.sum(f_old * f_old, axis=1)
            d_out = sq_new[:, None] + sq_old[None, :] - 2.0 * (f_new @ xp.permute_dims(f_old, (1, 0)))
            diff = f_new - xp.take(f_old, xp.argmin(d_out, axis=1), axis=0)
            near = xp.sum(diff * diff, axis=1) <= self.atol
            dup = dup | xp.any(d_out <= self.atol, axis=1) | near
        kept = new[~dup]
        pool = xp.concat([self._solutions, kept], axis=0)
        if self.max_size is not None and pool.shape[0] > self.max_size:
            pool = pool[pool.shape[0] - self.max_size :, ...]
        self._solutions = pool
        self._cast = None

    def update(
        self, theta: Any, solver: Callable[..., Any], *, solve_ratio: float = 1.0, rng: Any = None
    ) -> Any:
        """Solve a random ``solve_ratio`` fraction of the instances of ``theta`` and add the solutions.

        ``theta`` has shape ``(*batch, *event)``; ``round(solve_ratio × instances)``
        of them (at least one when ``solve_ratio > 0``) are chosen with ``rng`` (an
        int seed or a NumPy ``Generator``; indices only) and solved in one call.
        Returns the new solutions (shape ``(k, *event)``).
        """
        theta, xp, _ = check_scores(theta, name="theta", min_ndim=len(self.event_shape))
        if tuple(theta.shape[theta.ndim - len(self.event_shape) :]) != self.event_shape:
            raise ValueError(
                f"theta must have shape (*batch, *{self.event_shape}), got {tuple(theta.shape)}"
            )
        check_callable_solver(solver)
        ratio = check_real(solve_ratio, name="solve_ratio")
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"solve_ratio must be in [0, 1], got {solve_ratio!r}")
        flat = xp.reshape(theta, (-1, *self.event_shape))
        count = int(flat.shape[0])
        k = 0 if ratio == 0.0 or count == 0 else max(1, round(ratio * count))
        if k < count:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            pick = np.sort(gen.choice(count, size=k, replace=False))
            flat = xp.take(flat, xp.asarray(pick, device=_device(flat)), axis=0)
        if k == 0:
            return flat[:0, ...]
        ys = xp.astype(solver(flat), flat.dtype)
        self.add(ys)
        return ys


def _pool_array(pool: Any, theta: Any, event_ndim: int, xp: Any) -> Any:
    """The pool's members in ``theta``'s dtype, validated (a :class:`SolutionPool`'s
    members were checked when they were added: only shapes and devices are)."""
    if isinstance(pool, SolutionPool):
        sols = pool.solutions
    else:
        sols, _, _ = check_scores(pool, name="pool", min_ndim=event_ndim + 1)
    ev = tuple(theta.shape[theta.ndim - event_ndim :])
    if sols.ndim != event_ndim + 1 or tuple(sols.shape[1:]) != ev:
        raise ValueError(f"pool must have shape (P, *{ev}) matching theta_hat's events, got {tuple(sols.shape)}")
    if sols.shape[0] < 1:
        raise ValueError("pool must hold at least one solution")
    check_same_device({"theta_hat": theta, "pool": sols})
    if isinstance(pool, SolutionPool):
        return pool._as_dtype(theta.dtype, xp)
    return sols if sols.dtype == theta.dtype else xp.astype(sols, theta.dtype)


# ---------------------------------------------------------------------------------
# the losses (one Op, the kind a static field)
# ---------------------------------------------------------------------------------
def _scores(theta: Any, pool: Any, event_ndim: int, *, xp: Any) -> tuple[Any, Any, tuple[int, ...]]:
    """``(⟨θ, w_p⟩ of shape (*batch, P), the flat pool (P, D), batch shape)``."""
    batch = tuple(theta.shape[: theta.ndim - event_ndim])
    d = math.prod(theta.shape[theta.ndim - event_ndim :])
    flat_pool = xp.reshape(pool, (pool.shape[0], d))
    s = xp.reshape(theta, (-1, d)) @ xp.permute_dims(flat_pool, (1, 0))
    return xp.reshape(s, (*batch, pool.shape[0])), flat_pool, batch


def _to_event(v: Any, flat_pool: Any, theta: Any, *, xp: Any) -> Any:
    """``v @ pool`` for ``v`` of shape (*batch, P), reshaped to θ's shape."""
    batch_p = v.shape
    out = xp.reshape(v, (-1, batch_p[-1])) @ flat_pool
    return xp.reshape(out, tuple(theta.shape))


@dataclass(frozen=True)
class PoolLossOp(Op):
    """``(θ̂, target, pool) -> loss`` for one kind (module docstring); target is the
    solution ``y`` (NCE, CMAP) or the true scores θ (LTR)."""

    kind: str
    reduction: str = "mean"
    event_ndim: int = 1
    tau: float = 1.0
    name: ClassVar[str] = "pool_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1, 2)

    def forward(self, theta: Any, target: Any, pool: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        nd = self.event_ndim
        ev = tuple(range(theta.ndim - nd, theta.ndim))
        s, flat_pool, _ = _scores(theta, pool, nd, xp=xp)
        num = pool.shape[0]
        kind = self.kind
        if kind in ("nce", "cmap"):
            sy = xp.sum(theta * target, axis=ev)
            if kind == "nce":
                per = xp.mean(s, axis=-1) - sy
                wbar = xp.reshape(xp.mean(pool, axis=0), tuple(pool.shape[1:]))
                grad = wbar - target
            else:
                best = xp.argmax(s, axis=-1)
                per = xp.max(s, axis=-1) - sy
                onehot = xp.astype(xp.arange(num, device=_device(s)) == best[..., None], theta.dtype)
                grad = _to_event(onehot, flat_pool, theta, xp=xp) - target
            return reduce_batch(per, grad, self.reduction, xp=xp)
        t, _, _ = _scores(target, pool, nd, xp=xp)
        if kind == "pointwise":
            r = s - t
            per = xp.mean(r * r, axis=-1)
            grad = _to_event(2.0 * r / num, flat_pool, theta, xp=xp)
        elif kind == "pairwise":
            b = xp.argmax(t, axis=-1)
            onehot_b = xp.astype(xp.arange(num, device=_device(s)) == b[..., None], theta.dtype)
            s_b = xp.sum(s * onehot_b, axis=-1, keepdims=True)
            t_b = xp.max(t, axis=-1, keepdims=True)
            worse = xp.astype(t < t_b, theta.dtype)
            count = xp.sum(worse, axis=-1, keepdims=True)
            weight = worse / xp.where(count > 0, count, 1.0)
            above = s > s_b
            hinge = xp.where(above, s - s_b, xp.zeros_like(s))
            per = xp.sum(weight * hinge, axis=-1)
            active = weight * xp.astype(above, theta.dtype)  # d/ds_p, and -Σ of it on s_b
            coef = active - onehot_b * xp.sum(active, axis=-1, keepdims=True)
            grad = _to_event(coef, flat_pool, theta, xp=xp)
        else:  # listwise
            tau = self.tau
            log_p_hat = _log_softmax(s / tau, xp=xp)
            p_true = _softmax(t / tau, xp=xp)
            per = -xp.sum(p_true * log_p_hat, axis=-1)
            grad = _to_event((xp.exp(log_p_hat) - p_true) / tau, flat_pool, theta, xp=xp)
        return reduce_batch(per, grad, self.reduction, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return reduced_vjp(residuals[0], g, self.reduction, self.event_ndim, xp=xp), None, None


def _log_softmax(x: Any, *, xp: Any) -> Any:
    m = xp.max(x, axis=-1, keepdims=True)
    return x - m - xp.log(xp.sum(xp.exp(x - m), axis=-1, keepdims=True))


def _softmax(x: Any, *, xp: Any) -> Any:
    return xp.exp(_log_softmax(x, xp=xp))


def _bind_pool_loss(
    kind: str, theta_hat: Any, target: Any, pool: Any, target_name: str, reduction: str, event_ndim: int,
    tau: float = 1.0,
) -> Bound:
    reduction = check_choice(reduction, name="reduction", choices=REDUCTIONS)
    nd = check_int(event_ndim, name="event_ndim", low=1)
    theta_hat, xp, out_dtype = check_scores(theta_hat, name="theta_hat", min_ndim=nd)
    check_nonempty_mean(tuple(theta_hat.shape[: theta_hat.ndim - nd]), reduction, name="theta_hat")
    tgt, _, _ = check_scores(target, name=target_name, min_ndim=nd)
    if tuple(tgt.shape) != tuple(theta_hat.shape):
        raise ValueError(f"{target_name} must have theta_hat's shape {tuple(theta_hat.shape)}, got {tuple(tgt.shape)}")
    check_same_device({"theta_hat": theta_hat, target_name: tgt})
    sols = _pool_array(pool, theta_hat, nd, xp)
    if tgt.dtype != theta_hat.dtype:
        tgt = xp.astype(tgt, theta_hat.dtype)
    return Bound(PoolLossOp(kind, reduction, nd, tau), (theta_hat, tgt, sols), out_dtype)


@op_function
def nce_loss(theta_hat: Any, y_true: Any, pool: Any, *, reduction: str = "mean", event_ndim: int = 1) -> Bound:
    r"""Noise-contrastive loss over a solution pool (Mulamba et al., 2021), in score form.

    :math:`\frac1P\sum_{p} \langle\hat\theta, w_p - y\rangle` per instance, gradient
    :math:`\bar w - y` (module :mod:`dopt_core.pool`). Mulamba, Mandi, Diligenti,
    Lombardi, Bucarey & Guns, *Contrastive losses and solution caching for
    predict-and-optimize*, IJCAI 2021.

    Parameters
    ----------
    theta_hat : array, shape ``(*batch, *event)``
        Predicted scores (``-ĉ`` for costs).
    y_true : array, same shape
        The target solutions.
    pool : SolutionPool or array of shape ``(P, *event)``
        The cached solutions :math:`w_p`.
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    event_ndim : int
        Trailing axes per instance.

    Returns
    -------
    array
        The loss (a scalar, or ``(*batch)`` for ``reduction="none"``).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> pool = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> value, vjp = dc.value_and_vjp(dc.nce_loss, np.array([[2.0, 1.0]]), np.array([[1.0, 0.0]]), pool)
    >>> float(value), vjp(np.array(1.0))      # mean(2, 1) - 2; gradient mean(pool) - y
    (-0.5, array([[-0.5,  0.5]]))
    """
    return _bind_pool_loss("nce", theta_hat, y_true, pool, "y_true", reduction, event_ndim)


@op_function
def cmap_loss(theta_hat: Any, y_true: Any, pool: Any, *, reduction: str = "mean", event_ndim: int = 1) -> Bound:
    r"""Contrastive MAP loss over a solution pool (Mulamba et al., 2021), in score form.

    :math:`\max_p \langle\hat\theta, w_p\rangle - \langle\hat\theta, y\rangle` per
    instance, gradient :math:`w_{\hat p} - y` (module :mod:`dopt_core.pool`; ties to
    the lowest pool index). Mulamba, Mandi, Diligenti, Lombardi, Bucarey & Guns,
    *Contrastive losses and solution caching for predict-and-optimize*, IJCAI 2021.

    Parameters
    ----------
    theta_hat : array, shape ``(*batch, *event)``
        Predicted scores (``-ĉ`` for costs).
    y_true : array, same shape
        The target solutions.
    pool : SolutionPool or array of shape ``(P, *event)``
        The cached solutions :math:`w_p`.
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    event_ndim : int
        Trailing axes per instance.

    Returns
    -------
    array
        The loss (a scalar, or ``(*batch)`` for ``reduction="none"``).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> pool = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> value, vjp = dc.value_and_vjp(dc.cmap_loss, np.array([[1.0, 3.0]]), np.array([[1.0, 0.0]]), pool)
    >>> float(value), vjp(np.array(1.0))      # the pool's best (item 1) beats y by 2
    (2.0, array([[-1.,  1.]]))
    """
    return _bind_pool_loss("cmap", theta_hat, y_true, pool, "y_true", reduction, event_ndim)


@op_function
def ltr_loss(
    theta_hat: Any,
    theta_true: Any,
    pool: Any,
    *,
    kind: str = "listwise",
    tau: float = 1.0,
    reduction: str = "mean",
    event_ndim: int = 1,
) -> Bound:
    r"""Learning-to-rank losses over a solution pool (Mandi et al., 2022), in score form.

    ``kind="pointwise"``: :math:`\frac1P\sum_p(s_p - t_p)^2`; ``"pairwise"``: the mean
    hinge :math:`\max(0, s_p - s_b)` over the pool members worse than the truth's best
    :math:`b`; ``"listwise"``: the cross-entropy of :math:`\operatorname{softmax}(t/\tau)`
    and :math:`\operatorname{softmax}(s/\tau)`, with :math:`s_p = \langle\hat\theta,
    w_p\rangle`, :math:`t_p = \langle\theta, w_p\rangle` (module :mod:`dopt_core.pool`
    for the gradients). Mandi, Bucarey, Mulamba & Guns, *Decision-focused learning:
    through the lens of learning to rank*, ICML 2022.

    Parameters
    ----------
    theta_hat : array, shape ``(*batch, *event)``
        Predicted scores (``-ĉ`` for costs).
    theta_true : array, same shape
        True scores (``-c``).
    pool : SolutionPool or array of shape ``(P, *event)``
        The cached solutions :math:`w_p`.
    kind : {"pointwise", "pairwise", "listwise"}
        Which ranking loss.
    tau : float
        Temperature τ > 0 of the listwise loss.
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.
    event_ndim : int
        Trailing axes per instance.

    Returns
    -------
    array
        The loss (a scalar, or ``(*batch)`` for ``reduction="none"``).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> pool = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> theta_hat, theta = np.array([[2.0, 1.0]]), np.array([[0.0, 1.0]])
    >>> float(dc.ltr_loss(theta_hat, theta, pool, kind="pointwise"))   # ((2-0)² + (1-1)²) / 2
    2.0
    >>> float(dc.ltr_loss(theta_hat, theta, pool, kind="pairwise"))    # member 0 outranks the best by 1
    1.0
    >>> round(float(dc.ltr_loss(theta_hat, theta, pool)), 4)           # listwise
    1.0443
    """
    kind = check_choice(kind, name="kind", choices=LTR_KINDS)
    return _bind_pool_loss(kind, theta_hat, theta_true, pool, "theta_true", reduction, event_ndim,
                           check_positive(tau, name="tau"))
