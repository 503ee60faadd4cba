r"""Relaxed control flow, part two: loops, indexing, assignment, equality, logic.

AlgoVision's semantics (Petersen et al., "Learning with algorithmic supervision via
continuous relaxations", NeurIPS 2021; Petersen's thesis ch. 3): every decision is
replaced by its probability under a perturbation of the compared variables, and every
variable by its expectation.

* ``soft_while`` — a loop whose condition holds with probability ``c(s_k)`` after ``k``
  iterations returns the expected state under the distribution of the number of
  iterations, :math:`\Pr[K = k] = p_{k-1} - p_k`, :math:`p_k = p_{k-1} c(s_k)`;
* ``soft_index`` — ``a[i]`` for a real index: the probability that the perturbed index
  rounds to ``j``, :math:`w_j = F(\beta(j + \tfrac12 - i)) - F(\beta(j - \tfrac12 - i))`
  (the mass beyond either end goes to the end entry, so the weights sum to 1);
* ``soft_assign`` — ``a ← w·v + (1 - w)·a`` (AlgoVision's ``probabilistic_update``);
* ``soft_eq`` — :math:`\operatorname{sech}^2(\beta(a - b)/2)`, the logistic density
  normalised to 1 at ``a = b``;
* ``soft_and`` / ``soft_or`` / ``soft_not`` — product, probabilistic sum, complement
  (the T-norm / T-conorm pair ``probabilistic`` of :mod:`dopt_core.relax.fuzzy`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import (
    check_broadcastable,
    check_in_dtype_range,
    check_int,
    check_nonnegative,
    check_positive,
    check_same_device,
    check_scores,
)
from .._lib._compat import array_namespace, device
from ..backend import backend_for
from ..op import Bound, Op, op_function
from . import cdfs

__all__ = [
    "soft_and",
    "soft_assign",
    "soft_eq",
    "soft_index",
    "soft_index_weights",
    "soft_not",
    "soft_or",
    "soft_while",
]


# ---------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------
def _arr(v: Any, like: Any, *, name: str, xp: Any, check_finite: bool) -> Any:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an array or a real number, got bool")
    if isinstance(v, int | float):
        return xp.asarray(float(v), dtype=like.dtype, device=device(like))
    v, _, _ = check_scores(v, name=name, min_ndim=0, check_finite=check_finite)
    check_same_device({"first argument": like, name: v})
    return xp.astype(v, like.dtype)


def _prob(v: Any, *, name: str, check_finite: bool) -> tuple[Any, Any, Any]:
    v, xp, out_dtype = check_scores(v, name=name, min_ndim=0, check_finite=check_finite)
    if check_finite and not backend_for(v).is_traced(v):
        if not bool(xp.all((v >= 0) & (v <= 1))):
            raise ValueError(f"{name} must lie in [0, 1] (a probability)")
    return v, xp, out_dtype


def _broadcast(arrays: dict[str, Any], *, xp: Any) -> tuple[Any, ...]:
    check_broadcastable(arrays)
    return tuple(xp.broadcast_arrays(*arrays.values()))


def _beta(beta: Any, like: Any, *, xp: Any) -> float:
    return check_in_dtype_range(check_positive(beta, name="beta"), name="beta", dtype=like.dtype, xp=xp)


def _cdf_dist(distribution: Any) -> Any:
    d = cdfs.resolve(distribution, name="distribution")
    if d.entry.raw:
        raise ValueError(f"distribution {d.name!r} is not a CDF of the difference alone")
    return d


# ---------------------------------------------------------------------------------
# equality and logic
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SoftEqOp(Op):
    beta: float
    name: ClassVar[str] = "soft_eq"

    def forward(self, a: Any, b: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        # sech²(v/2) = 4σ(v)σ(-v) = 4e/(1+e)², e = exp(-|v|): no overflow, no cancellation;
        # capped at 1 (float32 rounds it to 1 + 1.2e-7 near v = 0: not a probability)
        v = self.beta * (a - b)
        e = xp.exp(-xp.abs(v))
        return xp.minimum(4 * e / ((1 + e) * (1 + e)), xp.ones_like(e)), (v,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (v,) = residuals
        e = xp.exp(-xp.abs(v))
        d = -4 * self.beta * xp.sign(v) * e * (1 - e) / ((1 + e) * (1 + e) * (1 + e))
        return (g * d, -g * d)


@dataclass(frozen=True)
class SoftLogicOp(Op):
    """``kind``: ``"and"`` (pq), ``"or"`` (p + q - pq) or ``"not"`` (1 - p)."""

    kind: str
    name: ClassVar[str] = "soft_logic"

    def forward(self, *ps: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        if self.kind == "not":
            return 1 - ps[0], ()
        p, q = ps
        return (p * q if self.kind == "and" else p + q - p * q), (p, q)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        if self.kind == "not":
            return (-g,)
        p, q = residuals
        if self.kind == "and":
            return (g * q, g * p)
        return (g * (1 - q), g * (1 - p))


@op_function
def soft_eq(a: Any, b: Any, /, *, beta: float = 10.0, check_finite: bool = True) -> Bound:
    r"""Relaxed ``a == b``: :math:`\operatorname{sech}^2(\beta (a - b)/2)`.

    AlgoVision's ``Eq`` (Petersen et al., NeurIPS 2021): the density of the logistic
    difference ``a - b + ε/β`` at 0, normalised to 1 at ``a == b``; equals
    :math:`4\sigma(\beta d)(1 - \sigma(\beta d))` and tends to ``1[a == b]`` as
    ``beta → ∞``. ``b`` may be a Python number.

    Parameters
    ----------
    a : array
        Left-hand side.
    b : array or float
        Right-hand side, broadcast against ``a``.
    beta : float > 0
        Inverse temperature.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array
        In (0, 1], the broadcast shape.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_eq
    >>> soft_eq(np.array([0.0, 1.0]), 0.0, beta=2.0).round(6)
    array([1.      , 0.419974])
    """
    a, xp, out_dtype = check_scores(a, name="a", min_ndim=0, check_finite=check_finite)
    b = _arr(b, a, name="b", xp=xp, check_finite=check_finite)
    return Bound(SoftEqOp(_beta(beta, a, xp=xp)), _broadcast({"a": a, "b": b}, xp=xp), out_dtype)


def _logic(kind: str, p: Any, q: Any, check_finite: bool) -> Bound:
    p, xp, out_dtype = _prob(p, name="p", check_finite=check_finite)
    if q is None:
        return Bound(SoftLogicOp(kind), (p,), out_dtype)
    if isinstance(q, int | float) and not isinstance(q, bool):
        q = xp.asarray(float(q), dtype=p.dtype, device=device(p))
    q, _, _ = _prob(q, name="q", check_finite=check_finite)
    check_same_device({"p": p, "q": q})
    q = xp.astype(q, p.dtype)
    return Bound(SoftLogicOp(kind), _broadcast({"p": p, "q": q}, xp=xp), out_dtype)


@op_function
def soft_and(p: Any, q: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Relaxed ``p and q`` for independent events: :math:`pq` (the product T-norm;
    AlgoVision, Petersen et al., NeurIPS 2021).

    Parameters
    ----------
    p : array
        Probabilities in [0, 1].
    q : array or float
        Probabilities in [0, 1], broadcast against ``p``.
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs.

    Returns
    -------
    array

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_and
    >>> soft_and(np.array([0.5, 1.0]), 0.5)
    array([0.25, 0.5 ])
    """
    return _logic("and", p, q, check_finite)


@op_function
def soft_or(p: Any, q: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Relaxed ``p or q`` for independent events: :math:`p + q - pq` (the probabilistic
    T-conorm; AlgoVision, Petersen et al., NeurIPS 2021).

    Parameters
    ----------
    p : array
        Probabilities in [0, 1].
    q : array or float
        Probabilities in [0, 1], broadcast against ``p``.
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs.

    Returns
    -------
    array

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_or
    >>> soft_or(np.array([0.5, 0.0]), 0.5)
    array([0.75, 0.5 ])
    """
    return _logic("or", p, q, check_finite)


@op_function
def soft_not(p: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Relaxed ``not p``: :math:`1 - p` (AlgoVision's ``IsFalse``, Petersen et al.,
    NeurIPS 2021).

    Parameters
    ----------
    p : array
        Probabilities in [0, 1].
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs.

    Returns
    -------
    array

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_not
    >>> soft_not(np.array([0.25, 1.0]))
    array([0.75, 0.  ])
    """
    return _logic("not", p, None, check_finite)


# ---------------------------------------------------------------------------------
# indexing and assignment
# ---------------------------------------------------------------------------------
def _index_weights(i: Any, n: int, beta: float, dist: Any, *, xp: Any) -> tuple[Any, Any]:
    """Weights ``w (..., n)`` of a real index ``i (...)`` and ``dw/di``."""
    j = xp.arange(n + 1, dtype=i.dtype, device=device(i)) - 0.5  # the n + 1 cell edges
    v = cdfs.clip_standardised(j - xp.expand_dims(i, axis=-1), xp=xp, scale=beta)
    C = dist.entry.F(v, dist.param_dict, xp)  # Pr[perturbed index < edge]
    dC = -beta * dist.entry.f(v, dist.param_dict, xp)  # d/di
    edge = (j > -0.0) & (j < n - 1.0)  # interior edges; the two ends are clamped
    C = xp.where(edge, C, xp.astype(j > 0, i.dtype))
    dC = xp.where(edge, dC, xp.zeros_like(dC))
    return C[..., 1:] - C[..., :-1], dC[..., 1:] - dC[..., :-1]


@dataclass(frozen=True)
class SoftIndexWeightsOp(Op):
    n: int
    beta: float
    dist: Any
    name: ClassVar[str] = "soft_index_weights"

    def forward(self, i: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        w, dw = _index_weights(i, self.n, self.beta, self.dist, xp=xp)
        return w, (dw,)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (dw,) = residuals
        return (xp.sum(g * dw, axis=-1),)


@dataclass(frozen=True)
class SoftIndexOp(Op):
    beta: float
    dist: Any
    name: ClassVar[str] = "soft_index"

    def forward(self, a: Any, i: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        w, dw = _index_weights(i, a.shape[-1], self.beta, self.dist, xp=xp)
        return xp.sum(w * a, axis=-1), (a, w, dw)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        a, w, dw = residuals
        ge = xp.expand_dims(g, axis=-1)
        return (ge * w, g * xp.sum(a * dw, axis=-1))


@dataclass(frozen=True)
class SoftAssignOp(Op):
    name: ClassVar[str] = "soft_assign"

    def forward(self, a: Any, w: Any, v: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return w * v + (1 - w) * a, (w, v - a)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        w, diff = residuals
        return (g * (1 - w), g * diff, g * w)


def _index_arg(i: Any, like: Any, *, xp: Any, check_finite: bool) -> Any:
    return _arr(i, like, name="i", xp=xp, check_finite=check_finite)


@op_function
def soft_index_weights(
    i: Any,
    n: int,
    /,
    *,
    beta: float = 10.0,
    distribution: Any = "logistic",
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed one-hot of a real index ``i`` over ``n`` slots.

    :math:`w_j = \Pr[j - \tfrac12 < i + \varepsilon/\beta < j + \tfrac12]
    = F(\beta(j + \tfrac12 - i)) - F(\beta(j - \tfrac12 - i))`, the probability that
    the perturbed index rounds to ``j`` (AlgoVision's real-valued indexing, Petersen
    et al., NeurIPS 2021, Fig. 3); the mass below 0 and above ``n - 1`` goes to the end
    slots, so the weights sum to 1. Tends to the one-hot of ``round(i)`` as
    ``beta → ∞``. Use with :func:`soft_assign` to write at a relaxed position.

    Parameters
    ----------
    i : array, shape ``(...)``
        Real indices.
    n : int
        Number of slots.
    beta : float > 0
        Inverse temperature.
    distribution : str, ("name", parameter) or cdfs.Distribution
        The law of the index noise (:mod:`dopt_core.relax.cdfs`).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``(..., n)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_index_weights
    >>> soft_index_weights(np.array(1.0), 3, beta=50.0).round(6)
    array([0., 1., 0.])
    >>> float(soft_index_weights(np.array(0.3), 4, beta=2.0).sum())
    1.0
    """
    i, xp, out_dtype = check_scores(i, name="i", min_ndim=0, check_finite=check_finite)
    n = check_int(n, name="n", low=1)
    op = SoftIndexWeightsOp(n, _beta(beta, i, xp=xp), _cdf_dist(distribution))
    return Bound(op, (i,), out_dtype)


@op_function
def soft_index(
    a: Any,
    i: Any,
    /,
    *,
    beta: float = 10.0,
    distribution: Any = "logistic",
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed ``a[..., i]`` for a real index: :math:`\sum_j w_j(i)\, a_j` with the
    weights of :func:`soft_index_weights` (AlgoVision, Petersen et al., NeurIPS 2021).

    Parameters
    ----------
    a : array, shape ``(..., n)``
        The indexed array (last axis).
    i : array or float
        Real indices, broadcast against ``a.shape[:-1]``.
    beta : float > 0
        Inverse temperature.
    distribution : str, ("name", parameter) or cdfs.Distribution
        The law of the index noise (:mod:`dopt_core.relax.cdfs`).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Returns
    -------
    array, shape ``a.shape[:-1]`` (broadcast with ``i``)

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_index
    >>> round(float(soft_index(np.array([10.0, 20.0, 30.0]), 2.0, beta=50.0)), 6)
    30.0
    >>> float(soft_index(np.array([10.0, 20.0, 30.0]), 1.5, beta=50.0))   # halfway
    25.0
    """
    a, xp, out_dtype = check_scores(a, name="a", check_finite=check_finite)
    i = _index_arg(i, a, xp=xp, check_finite=check_finite)
    check_broadcastable({"a[..., 0]": a[..., 0], "i": i})
    shape = tuple(xp.broadcast_arrays(a[..., 0], i)[0].shape)
    a = xp.broadcast_to(a, (*shape, a.shape[-1]))
    i = xp.broadcast_to(i, shape)
    op = SoftIndexOp(_beta(beta, a, xp=xp), _cdf_dist(distribution))
    return Bound(op, (a, i), out_dtype)


@op_function
def soft_assign(a: Any, w: Any, v: Any, /, *, check_finite: bool = True) -> Bound:
    r"""Relaxed assignment ``a ← v`` with probability ``w``: :math:`w v + (1 - w) a`.

    AlgoVision's left-hand relaxed indexing (``probabilistic_update``, Petersen et al.,
    NeurIPS 2021): with ``w = soft_index_weights(i, n)`` it writes ``v`` to the relaxed
    position ``i``. The three arguments broadcast together; ``w`` must lie in [0, 1].

    Parameters
    ----------
    a : array
        The current values.
    w : array
        Write probabilities in [0, 1].
    v : array or float
        The written values.
    check_finite : bool
        Raise ``ValueError`` on NaN, infinite or out-of-range inputs.

    Returns
    -------
    array
        The broadcast shape.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_assign
    >>> soft_assign(np.zeros(3), np.array([0.0, 0.25, 1.0]), 8.0)
    array([0., 2., 8.])
    """
    a, xp, out_dtype = check_scores(a, name="a", min_ndim=0, check_finite=check_finite)
    w, _, _ = _prob(w, name="w", check_finite=check_finite)
    check_same_device({"a": a, "w": w})
    w = xp.astype(w, a.dtype)
    v = _arr(v, a, name="v", xp=xp, check_finite=check_finite)
    return Bound(SoftAssignOp(), _broadcast({"a": a, "w": w, "v": v}, xp=xp), out_dtype)


# ---------------------------------------------------------------------------------
# the soft-terminating loop (a composition, not an Op)
# ---------------------------------------------------------------------------------
def _leaves(state: Any, path: str = "state") -> list[tuple[str, Any]]:
    if isinstance(state, dict):
        out: list[tuple[str, Any]] = []
        for k in state:
            out += _leaves(state[k], f"{path}[{k!r}]")
        return out
    if isinstance(state, list | tuple):
        out = []
        for j, v in enumerate(state):
            out += _leaves(v, f"{path}[{j}]")
        return out
    return [(path, state)]


def _rebuild(state: Any, values: list[Any]) -> Any:
    it = iter(values)

    def go(s: Any) -> Any:
        if isinstance(s, dict):
            return {k: go(v) for k, v in s.items()}
        if isinstance(s, list | tuple):
            return type(s)(go(v) for v in s)
        return next(it)

    return go(state)


def _structure(state: Any) -> Any:
    if isinstance(state, dict):
        return ("dict", tuple((k, _structure(v)) for k, v in state.items()))
    if isinstance(state, list | tuple):
        return (type(state).__name__, tuple(_structure(v) for v in state))
    return "leaf"


def _expand(p: Any, leaf: Any, xp: Any) -> Any:
    extra = leaf.ndim - p.ndim
    if extra < 0:
        raise ValueError(
            f"cond must return the state's batch shape; got shape {tuple(p.shape)} for a "
            f"leaf of shape {tuple(leaf.shape)}"
        )
    return xp.reshape(p, (*p.shape, *([1] * extra)))


def soft_while(
    cond: Callable[[Any], Any],
    body: Callable[[Any], Any],
    state: Any,
    /,
    *,
    max_iter: int = 1024,
    eps: float = 1e-5,
    return_weights: bool = False,
) -> Any:
    r"""AlgoVision's soft-terminating ``while cond(state): state = body(state)``.

    With :math:`s_0` = ``state``, :math:`s_k = \mathrm{body}(s_{k-1})`,
    :math:`p_0 = c(s_0)` and :math:`p_k = p_{k-1} c(s_k)` (``c`` = ``cond``, a
    probability, e.g. from :func:`soft_compare`), the result is the expected state
    under the distribution :math:`\Pr[K = k] = p_{k-1} - p_k` of the number of
    iterations (Petersen et al., NeurIPS 2021, ``While``):

    .. math::

        \mathrm{out} = (1 - p_0) s_0 + \sum_{k=1}^{K} (p_{k-1} - p_k) s_k + p_K s_K

    (the leftover mass :math:`p_K` goes to the last state; the weights sum to 1). The
    loop stops at ``max_iter`` iterations or when every instance's :math:`p_k` is at
    most ``eps`` — a host read of :math:`\max p_k` per iteration; under ``jax.jit``
    (traced values) it runs all ``max_iter`` iterations. As the conditions' ``beta``
    grows it returns the state of the hard loop.

    ``state`` is an array, or a dict / list / tuple (nested) of floating arrays whose
    leading axes are the batch shape that ``cond`` returns (``cond(s)`` has shape
    ``B``, a leaf ``B + (...)``). ``body`` must return the same structure and keep
    every value finite: states of weight 0 are still computed (their weight-0 terms
    are dropped, so an ``inf`` or NaN there does no harm, but a later iteration
    starting from it may).

    This is a composition of array operations and the ops ``cond`` and ``body`` call
    (:func:`soft_compare`, :func:`soft_if`, ...), not an Op: torch and JAX
    differentiate it natively, each relaxed decision inside through its own explicit
    VJP; NumPy computes the forward only.

    Parameters
    ----------
    cond : callable
        ``state -> p``, the probability that the loop continues (batch shape; values
        outside [0, 1] or NaN raise ``ValueError`` unless traced).
    body : callable
        ``state -> state``, one iteration.
    state : array or dict / list / tuple of arrays
        The initial state :math:`s_0`.
    max_iter : int >= 0
        Maximum number of iterations.
    eps : float >= 0
        Stop when every instance's continuation probability is at most ``eps``.
    return_weights : bool
        Also return the weights :math:`\Pr[K = k]`, stacked on a new leading axis
        (length: the number of states visited).

    Returns
    -------
    state, or (state, weights)
        The expected state (same structure as ``state``).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_compare, soft_while
    >>> # while i < 3.5: i += 1, with a sharp condition: the hard loop's i = 4
    >>> s = soft_while(lambda s: soft_compare(-s["i"], -3.5, beta=1e3),
    ...                lambda s: {"i": s["i"] + 1.0}, {"i": np.array([0.0, 2.0])})
    >>> s["i"]
    array([4., 4.])
    >>> _, w = soft_while(lambda s: soft_compare(-s, -3.0, beta=1.0), lambda s: s + 1.0,
    ...                   np.array(0.0), return_weights=True)
    >>> round(float(w.sum()), 12)
    1.0
    """
    if not callable(cond) or not callable(body):
        raise TypeError("cond and body must be callables (state -> probability, state -> state)")
    max_iter = check_int(max_iter, name="max_iter", low=0)
    eps = check_nonnegative(eps, name="eps")
    leaves = _leaves(state)
    if not leaves:
        raise ValueError("state must hold at least one array")
    first = leaves[0][1]
    if isinstance(first, int | float | bool):
        raise TypeError(f"{leaves[0][0]} must be an array, got {type(first).__name__}")
    xp = array_namespace(first)
    for path, v in leaves:
        check_scores(v, name=path, min_ndim=0, check_finite=False)
    backend = backend_for(first)
    shape0 = _structure(state)

    def weighted(w: Any, s_leaves: list[Any]) -> list[Any]:
        out = []
        for _, v in s_leaves:
            we = _expand(w, v, xp)
            out.append(xp.where(we == 0, xp.zeros_like(v), we * v))
        return out

    def prob(s: Any) -> Any:
        p = cond(s)
        if isinstance(p, int | float):
            p = xp.asarray(float(p), dtype=first.dtype, device=device(first))
        return p

    def host_max(c: Any, p: Any, k: int) -> float | None:
        """``max p`` after checking ``c`` in [0, 1], in one host read (``None`` if traced)."""
        if backend.is_traced(p) or backend.is_traced(c):
            return None
        stats = [xp.astype(xp.reshape(r, (1,)), p.dtype) for r in (xp.min(c), xp.max(c), xp.max(p))]
        lo, hi, top = (float(v) for v in backend.to_numpy(xp.concat(stats)))
        if not (lo >= 0 and hi <= 1):  # NaN fails both
            raise ValueError(
                f"cond must return probabilities in [0, 1]; got values in [{lo}, {hi}] "
                f"after {k} iteration(s)"
            )
        return top

    s = state
    p_prev = prob(s)
    top = host_max(p_prev, p_prev, 0)
    weights = [1 - p_prev]
    acc = weighted(1 - p_prev, _leaves(s))
    for k in range(max_iter):
        if top is not None and top <= eps:
            break
        s = body(s)
        if _structure(s) != shape0:
            raise ValueError("body must return a state with the structure of the initial state")
        c = prob(s)
        p = p_prev * c
        top = host_max(c, p, k + 1)
        w = p_prev - p
        weights.append(w)
        acc = [u + t for u, t in zip(acc, weighted(w, _leaves(s)), strict=True)]
        p_prev = p
    acc = [u + t for u, t in zip(acc, weighted(p_prev, _leaves(s)), strict=True)]
    weights[-1] = weights[-1] + p_prev
    out = _rebuild(state, acc)
    if return_weights:
        return out, xp.stack(weights, axis=0)
    return out
