r"""Binary trees by recursive argmin partition of exponentials.

Over the ordered items ``0..n-1``, the root is the argmin of the exponentials; the
items to its left and to its right are partitioned the same way, recursively (the
Cartesian tree of ``E``; Struminsky et al. 2021, the binary-tree experiment). Each
item ``i`` is the argmin of its own interval ``I_i``, so
:math:`\log p(T) = \sum_i [\theta_i - \log\sum_{j \in I_i} e^{\theta_j}]`. The trace
has one step per item, in item order (step ``i`` chooses item ``i``: a canonical
order, so that the trace is a function of the tree); ``trace.parent`` is each item's
parent (``-1`` for the root): given the trace, ``E_i − E_{parent(i)}`` is
:math:`\mathrm{Exp}(\sum_{j\in I_i}\lambda_j)`. Fully vectorised (``O(n²)`` comparisons
per instance), no host code.
"""

from __future__ import annotations

from typing import Any

from .._lib._checks import check_flag, check_scores
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

__all__ = ["conditional_sample", "log_prob", "log_prob_exponentials", "run", "sample", "score"]


def run(e: Any, *, check_finite: bool = True) -> tuple[Any, Trace]:
    r"""The recursive-argmin binary tree of given exponentials, and its trace.

    Item ``i``'s interval is :math:`I_i = [l_i, r_i)`, bounded by the nearest items on
    each side with a smaller exponential (of two equal ones the lower index counts as
    smaller, as in the other samplers); its parent is whichever of those two
    neighbours has the larger exponential (Struminsky et al. 2021).

    Parameters
    ----------
    e : array, shape ``(..., n)``
        Exponentials.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite entries.

    Returns
    -------
    y : array, shape ``(..., n, n)``
        The tree's adjacency, ``y[..., p, c] = 1`` when ``p`` is the parent of ``c``
        (left or right child by position).
    trace : Trace
        ``n`` steps (step ``i`` is item ``i``), with ``parent`` (the parent item).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.binary_tree.run(np.array([0.4, 0.1, 0.3, 0.2]))
    >>> y.argmax(axis=0) * (y.sum(axis=0) > 0)   # parent of each item (root: 0)
    array([1, 0, 3, 1])
    >>> trace.parent
    array([ 1, -1,  3,  1])
    """
    e, xp, _ = check_scores(e, name="e", check_finite=check_flag(check_finite, name="check_finite"))
    n = e.shape[-1]
    dev = device(e)
    idx = xp.arange(n, device=dev)
    # less[i, j]: (E_j, j) < (E_i, i), ties broken towards the lower index (a strict
    # order: tied items would otherwise both span the whole interval)
    less = (e[..., None, :] < e[..., :, None]) | (
        (e[..., None, :] == e[..., :, None]) & (idx[None, :] < idx[:, None])
    )
    left = xp.max(xp.where(less & (idx[None, :] < idx[:, None]), idx[None, :], -1), axis=-1)
    right = xp.min(xp.where(less & (idx[None, :] > idx[:, None]), idx[None, :], n), axis=-1)
    lo = left + 1
    active_items = (idx >= lo[..., None]) & (idx < right[..., None])  # (..., n items, n)
    has_l, has_r = left >= 0, right < n
    el = xp.take_along_axis(e, xp.where(has_l, left, 0), axis=-1)
    er = xp.take_along_axis(e, xp.where(has_r, right, 0), axis=-1)
    pick_l = has_l & (~has_r | (el > er))  # on a tie the right one (higher index) is later
    parent_item = xp.where(pick_l, left, xp.where(has_r, right, -1))
    choices = xp.broadcast_to(idx, tuple(e.shape))
    y = xp.astype((parent_item[..., None, :] == idx[:, None]), e.dtype)
    return y, Trace(choices, active_items, e, parent_item, "binary_tree")


def sample(
    theta: Any, *, rng: Any = None, noise: Any = None, num_samples: int | None = None
) -> tuple[Any, Trace]:
    r"""Sample a binary tree over ordered items by recursive argmin partition.

    :math:`E_i = \varepsilon_i e^{-\theta_i}`; the tree of :func:`run`, with

    .. math::

        \log p(T;\theta) = \sum_{i=0}^{n-1}\Bigl[\theta_i - \log\sum_{j\in I_i} e^{\theta_j}\Bigr]

    (Struminsky et al. 2021).

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
        Parent-child adjacency matrices.
    trace : Trace

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y, trace = dc.structured.binary_tree.sample(np.zeros(5), rng=0, num_samples=2)
    >>> y.sum(axis=(-2, -1))   # n - 1 edges
    array([4., 4.])
    """
    e, keys = race_keys(theta, rng=rng, noise=noise, num_samples=num_samples)
    y, trace = run(keys)  # comparisons only: log E has the same tree
    return y, with_exponentials(trace, e)
