r"""Adaptive implicit maximum-likelihood estimation (AI-MLE; Minervini et al., 2023).

I-MLE (:func:`dopt_core.imle`) back-propagates through a perturb-and-MAP layer with the
finite difference towards the target distribution :math:`\theta' = \theta - \lambda g`,
and its quality hinges on the step λ: too small and most solutions do not move (the
gradient is zero), too large and the estimate is biased. AI-MLE ties the step to the
relative size of the cotangent and adapts a multiplier α online. With the
batch-level norms of the scores and of the cotangent :math:`g = \partial L/\partial y`,

.. math::

    \lambda = \alpha\,\frac{\lVert\theta\rVert_2}{\lVert g\rVert_2}, \qquad
    \nabla_\theta \approx \frac1M\sum_m \frac{y^*(\theta + \sigma\varepsilon_m)
        - y^*(\theta - \lambda g + \sigma\varepsilon_m)}{\lambda}

(or the two-sided :math:`\frac1M\sum_m (y^*(\theta + \lambda g + \sigma\varepsilon_m)
- y^*(\theta - \lambda g + \sigma\varepsilon_m))/(2\lambda)`), with the same noise in
every solve, and :math:`\nabla_\theta = 0` when :math:`g = 0`. After each backward
pass the fraction of non-zero entries of the estimate drives α: an exponential moving
average :math:`u \leftarrow \rho u + (1 - \rho)\,\overline{[\nabla_\theta \ne 0]}`
(ρ = ``decay``), then :math:`\alpha \leftarrow \alpha + \delta` if :math:`u <`
``target`` and :math:`\alpha \leftarrow \max(0, \alpha - \delta)` otherwise
(δ = ``alpha_step``). The defaults (α₀ = 1, u₀ = 1, ρ = 0.9, δ = 10⁻³, target 1) are
PyEPO's ``adaptiveImplicitMLE``; torch-adaptive-imle uses δ = 10⁻⁴.

References
----------
P. Minervini, L. Franceschi, M. Niepert. *Adaptive perturbation-based gradient
estimation for discrete latent variable models.* AAAI 2023.
https://arxiv.org/abs/2209.04862
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ._lib._checks import check_flag, check_nonnegative, check_positive, check_real, solver_name
from ._lib._reduce import scaled_norm
from .backend import backend_for
from .noise import Noise, sum_of_gamma_law
from .op import Bound, Op, OpFunction, op_function
from .perturbed import Perturbation, make_perturbation

__all__ = ["AdaptiveState", "aimle"]


class AdaptiveState:
    """The mutable state of an :func:`aimle` layer: the multiplier ``alpha`` and the
    moving average ``u`` of the fraction of non-zero gradient entries.

    It is updated after each backward pass on concrete arrays (not while a JAX
    function is traced: there the λ rule uses the α current at trace time).
    """

    __slots__ = ("alpha", "alpha_step", "decay", "target", "u", "_alpha0")

    def __init__(self, alpha: float, alpha_step: float, decay: float, target: float) -> None:
        self.alpha = self._alpha0 = alpha
        self.alpha_step, self.decay, self.target = alpha_step, decay, target
        self.u = 1.0

    def update(self, nonzero_fraction: float) -> None:
        """One step of the rule in the module docstring."""
        self.u = self.decay * self.u + (1.0 - self.decay) * nonzero_fraction
        if self.u < self.target:
            self.alpha += self.alpha_step
        else:
            self.alpha = max(0.0, self.alpha - self.alpha_step)

    def reset(self) -> None:
        """Back to the initial ``alpha`` and ``u = 1``."""
        self.alpha, self.u = self._alpha0, 1.0

    def __repr__(self) -> str:
        return f"AdaptiveState(alpha={self.alpha:.6g}, u={self.u:.6g})"


@dataclass(frozen=True)
class AIMLEOp(Op):
    p: Perturbation
    state: AdaptiveState = field(compare=False)
    two_sided: bool = False
    name: ClassVar[str] = "aimle"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        eta, _ = self.p.perturb(theta, z, xp=xp)
        ys = xp.astype(self.p.solve(eta, xp=xp), theta.dtype)
        if tuple(ys.shape) != tuple(eta.shape):
            raise ValueError(
                f"aimle needs a solver whose output has theta's shape {tuple(theta.shape)}, "
                f"got {tuple(ys.shape[1:])} per sample"
            )
        return xp.mean(ys, axis=0), (theta, z, ys)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        theta, z, ys = residuals
        m = z.shape[0]
        # the norms as s‖x/s‖ (s = max|x|) and the step as α‖θ‖ · g/‖g‖: no square over-
        # or underflows (‖θ‖² = inf gave a NaN step, ‖g‖² = 0 a zero estimate)
        g_norm, reach = _norm(g, xp=xp), self.state.alpha * _norm(theta, xp=xp)  # ‖λg‖ = α‖θ‖
        live = (g_norm > 0) & (reach > 0)
        g_norm, reach = xp.where(live, g_norm, 1.0), xp.where(live, reach, 1.0)  # masked below
        lam = reach / g_norm
        step = reach * xp.expand_dims(g / g_norm, axis=0)
        eta, _ = self.p.perturb(theta, z, xp=xp)
        if self.two_sided:
            both = xp.astype(self.p.solve(xp.concat([eta + step, eta - step], axis=0), xp=xp), theta.dtype)
            grad = xp.mean(both[:m, ...] - both[m:, ...], axis=0) / (2 * lam)
        else:
            target = xp.astype(self.p.solve(eta - step, xp=xp), theta.dtype)
            grad = xp.mean(ys - target, axis=0) / lam
        grad = xp.where(live, grad, xp.zeros_like(grad))
        backend = backend_for(grad)
        nonzero = xp.mean(xp.astype(grad != 0, grad.dtype)) if grad.size else None
        if nonzero is not None and not backend.is_traced(nonzero):
            self.state.update(float(nonzero))
        return grad, None


def _norm(x: Any, *, xp: Any) -> Any:
    """The Euclidean norm of all of ``x``, as ``s‖x/s‖`` with ``s = max|x|``."""
    if 0 in tuple(x.shape):
        return xp.sum(x)  # 0: the norm of nothing
    s, r, _ = scaled_norm(x, xp=xp)
    return xp.reshape(s * r, ())


def aimle(
    solver: Callable[..., Any],
    *,
    num_samples: int = 1,
    noise: str | Noise = "sum_of_gamma",
    kappa: float = 5.0,
    num_terms: int = 10,
    sigma: float = 1.0,
    two_sided: bool = False,
    alpha: float = 1.0,
    alpha_step: float = 1e-3,
    decay: float = 0.9,
    target: float = 1.0,
    chunk_size: int | None = None,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""Adaptive I-MLE: :func:`dopt_core.imle` with the step λ = α‖θ‖/‖g‖ adapted online.

    Returns ``f(theta, *, rng=None, noise=None)`` exactly like :func:`dopt_core.imle`
    (forward: the perturb-and-MAP average; ``noise=`` pre-drawn standard noise of shape
    ``(num_samples, *theta.shape)``). The backward pass uses the adaptive step of the
    module docstring; ``f.state`` holds α and the moving average u
    (:class:`AdaptiveState`; ``f.state.reset()`` restarts them). The norms are over
    the whole batch, as in PyEPO. The solver must be a linear oracle.

    Minervini, Franceschi & Niepert, *Adaptive perturbation-based gradient estimation
    for discrete latent variable models*, AAAI 2023.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    num_samples : int
        Noise samples per call (the estimates are averaged).
    noise : {"sum_of_gamma", "gumbel", "normal"} or Noise
        Law of the perturbation.
    kappa : float
        Subset size κ of the sum-of-gamma law; another value than the default only
        with ``noise="sum_of_gamma"`` (a ``SumOfGamma`` instance carries its own).
    num_terms : int
        Terms of the sum-of-gamma series; the same rule.
    sigma : float
        Noise scale (the temperature τ).
    two_sided : bool
        Central difference instead of the one-sided one.
    alpha : float
        Initial multiplier α₀ ≥ 0.
    alpha_step : float
        Change δ ≥ 0 of α per backward pass.
    decay : float
        Decay ρ ∈ [0, 1) of the moving average u.
    target : float
        Target fraction of non-zero gradient entries, in (0, 1].
    chunk_size : int, optional
        At most this many samples per solver call.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Returns
    -------
    OpFunction
        ``f(theta, *, rng=None, noise=None)``, with the attribute ``state``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> f = dc.aimle(dc.solvers.argmax, alpha=1.0)
    >>> theta = np.array([3.0, 0.0, 0.0])
    >>> y, vjp = dc.value_and_vjp(f, theta, noise=np.zeros((1, 3)))
    >>> g = np.array([1.0, -1.0, 0.0])      # lambda = |theta| / |g| = 2.12
    >>> vjp(g).round(3)                      # theta - lambda g = [0.88, 2.12, 0]: item 1 wins
    array([ 0.471, -0.471,  0.   ])
    >>> f.state                              # 2 of 3 entries moved: u < 1, alpha grows
    AdaptiveState(alpha=1.001, u=0.966667)
    """
    law = sum_of_gamma_law(noise, kappa=kappa, num_terms=num_terms)
    p = make_perturbation(
        solver, sigma=sigma, num_samples=num_samples, noise=law, multiplicative=False,
        antithetic=False, chunk_size=chunk_size, event_ndim=event_ndim, require_score=False,
    )
    decay = check_real(decay, name="decay")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay!r}")
    target = check_positive(target, name="target")
    if target > 1.0:  # u is a fraction: above 1, α would grow at every step
        raise ValueError(f"target must be a fraction in (0, 1], got {target!r}")
    state = AdaptiveState(
        check_nonnegative(alpha, name="alpha"),
        check_nonnegative(alpha_step, name="alpha_step"),
        decay,
        target,
    )
    op = AIMLEOp(p, state, check_flag(two_sided, name="two_sided"))

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
        return Bound(op, (theta, z), out_dtype)

    f = op_function(bind, name=f"aimle({solver_name(solver)})", doc=aimle.__doc__)
    f.perturbation = p  # type: ignore[attr-defined]
    f.state = state  # type: ignore[attr-defined]
    return f
