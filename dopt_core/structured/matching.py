r"""Perfect bipartite matchings by row/column removal on exponential weights.

Step ``t`` takes the smallest exponential :math:`E_{ij}` over the rows and columns not
yet matched, matches ``i`` to ``j`` and removes row ``i`` and column ``j``; ``n``
steps give a permutation (Struminsky et al. 2021, the matching experiment). The active
set of step ``t`` is the free rows × free columns, so
:math:`\log p(T) = \sum_t [\theta_{i_t j_t} - \log\sum_{i,j \text{ free}} e^{\theta_{ij}}]`.
Scores are ``(..., n, n)`` like :func:`dopt_core.solvers.linear_assignment`; the trace
indexes the flattened ``n·n`` entries (row-major), and this module's
:func:`log_prob`, :func:`score` and :func:`conditional_sample` take the square scores.
Fully vectorised (``n`` masked argmins), no host code.
"""

from __future__ import annotations

from typing import Any

from .._lib._checks import check_flag, check_scores
from .._lib._compat import device
from . import _trace
from ._trace import Trace, log_prob_exponentials, race_keys, with_exponentials

__all__ = ["conditional_sample", "log_prob", "log_prob_exponentials", "run", "sample", "score"]


def _check_square(x: Any, name: str) -> Any:
    if not hasattr(x, "shape") or len(x.shape) < 2 or x.shape[-1] != x.shape[-2]:
        shape = tuple(getattr(x, "shape", ()))
        raise ValueError(f"{name} must be square on its last two axes, shape (..., n, n), got shape {shape}")
    return x


def _flat(x: Any, xp: Any) -> Any:
    n = x.shape[-1]
    return xp.reshape(x, (*x.shape[:-2], n * n))


def run(e: Any, *, check_finite: bool = True) -> tuple[Any, Trace]:
    r"""The greedy matching of given exponentials, and its trace.

    :math:`(i_t, j_t) = \operatorname{argmin}_{i \notin I_t, j \notin J_t} E_{ij}`, with
    :math:`I_t, J_t` the rows and columns matched before step ``t`` (Struminsky et al.
    2021).

    Parameters
    ----------
    e : array, shape ``(..., n, n)``
        Exponentials.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite entries.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        The permutation matrix (``y[i, j] = 1`` when row ``i`` is matched to column ``j``).
    trace : Trace
        ``n`` steps over the ``n·n`` flattened entries.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> e = np.array([[0.5, 0.1], [0.2, 0.9]])
    >>> y, trace = dc.structured.matching.run(e)
    >>> y, trace.choices
    (array([[0., 1.],
           [1., 0.]]), array([1, 2]))
    """
    _check_square(e, "e")
    e, xp, _ = check_scores(e, name="e", min_ndim=2, check_finite=check_flag(check_finite, name="check_finite"))
    n = e.shape[-1]
    lead = tuple(e.shape[:-2])
    flat = _flat(e, xp)
    dev = device(e)
    idx = xp.arange(n, device=dev)
    rows = xp.ones((*lead, n), dtype=xp.bool, device=dev)
    cols = xp.ones((*lead, n), dtype=xp.bool, device=dev)
    choices, actives = [], []
    for _ in range(n):
        act = _flat(rows[..., :, None] & cols[..., None, :], xp)
        c = xp.argmin(xp.where(act, flat, float("inf")), axis=-1)
        i, j = c // n, c % n
        rows = rows & (idx != i[..., None])
        cols = cols & (idx != j[..., None])
        choices.append(c)
        actives.append(act)
    choices = xp.stack(choices, axis=-1)
    active = xp.stack(actives, axis=-2)
    hot = xp.any(choices[..., None] == xp.arange(n * n, dtype=choices.dtype, device=dev), axis=-2)
    y = xp.reshape(xp.astype(hot, e.dtype), (*lead, n, n))
    return y, Trace(choices, active, flat, None, "matching")


def sample(
    theta: Any, *, rng: Any = None, noise: Any = None, num_samples: int | None = None
) -> tuple[Any, Trace]:
    r"""Sample a perfect bipartite matching by row/column removal on exponentials.

    :math:`E_{ij} = \varepsilon_{ij} e^{-\theta_{ij}}`; the matching of :func:`run`, with

    .. math::

        \log p(T;\theta) = \sum_{t=0}^{n-1}\Bigl[\theta_{i_t j_t}
            - \log\sum_{i\notin I_t,\, j \notin J_t} e^{\theta_{ij}}\Bigr]

    (Struminsky et al. 2021).

    Parameters
    ----------
    theta : array, shape ``(..., n, n)``
        Scores (non-square raises ``ValueError``).
    rng : generator or int, optional
        The backend's generator, a NumPy ``Generator`` or an int seed.
    noise : array, optional
        Pre-drawn standard exponentials. Not with ``rng``.
    num_samples : int, optional
        A leading sample axis.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        Permutation matrices.
    trace : Trace

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.matching.sample(np.zeros((3, 3)), rng=0)
    >>> y.sum(axis=0), y.sum(axis=1)
    (array([1., 1., 1.]), array([1., 1., 1.]))
    """
    _check_square(theta, "theta")
    e, keys = race_keys(theta, rng=rng, noise=noise, num_samples=num_samples)
    y, trace = run(keys)  # comparisons only: log E has the same matching
    return y, with_exponentials(trace, _flat(e, check_scores(keys, name="e", min_ndim=2)[1]))


def _flat_theta(theta: Any) -> Any:
    _check_square(theta, "theta")
    t, xp, _ = check_scores(theta, min_ndim=2)
    return _flat(theta, xp) if t is theta else _flat(t, xp)


def log_prob(trace: Any, theta: Any) -> Any:
    r"""``log p(T; θ)`` of a matching trace, θ square ``(..., n, n)``.

    :math:`\sum_t [\theta_{i_t j_t} - \log\sum_{\text{free } i, j} e^{\theta_{ij}}]`
    (Struminsky et al. 2021): :func:`dopt_core.structured.log_prob` on the flattened
    scores, differentiable through its closed-form VJP.

    Parameters
    ----------
    trace : Trace
        From :func:`sample`.
    theta : array, shape ``(..., n, n)``
        Scores.

    Returns
    -------
    array, shape ``trace.shape``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> M = dc.structured.matching
    >>> y, trace = M.sample(np.zeros((3, 3)), rng=0)
    >>> round(float(np.exp(M.log_prob(trace, np.zeros((3, 3))))), 4)   # 1/9 · 1/4 · 1
    0.0278
    """
    return _trace.log_prob(trace, _flat_theta(theta))


def score(trace: Any, theta: Any) -> Any:
    r"""Per-sample :math:`\nabla_\theta \log p(T;\theta)`, shape ``(*trace.shape, n, n)``.

    The closed form :math:`\sum_t [\mathbb 1[(i,j) = (i_t, j_t)] - \operatorname{softmax}_{A_t}(\theta)_{ij}]`
    (Struminsky et al. 2021).

    Parameters
    ----------
    trace : Trace
        From :func:`sample`.
    theta : array, shape ``(..., n, n)``
        Scores.

    Returns
    -------
    array, shape ``(*trace.shape, n, n)``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> M = dc.structured.matching
    >>> y, trace = M.sample(np.zeros((2, 2)), rng=0)
    >>> float(M.score(trace, np.zeros((2, 2))).sum())
    0.0
    """
    flat = _flat_theta(theta)
    s = _trace.score(trace, flat)
    n = theta.shape[-1]
    xp = check_scores(flat)[1]
    return xp.reshape(s, (*s.shape[:-1], n, n))


def conditional_sample(trace: Any, theta: Any, *, rng: Any = None, noise: Any = None) -> Any:
    r"""Exponentials :math:`E \mid T` reproducing a matching trace, shape ``(*trace.shape, n, n)``.

    :func:`dopt_core.structured.conditional_sample` on the flattened scores
    (Struminsky et al. 2021, section 3.2).

    Parameters
    ----------
    trace : Trace
        From :func:`sample`.
    theta : array, shape ``(..., n, n)``
        Scores.
    rng : generator or int, optional
        Draws the standard exponentials.
    noise : array, optional
        Pre-drawn, shape ``(*trace.shape, n + n·n)``. Not with ``rng``.

    Returns
    -------
    array, shape ``(*trace.shape, n, n)``

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> M = dc.structured.matching
    >>> y, trace = M.sample(np.zeros((3, 3)), rng=0)
    >>> bool((M.run(M.conditional_sample(trace, np.zeros((3, 3)), rng=1))[0] == y).all())
    True
    """
    flat = _flat_theta(theta)
    e = _trace.conditional_sample(trace, flat, rng=rng, noise=noise)
    n = theta.shape[-1]
    xp = check_scores(flat)[1]
    return xp.reshape(e, (*e.shape[:-1], n, n))
