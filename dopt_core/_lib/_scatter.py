"""Sums of one-hot rows without the one-hot rows: histograms of sampled indices.

The perturbed arg-max (:mod:`dopt_core.perturbed`) averages one-hot vectors
:math:`e_{i_m}` over samples :math:`m`; that mean is the histogram of the indices
:math:`i_m` divided by :math:`M`, and the estimator's forward-mode derivative is a
weighted histogram. Building the ``(M, *batch, n)`` one-hot array to sum it costs a
pass over ``M * batch * n`` entries (the dominant cost after the noise draw); a
scatter-add costs ``M * batch``.

The array API has no scatter-add, so adapters may provide one: a backend with a
method ``one_hot_sum(index, n, weights, like)`` (same contract as :func:`one_hot_sum`)
is used; otherwise NumPy arrays go through ``np.bincount`` and other arrays through
the array-API reference (a comparison with ``arange(n)`` and a sum over axis 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._compat import device
from ._registry import backend_for

__all__ = ["first_argmax", "one_hot_sum"]


def one_hot_sum(index: Any, n: int, *, like: Any, weights: Any = None, xp: Any) -> Any:
    r"""``out[..., j] = Σ_m w[m, ...] · [index[m, ...] == j]``, of ``like``'s dtype.

    ``index`` is an integer array ``(M, *batch)`` with entries in ``[0, n)``; ``weights``
    (``None`` for ones) has its shape and ``like``'s dtype; the result is
    ``(*batch, n)``. With unit weights the counts are exact integers (below
    :math:`2^{24}` in float32), so ``one_hot_sum(i, n) / M`` equals the mean of the
    one-hot rows bit for bit; weighted sums may add in another order than a sum over
    axis 0 (rounding-level differences).

    Parameters
    ----------
    index : array
        Integer indices, sample axis first.
    n : int
        Length of the one-hot rows.
    like : array
        Gives the result's dtype and device.
    weights : array, optional
        One weight per index.
    xp : namespace
        The arrays' namespace.

    Examples
    --------
    >>> import numpy as np
    >>> one_hot_sum(np.array([[0, 2], [0, 1], [1, 1]]), 3, like=np.zeros(1), xp=np)
    array([[2., 1., 0.],
           [0., 2., 1.]])
    """
    native = getattr(backend_for(like), "one_hot_sum", None)
    if native is not None:
        return native(index, n, weights, like)
    if isinstance(index, np.ndarray) and isinstance(like, np.ndarray):
        return _numpy_one_hot_sum(index, n, like, weights)
    hits = xp.expand_dims(index, axis=-1) == xp.arange(n, device=device(like))
    if weights is None:
        return xp.astype(xp.sum(xp.astype(hits, xp.int32), axis=0), like.dtype)
    return xp.sum(xp.where(hits, xp.expand_dims(weights, axis=-1), xp.zeros((), dtype=like.dtype, device=device(like))), axis=0)


def first_argmax(x: Any, *, xp: Any) -> Any:
    """``xp.argmax(x, axis=-1)`` (the lowest index among ties, the first NaN if any),
    through the backend's ``first_argmax(x)`` method when it has one.

    XLA on CPU runs the index-returning arg-max reduction several times slower than
    a max, a comparison and a min over the same array (which it fuses); the JAX
    adapter provides that form, with the same result.

    Parameters
    ----------
    x : array
        Scores ``(..., n)``.
    xp : namespace
        ``x``'s namespace.

    Examples
    --------
    >>> import numpy as np
    >>> first_argmax(np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 0.0]]), xp=np)
    array([1, 0])
    """
    native = getattr(backend_for(x), "first_argmax", None)
    return xp.argmax(x, axis=-1) if native is None else native(x)


def _numpy_one_hot_sum(index: np.ndarray, n: int, like: np.ndarray, weights: Any) -> np.ndarray:
    batch = index.shape[1:]
    count = int(np.prod(batch, dtype=np.int64))
    flat = (index.reshape(index.shape[0], count) + np.arange(count) * n).reshape(-1)
    w = None if weights is None else np.asarray(weights).reshape(-1)
    out = np.bincount(flat, weights=w, minlength=count * n)  # float64 (int64 without weights)
    return out.astype(like.dtype, copy=False).reshape(*batch, n)
