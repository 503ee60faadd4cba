"""Binarisation of features for logic networks (host NumPy helpers, not differentiable)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._lib._checks import check_int

__all__ = ["one_hot_bits", "quantile_thresholds", "thermometer"]


def _matrix(X: Any, name: str) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must have shape (samples, features), got {X.shape}")
    return X


def quantile_thresholds(X: Any, n_bits: int) -> np.ndarray:
    r"""Per-feature thresholds at the quantiles ``i/(n_bits+1)``, ``i = 1..n_bits``.

    Fitted on training data, they cut every feature into ``n_bits + 1`` intervals of
    about equal shares of the samples, so thermometer bit ``i`` (0-based) fires on a
    share of about :math:`1 - (i+1)/(n_\mathrm{bits}+1)` of them (the encoding used for
    continuous UCI features by Petersen et al., NeurIPS 2022, Appendix A).

    Parameters
    ----------
    X : array-like, shape ``(N, d)``, finite
    n_bits : int ≥ 1

    Returns
    -------
    numpy.ndarray, shape ``(d, n_bits)``, float64, non-decreasing along each row

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import quantile_thresholds
    >>> quantile_thresholds(np.arange(5.0)[:, None], 3).tolist()
    [[1.0, 2.0, 3.0]]
    """
    X = _matrix(X, "X").astype(np.float64)
    n_bits = check_int(n_bits, name="n_bits", low=1)
    if X.shape[0] == 0:
        raise ValueError("X must hold at least one sample (row) to fit quantiles on")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values: the quantiles would be undefined")
    q = np.arange(1, n_bits + 1) / (n_bits + 1)
    return np.quantile(X, q, axis=0).T


def thermometer(X: Any, thresholds: Any) -> np.ndarray:
    r"""Thermometer bits: :math:`b_{f,i} = [x_f > t_{f,i}]`, features-major.

    Parameters
    ----------
    X : array-like, shape ``(N, d)``, no NaN
    thresholds : array-like, shape ``(d, m)`` or ``(m,)`` (the same for every feature), no NaN

    Returns
    -------
    numpy.ndarray, shape ``(N, d·m)``, bool; column ``f·m + i`` is bit ``i`` of feature ``f``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import thermometer
    >>> thermometer(np.array([[0.1, 0.7]]), np.array([0.25, 0.5, 0.75])).astype(int).tolist()
    [[0, 0, 0, 1, 1, 0]]
    """
    X = _matrix(X, "X").astype(np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    for nm, v in (("X", X), ("thresholds", t)):
        if np.any(np.isnan(v)):
            raise ValueError(f"{nm} contains NaN values (every comparison with NaN is False)")
    if t.ndim == 1:
        t = np.broadcast_to(t, (X.shape[1], t.shape[0]))
    if t.ndim != 2 or t.shape[0] != X.shape[1]:
        raise ValueError(f"thresholds must have shape (features={X.shape[1]}, m) or (m,), got {t.shape}")
    return (X[:, :, None] > t[None]).reshape(X.shape[0], -1)


def one_hot_bits(X: Any, n_values: Any) -> np.ndarray:
    r"""One-hot bits of categorical features with values ``0..n_values[f]-1``.

    Parameters
    ----------
    X : array-like of integers, shape ``(N, d)``
    n_values : sequence of ``d`` ints ≥ 1

    Returns
    -------
    numpy.ndarray, shape ``(N, Σ n_values)``, bool

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import one_hot_bits
    >>> one_hot_bits(np.array([[0, 2], [1, 0]]), [2, 3]).astype(int).tolist()
    [[1, 0, 0, 0, 1], [0, 1, 1, 0, 0]]
    """
    X = _matrix(X, "X")
    if X.dtype.kind not in "iub":
        raise TypeError(f"X must hold integer category codes, got dtype {X.dtype}")
    n_values = [check_int(v, name="n_values", low=1) for v in np.atleast_1d(n_values).tolist()]
    if len(n_values) != X.shape[1]:
        raise ValueError(f"n_values must have one entry per feature ({X.shape[1]}), got {len(n_values)}")
    cols = []
    for f, n in enumerate(n_values):
        v = X[:, f].astype(np.int64)
        if v.size and (v.min() < 0 or v.max() >= n):
            raise ValueError(f"feature {f} must take values in [0, {n}), got [{v.min()}, {v.max()}]")
        cols.append(v[:, None] == np.arange(n)[None])
    return np.concatenate(cols, axis=1) if cols else np.zeros((X.shape[0], 0), dtype=bool)
