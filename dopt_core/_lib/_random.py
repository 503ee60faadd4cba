"""Binding ``rng`` / ``noise`` for a stochastic op: the one rule every such op uses.

A stochastic op ``f(theta, *, rng=None, noise=None)`` either draws its standard noise
from a law of :mod:`dopt_core.noise` with ``rng`` (the backend's own generator, a
non-negative int seed, or a NumPy ``Generator``), or takes pre-drawn ``noise``, which
must match θ: same backend and device, a real floating dtype (cast to θ's), the
expected shape, finite values. Giving both is an error: one of them would be ignored.
"""

from __future__ import annotations

from typing import Any

from ._registry import backend_for
from ._checks import check_same_device, check_scores

__all__ = ["bind_noise"]


def bind_noise(
    theta: Any,
    rng: Any,
    noise: Any,
    *,
    law: Any,
    sample_shape: tuple[int, ...] = (),
    sample_names: tuple[str, ...] = (),
    event_shape: tuple[int, ...] | None = None,
    antithetic: bool = False,
    check_finite: bool = True,
) -> Any:
    r"""The standard noise ``Z`` of one call, shaped ``(*sample_shape, *event_shape)``.

    Parameters
    ----------
    theta : array
        The (validated) scores; ``Z`` gets its backend, dtype and device.
    rng, noise
        The call's arguments: ``noise=None`` draws ``Z ~ law`` with ``rng``; otherwise
        ``noise`` is checked and cast to θ's dtype, and ``rng`` must be ``None``.
    law : dopt_core.noise.Noise
        The law of the entries of ``Z``.
    sample_shape : tuple of int
        Leading sample axes (``(num_samples,)`` for Monte-Carlo estimators).
    sample_names : tuple of str
        How the error message names the sample axes (``("num_samples",)``).
    event_shape : tuple of int, optional
        Shape of one sample; θ's shape by default.
    antithetic : bool
        Draw half of the first sample axis and append its negation, :math:`(Z, -Z)`
        (symmetric laws; a given ``noise`` is used as is).
    check_finite : bool
        Refuse a given ``noise`` with NaN or infinite entries.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.noise import GUMBEL
    >>> theta = np.zeros((2, 3))
    >>> bind_noise(theta, 0, None, law=GUMBEL, sample_shape=(4,)).shape
    (4, 2, 3)
    >>> bind_noise(theta, 0, np.zeros((2, 3)), law=GUMBEL)
    Traceback (most recent call last):
    ...
    ValueError: pass either rng or noise, not both
    """
    event = tuple(theta.shape) if event_shape is None else tuple(event_shape)
    shape = (*sample_shape, *event)
    if noise is None:
        backend = backend_for(theta)
        if not antithetic:
            return law.sample(backend, rng, shape, like=theta)
        xp = backend.namespace(theta)
        half = law.sample(backend, rng, (shape[0] // 2, *shape[1:]), like=theta)
        return xp.concat([half, -half], axis=0)
    if rng is not None:
        raise ValueError("pass either rng or noise, not both")
    z, xp, _ = check_scores(noise, name="noise", min_ndim=0, check_finite=check_finite)
    check_same_device({"theta": theta, "noise": z})
    if tuple(z.shape) != shape:
        if sample_shape or event_shape is not None:
            names = ", ".join((*sample_names, "*theta.shape")) if sample_names else "..."
            expected = f"shape ({names}) = {shape}"
        else:
            expected = f"theta's shape {shape}"
        raise ValueError(f"noise must have {expected}, got {tuple(z.shape)}")
    return xp.astype(z, theta.dtype)
