r"""Top-k subsets and full orderings (Plackett-Luce) as recursive argmins of exponentials.

Step ``t`` takes the argmin of the exponentials over the items not yet chosen, so
``k`` steps give the Gumbel top-k subset (sorted by the exponentials) and ``n`` steps
the Plackett-Luce ordering,
:math:`p(\sigma) = \prod_t e^{\theta_{\sigma_t}} / \sum_{s \ge t} e^{\theta_{\sigma_s}}`
(Plackett 1975; Luce 1959; recursive Gumbel-max view of Struminsky et al. 2021).
Fully vectorised: one sort per instance, no host code.
"""

from __future__ import annotations

from typing import Any

from .._lib._checks import check_flag, check_int, check_scores
from .._lib._compat import device
from ._trace import (
    Trace,
    conditional_sample,
    log_prob,
    log_prob_exponentials,
    race_keys,
    score,
    with_exponentials,
)

__all__ = [
    "conditional_sample",
    "log_prob",
    "log_prob_exponentials",
    "ordering",
    "run",
    "run_ordering",
    "sample",
    "score",
]


def _run(e: Any, k: int, *, check_finite: bool, structure: str) -> tuple[Any, Trace, Any]:
    e, xp, _ = check_scores(e, name="e", check_finite=check_finite)
    order = xp.argsort(e, axis=-1, stable=True)
    rank = xp.argsort(order, axis=-1, stable=True)
    steps = xp.arange(k, dtype=rank.dtype, device=device(e))
    active = rank[..., None, :] >= steps[:, None]
    choices = order[..., :k]
    return rank, Trace(choices, active, e, None, structure), xp


def run(e: Any, k: int, *, check_finite: bool = True) -> tuple[Any, Trace]:
    r"""The top-k subset of given exponentials: the ``k`` smallest, and the trace.

    Step ``t`` picks :math:`c_t = \operatorname{argmin}_{j \notin \{c_0..c_{t-1}\}} E_j`
    (Struminsky et al. 2021; the Gumbel top-k of Vieira 2014, Kool et al. 2019, with
    Gumbels :math:`G = -\log E`).

    Parameters
    ----------
    e : array, shape ``(..., n)``
        Exponentials (leading axes are sample / batch axes).
    k : int
        Subset size, ``1 <= k <= n``.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite entries.

    Returns
    -------
    y : array, shape ``(..., n)``
        The k-hot indicator, ``e``'s dtype.
    trace : Trace
        ``k`` steps; ``choices`` are the chosen items in increasing order of ``e``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.top_k.run(np.array([0.3, 2.0, 0.1]), 2)
    >>> y, trace.choices
    (array([1., 0., 1.]), array([2, 0]))
    """
    n = _last(e)
    k = check_int(k, name="k", low=1, high=n)
    rank, trace, xp = _run(e, k, check_finite=check_flag(check_finite, name="check_finite"), structure="top_k")
    return xp.astype(rank < k, trace.exponentials.dtype), trace


def sample(
    theta: Any, k: int, *, rng: Any = None, noise: Any = None, num_samples: int | None = None
) -> tuple[Any, Trace]:
    r"""Sample a top-k subset by the recursive Gumbel-max trick, with its trace.

    :math:`E = \varepsilon e^{-\theta}`, :math:`\varepsilon \sim \mathrm{Exp}(1)`; the
    subset is the ``k`` smallest exponentials, with probability
    :math:`\sum_{\text{orders}} \prod_{t<k} e^{\theta_{c_t}}/\sum_{j \notin c_{<t}}
    e^{\theta_j}` (Struminsky et al. 2021; Kool, van Hoof, Welling 2019).

    Parameters
    ----------
    theta : array, shape ``(..., n)``
        Scores (``λ = exp θ``).
    k : int
        Subset size.
    rng : generator or int, optional
        The backend's generator, a NumPy ``Generator`` or an int seed.
    noise : array, optional
        Pre-drawn standard exponentials ``ε`` (shape ``(num_samples, *theta.shape)``,
        or ``theta.shape``). Not with ``rng``.
    num_samples : int, optional
        A leading sample axis.

    Returns
    -------
    y : array, shape ``(num_samples, ..., n)`` or ``(..., n)``
        k-hot subsets, θ's dtype.
    trace : Trace

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.top_k.sample(np.zeros(5), 2, rng=0, num_samples=3)
    >>> y.sum(axis=-1), trace.shape
    (array([2., 2., 2.]), (3,))
    """
    e, keys = race_keys(theta, rng=rng, noise=noise, num_samples=num_samples)
    y, trace = run(keys, k)  # the order of log E: exact when e^{-θ} under/overflows
    return y, with_exponentials(trace, e)


def run_ordering(e: Any, *, check_finite: bool = True) -> tuple[Any, Trace]:
    r"""The full ordering of given exponentials (increasing), and its Plackett-Luce trace.

    Parameters
    ----------
    e : array, shape ``(..., n)``
        Exponentials.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite entries.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        The permutation matrix, ``y[..., t, i] = 1`` when item ``i`` comes ``t``-th.
    trace : Trace
        ``n`` steps (Struminsky et al. 2021; Plackett 1975).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.top_k.run_ordering(np.array([0.3, 2.0, 0.1]))
    >>> trace.choices
    array([2, 0, 1])
    >>> y.argmax(axis=-1)
    array([2, 0, 1])
    """
    n = _last(e)
    rank, trace, xp = _run(e, n, check_finite=check_flag(check_finite, name="check_finite"), structure="ordering")
    steps = xp.arange(n, dtype=rank.dtype, device=device(rank))
    y = xp.astype(rank[..., None, :] == steps[:, None], trace.exponentials.dtype)
    return y, trace


def ordering(
    theta: Any, *, rng: Any = None, noise: Any = None, num_samples: int | None = None
) -> tuple[Any, Trace]:
    r"""Sample a Plackett-Luce ordering by the recursive Gumbel-max trick, with its trace.

    .. math::

        p(\sigma;\theta) = \prod_{t=0}^{n-1} \frac{e^{\theta_{\sigma_t}}}{\sum_{s\ge t} e^{\theta_{\sigma_s}}},

    the law of the increasing order of :math:`E_i \sim \mathrm{Exp}(e^{\theta_i})`
    (Plackett 1975; Struminsky et al. 2021).

    Parameters
    ----------
    theta : array, shape ``(..., n)``
        Scores.
    rng : generator or int, optional
        The backend's generator, a NumPy ``Generator`` or an int seed.
    noise : array, optional
        Pre-drawn standard exponentials. Not with ``rng``.
    num_samples : int, optional
        A leading sample axis.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        Permutation matrices (row ``t`` is the item placed ``t``-th).
    trace : Trace

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> theta = np.array([0.0, 1.0, 2.0])
    >>> y, trace = dc.structured.top_k.ordering(theta, noise=np.ones(3))
    >>> trace.choices, round(float(np.exp(dc.structured.log_prob(trace, theta))), 4)
    (array([2, 1, 0]), 0.4863)
    """
    e, keys = race_keys(theta, rng=rng, noise=noise, num_samples=num_samples)
    y, trace = run_ordering(keys)
    return y, with_exponentials(trace, e)


def _last(e: Any) -> int:
    if not hasattr(e, "shape") or len(e.shape) < 1:
        raise ValueError("e must be an array with at least one dimension (the items on the last axis)")
    return int(e.shape[-1])
