"""Relaxed argmax over the simplex: softmax, sparsemax and Gumbel-softmax.

All three act on the last axis (leading axes are batch axes), return ``theta``'s dtype
and device, and have closed-form VJPs written below in the array API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .._lib._checks import check_flag, check_in_dtype_range, check_positive, check_scores
from .._lib._compat import device, index_dtype
from .._lib._random import bind_noise
from ..noise import GUMBEL
from ..op import Bound, Op, op_function
from ._common import shifted_scaled, softmax_last, softmax_vjp

__all__ = ["gumbel_softmax", "softmax", "sparsemax"]


def _one_hot_argmax(y: Any, *, xp: Any) -> Any:
    cols = xp.arange(y.shape[-1], device=device(y))
    idx = xp.argmax(y, axis=-1, keepdims=True)
    return xp.astype(idx == cols, y.dtype)


@dataclass(frozen=True)
class SoftmaxOp(Op):
    tau: float = 1.0
    name: ClassVar[str] = "softmax"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        # the residual is θ, not y: an autograd output must not double as a residual;
        # softmax((θ - max θ)/τ): θ/τ itself overflows for large finite θ and small τ
        return softmax_last(theta, self.tau, xp=xp, divide=True), (theta,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (theta,) = residuals
        y = softmax_last(theta, self.tau, xp=xp, divide=True)
        return (softmax_vjp(y, cotangent, self.tau, xp=xp),)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # J is symmetric: J u = y ⊙ (u - <u, y>)/τ, the VJP's formula
        (theta,), (u,) = residuals, tangents
        if u is None:
            return None
        y = softmax_last(theta, self.tau, xp=xp, divide=True)
        return softmax_vjp(y, u, self.tau, xp=xp)


@dataclass(frozen=True)
class SparsemaxOp(Op):
    tau: float = 1.0
    name: ClassVar[str] = "sparsemax"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        # sparsemax(z + c) = sparsemax(z): centre on the max so that 1 + z_(1) > z_(1)
        # also holds in floating point for large |z| (and the sums stay accurate), and
        # before dividing by τ (θ/τ overflows for large finite θ and small τ); entries
        # clipped below -1e4 are outside the support either way
        z = shifted_scaled(theta, self.tau, xp=xp, divide=True)
        n = z.shape[-1]
        zs = xp.sort(z, axis=-1, descending=True)
        cs = xp.cumulative_sum(zs, axis=-1)
        ks = xp.arange(1, n + 1, dtype=z.dtype, device=device(z))
        # the support is a prefix of the sorted order: {k : 1 + k z_(k) > Σ_{j≤k} z_(j)}
        support = xp.astype(1 + ks * zs > cs, index_dtype(xp))
        # k = 1 always qualifies (k >= 1 in exact arithmetic); plain tensor arithmetic
        # rather than maximum(k, 1) and maximum(z - thr, 0), which array-api-compat
        # routes through result_type (a graph break under torch.compile)
        k = xp.sum(support, axis=-1, keepdims=True)
        k = k + xp.astype(k == 0, k.dtype)
        csk = xp.take_along_axis(cs, k - 1, axis=-1)
        thr = (csk - 1) / xp.astype(k, z.dtype)
        mask = xp.astype(z > thr, z.dtype)
        y = (z - thr) * mask + 0.0  # + 0.0 turns the -0.0 of negative * 0 into +0.0
        return y, (mask,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (mask,) = residuals
        g = cotangent * mask
        mean = xp.sum(g, axis=-1, keepdims=True) / xp.sum(mask, axis=-1, keepdims=True)
        return ((g - mask * mean) / self.tau,)

    # the Jacobian is piecewise constant (the support): its derivative is zero a.e.
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # J = (diag(s) - s sᵀ/|S|)/τ is symmetric: J u is the VJP's formula
        (u,) = tangents
        return None if u is None else self.vjp(residuals, u, xp=xp)[0]


@dataclass(frozen=True)
class GumbelSoftmaxOp(Op):
    tau: float = 1.0
    hard: bool = False
    name: ClassVar[str] = "gumbel_softmax"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, noise: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        z = theta + noise
        soft = softmax_last(z, self.tau, xp=xp, divide=True)
        y = _one_hot_argmax(soft, xp=xp) if self.hard else soft
        return y, (z,)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        (z,) = residuals
        soft = softmax_last(z, self.tau, xp=xp, divide=True)
        return (softmax_vjp(soft, cotangent, self.tau, xp=xp), None)

    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the softmax of z = θ + G (straight through it when hard); the noise has no tangent
        (z,), u = residuals, tangents[0]
        if u is None:
            return None
        soft = softmax_last(z, self.tau, xp=xp, divide=True)
        return softmax_vjp(soft, u, self.tau, xp=xp)


@op_function
def softmax(theta: Any, /, *, tau: float = 1.0, check_finite: bool = True) -> Bound:
    r"""Softmax along the last axis, at temperature ``tau``.

    .. math::

        y(\theta) = \frac{\exp(\theta/\tau)}{\sum_j \exp(\theta_j/\tau)}
        = \operatorname*{argmax}_{y \in \Delta^{n}} \langle \theta, y\rangle + \tau H(y),

    the entropy-regularised argmax. As ``tau → 0`` it tends to the one-hot argmax
    (for distinct scores). VJP: :math:`J^\top g = y \odot (g - \langle g, y\rangle)/\tau`.

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
    tau : float > 0
        Temperature.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.relax.softmax(np.log(np.array([1.0, 3.0])))
    array([0.25, 0.75])
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    tau = check_positive(tau, name="tau")
    tau = check_in_dtype_range(tau, name="tau", dtype=theta.dtype, xp=xp)
    return Bound(SoftmaxOp(tau), (theta,), out_dtype)


@op_function
def sparsemax(theta: Any, /, *, tau: float = 1.0, check_finite: bool = True) -> Bound:
    r"""Sparsemax (Martins & Astudillo, ICML 2016): Euclidean projection onto the simplex.

    .. math::

        y(\theta) = \operatorname*{argmin}_{y \in \Delta^{n}} \|y - \theta/\tau\|^2
        = \max(\theta/\tau - t(\theta), 0),

    where, with :math:`z_{(1)} \ge \dots \ge z_{(n)}` the sorted entries of
    :math:`z = \theta/\tau`, :math:`k = \max\{k : 1 + k z_{(k)} > \sum_{j \le k} z_{(j)}\}`
    and :math:`t = (\sum_{j\le k} z_{(j)} - 1)/k`. With :math:`s = 1[y > 0]` its
    Jacobian is :math:`(\operatorname{diag}(s) - s s^\top/|s|)/\tau`, so
    :math:`J^\top g = s \odot (g - \langle s, g\rangle/|s|)/\tau`.

    Parameters
    ----------
    theta : array, shape ``(..., n)``, float32 or float64
        Scores; leading axes are batch axes.
    tau : float > 0
        Temperature.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.relax.sparsemax(np.array([[0.5, 0.2, -1.0], [3.0, 0.0, 0.0]]))
    array([[0.65, 0.35, 0.  ],
           [1.  , 0.  , 0.  ]])

    References
    ----------
    Martins and Astudillo, "From softmax to sparsemax: a sparse model of attention and
    multi-label classification", ICML 2016, arXiv:1602.02068.
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    tau = check_positive(tau, name="tau")
    tau = check_in_dtype_range(tau, name="tau", dtype=theta.dtype, xp=xp)
    return Bound(SparsemaxOp(tau), (theta,), out_dtype)


@op_function
def gumbel_softmax(
    theta: Any,
    /,
    *,
    tau: float,
    rng: Any = None,
    noise: Any = None,
    hard: bool = False,
    check_finite: bool = True,
) -> Bound:
    r"""Gumbel-softmax / concrete relaxation of a categorical sample.

    .. math::

        y = \operatorname{softmax}\bigl((\theta + G)/\tau\bigr),
        \qquad G_i \sim \text{Gumbel}(0, 1),

    so that :math:`\operatorname{argmax}_i (\theta_i + G_i) \sim \operatorname{softmax}(\theta)`
    exactly (the Gumbel-max trick) and ``y`` tends to that one-hot sample as
    ``tau → 0``. With ``hard=True`` the forward returns the one-hot ``argmax y`` and the
    gradient is the soft one (straight-through).

    Parameters
    ----------
    theta : array, shape ``(..., n)``
        Unnormalised log-probabilities.
    tau : float > 0
        Temperature (required).
    rng : generator, key or int, optional
        The backend's own generator (NumPy ``Generator``, ``torch.Generator``, JAX key)
        or an int seed; not together with ``noise``.
    noise : array shaped like ``theta``, optional
        Pre-drawn standard Gumbel noise (how the conformance suite gives every backend
        the same sample). It receives no gradient.
    hard : bool
        Straight-through one-hot forward.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> theta = np.log(np.array([0.2, 0.8]))
    >>> y = dc.relax.gumbel_softmax(theta, tau=0.5, noise=np.array([0.0, 0.0]))
    >>> np.round(y, 4)
    array([0.0588, 0.9412])

    References
    ----------
    Jang, Gu and Poole, "Categorical reparameterization with Gumbel-softmax", ICLR 2017;
    Maddison, Mnih and Teh, "The concrete distribution", ICLR 2017.
    """
    theta, xp, out_dtype = check_scores(theta, check_finite=check_finite)
    tau = check_positive(tau, name="tau")
    tau = check_in_dtype_range(tau, name="tau", dtype=theta.dtype, xp=xp)
    hard = check_flag(hard, name="hard")
    noise = bind_noise(theta, rng, noise, law=GUMBEL, check_finite=check_finite)
    return Bound(GumbelSoftmaxOp(tau, hard), (theta, noise), out_dtype)
