r"""Perturbed optimizers and perturbed maxima (Berthet et al., 2020).

Given a solver :math:`y^*(\theta) = \operatorname{argmax}_{y \in Y} \langle \theta, y\rangle`
and noise :math:`Z` with density :math:`\mu(z) \propto e^{-\nu(z)}`
(:mod:`dopt_core.noise`), with :math:`\varepsilon` = ``sigma`` and :math:`M` samples:

.. math::

    y_\varepsilon(\theta) = \mathbb E\, y^*(\theta + \varepsilon Z)
        \approx \frac1M \sum_m y^*(\theta + \varepsilon Z_m),
    \qquad
    F_\varepsilon(\theta) = \mathbb E \max_{y \in Y} \langle y, \theta + \varepsilon Z\rangle .

:math:`F_\varepsilon` is smooth and convex with :math:`\nabla F_\varepsilon = y_\varepsilon`,
and :math:`y_\varepsilon` is smooth with Jacobian :math:`\nabla^2 F_\varepsilon`
(symmetric positive semi-definite), estimated by the score identity

.. math::

    J_\theta y_\varepsilon(\theta)^\top g \approx \frac{1}{M\varepsilon} \sum_m
        \bigl(\langle y^*(\theta + \varepsilon Z_m), g\rangle - b\bigr)\, \nabla\nu(Z_m),

with :math:`b = 0`, or :math:`b = \langle y^*(\theta), g\rangle` under
``control_variate=True`` (unbiased because :math:`\mathbb E\nabla\nu(Z) = 0`).
``antithetic=True`` draws :math:`M/2` samples and uses the pairs :math:`(Z, -Z)`
(symmetric noise only).

**Multiplicative** perturbation (Dalle et al., 2022), for scores of constant sign:
:math:`\eta_m = \theta \odot e^{\varepsilon Z_m - \varepsilon^2/2}` with Normal
:math:`Z`, so :math:`\mathbb E\,\eta = \theta` and :math:`\eta` keeps θ's signs. The
change of variable :math:`u = \log|\eta|` gives the log-space estimator

.. math::

    J^\top g \approx \frac{1}{M\varepsilon\,\theta} \odot \sum_m \langle y^*(\eta_m), g\rangle Z_m ,

valid for any non-zero θ (θ may be negative, e.g. ``θ = -cost``).

All :math:`M \times \text{batch}` perturbed problems go to the solver in **one call**
(shape ``(M, *theta.shape)``; every dopt solver is batched over leading axes);
``chunk_size`` splits the samples into calls of at most that many to bound memory.

References
----------
Q. Berthet, M. Blondel, O. Teboul, M. Cuturi, J.-P. Vert, F. Bach. *Learning with
differentiable perturbed optimizers.* NeurIPS 2020. https://arxiv.org/abs/2002.08676

G. Dalle, L. Baty, L. Bouvier, A. Parmentier. *Learning with combinatorial
optimization layers: a probabilistic approach.* 2022. https://arxiv.org/abs/2207.13513
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import (
    check_flag,
    check_int,
    check_linear_output,
    check_positive,
    check_scores,
    check_callable_solver,
    instance_solver,
    solver_failure,
    solver_name,
)
from ._lib._random import bind_noise
from .backend import apply_op, backend_for
from .noise import Noise, get_noise
from .op import Bound, Op, OpFunction, op_function

__all__ = ["Perturbation", "perturbed", "perturbed_max"]


@dataclass(frozen=True)
class Perturbation:
    """What the perturbed ops share: the solver, ε, the noise law and how to perturb.

    ``event_ndim`` is the number of trailing axes of θ that form one instance (1 for
    vectors, 2 for ``(n, n)`` assignment scores or ``(H, W)`` grids).
    """

    solver: Callable[..., Any]
    sigma: float
    noise: Noise
    num_samples: int
    multiplicative: bool = False
    antithetic: bool = False
    chunk_size: int | None = None
    event_ndim: int = 1

    # -- forward pieces ---------------------------------------------------------------
    def perturb(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, Any]:
        """``(η, w)``: the perturbed scores ``(M, *θ.shape)`` and, when multiplicative,
        the factors ``w = exp(εZ - ε²/2)`` (else ``None``)."""
        if self.multiplicative:
            w = xp.exp(self.sigma * z - 0.5 * self.sigma**2)
            return theta * w, w
        return theta + self.sigma * z, None

    def solve(self, eta: Any, *, xp: Any) -> Any:
        """The solver on every perturbed problem: one call, or one per chunk of samples."""
        m = eta.shape[0]
        if self.chunk_size is None or self.chunk_size >= m:
            return self._solve(eta, 0, m)
        c = self.chunk_size
        parts = [self._solve(eta[i : min(i + c, m), ...], i, m) for i in range(0, m, c)]
        return xp.concat(parts, axis=0)

    def _solve(self, eta: Any, start: int, total: int) -> Any:
        try:
            return self.solver(eta)
        except Exception as exc:  # errors name theta's shape, not the stacked problems'
            err = solver_failure(self.solver, exc, eta, start=start, total=total)
            if err is exc:
                raise
            raise err from exc

    def event_axes(self, ndim: int) -> tuple[int, ...]:
        return tuple(range(ndim - self.event_ndim, ndim))

    # -- inputs -----------------------------------------------------------------------
    def bind_theta_noise(self, theta: Any, rng: Any, noise: Any) -> tuple[Any, Any, Any]:
        """Validate θ and draw (or validate) the standard noise ``(M, *θ.shape)``."""
        theta, xp, out_dtype = check_scores(theta, min_ndim=self.event_ndim)
        backend = backend_for(theta)
        z = bind_noise(
            theta, rng, noise, law=self.noise, sample_shape=(self.num_samples,),
            sample_names=("num_samples",), antithetic=self.antithetic,
        )
        if self.multiplicative and not backend.is_traced(theta):
            zero = xp.any(theta == 0)
            if not backend.is_traced(zero) and bool(zero):
                raise ValueError("theta must be non-zero everywhere for multiplicative perturbation")
        return theta, z, out_dtype


# ---------------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PerturbedOp(Op):
    """``(θ, Z) -> y_ε(θ)`` with the score-function VJP (module docstring)."""

    p: Perturbation
    control_variate: bool = False
    name: ClassVar[str] = "perturbed"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p, m = self.p, z.shape[0]
        eta, _ = p.perturb(theta, z, xp=xp)
        if self.control_variate:  # θ itself rides along as one more problem in the same call
            ys = p.solve(xp.concat([eta, xp.expand_dims(theta, axis=0)], axis=0), xp=xp)
            ys, y0 = ys[:m, ...], ys[m, ...]
        else:
            ys, y0 = p.solve(eta, xp=xp), None
        ys = xp.astype(ys, theta.dtype)
        _check_solver_output(ys, eta, p.event_ndim)
        residuals = (ys, z) + ((xp.astype(y0, theta.dtype),) if y0 is not None else ())
        residuals += (theta,) if p.multiplicative else ()
        return xp.mean(ys, axis=0), residuals

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        p = self.p
        ys, z = residuals[0], residuals[1]
        m = ys.shape[0]
        n_batch = z.ndim - 1 - p.event_ndim
        out_axes = tuple(range(1 + n_batch, ys.ndim))
        r = xp.sum(ys * g, axis=out_axes)  # <y*(η_m), g> per sample and instance: (M, *batch)
        if self.control_variate:
            y0 = residuals[2]
            r = r - xp.sum(y0 * g, axis=tuple(a - 1 for a in out_axes))
        r = xp.reshape(r, (*r.shape, *([1] * p.event_ndim)))
        score = z if p.multiplicative else p.noise.grad_nu(z, xp=xp)
        grad = xp.sum(r * score, axis=0) / (m * p.sigma)
        if p.multiplicative:
            grad = grad / residuals[-1]
        return grad, None

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the transpose of the VJP: J u ≈ (1/(Mε)) Σ_m (y*(η_m) - b) <∇ν(Z_m), u>, over the
        # same noise (log-space when multiplicative: <Z_m, u/θ>)
        u = tangents[0]
        if u is None:
            return None
        p = self.p
        ys, z = residuals[0], residuals[1]
        m = ys.shape[0]
        if p.multiplicative:
            u = u / residuals[-1]
        score = z if p.multiplicative else p.noise.grad_nu(z, xp=xp)
        s = xp.sum(score * u, axis=p.event_axes(z.ndim))  # (M, *batch)
        n_out = ys.ndim - s.ndim
        s = xp.reshape(s, (*s.shape, *([1] * n_out)))
        if self.control_variate:
            ys = ys - residuals[2]
        return xp.sum(ys * s, axis=0) / (m * p.sigma)


@dataclass(frozen=True)
class PerturbedMaxOp(Op):
    """``(θ, Z) -> F_ε(θ)`` per instance, gradient ``y_ε(θ)`` (``E[y*(η) ⊙ w]`` when multiplicative)."""

    p: Perturbation
    name: ClassVar[str] = "perturbed_max"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p = self.p
        eta, w = p.perturb(theta, z, xp=xp)
        ys = xp.astype(p.solve(eta, xp=xp), theta.dtype)
        check_linear_output(ys, eta)
        values = xp.sum(ys * eta, axis=p.event_axes(eta.ndim))
        grad = xp.mean(ys if w is None else ys * w, axis=0)
        # the samples ride along (no copy) for reattach: Hessians by the score identity
        return xp.mean(values, axis=0), (grad,) + (() if w is not None else (ys,))

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        grad = residuals[0]
        return xp.reshape(g, (*g.shape, *([1] * self.p.event_ndim))) * grad, None

    @property
    def second_order(self) -> bool:  # type: ignore[override]
        # additive noise: ∇²F_ε = J y_ε by the score identity (reattach); not multiplicative
        return not self.p.multiplicative

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # <∇F_ε(θ), u> = <y_ε(θ), u> per instance
        u = tangents[0]
        if u is None:
            return None
        return xp.sum(residuals[0] * u, axis=self.p.event_axes(u.ndim))

    def reattach(self, inputs: tuple[Any, ...], residuals: tuple[Any, ...], *, xp: Any) -> tuple[Any, ...]:
        # y_ε = mean of the samples, differentiated in θ by the score identity over the
        # same noise (the perturbed optimizer's JVP), without solving again
        if self.p.multiplicative:
            return residuals
        grad, ys = residuals
        return (apply_op(SampleMeanOp(self.p), inputs[0], inputs[1], ys), ys)


@dataclass(frozen=True)
class SampleMeanOp(PerturbedOp):
    """``(θ, Z, Y) -> mean(Y)`` for given solver outputs ``Y_m = y*(θ + εZ_m)``, with the
    perturbed optimizer's score-function derivative in θ (how a perturbed maximum's
    gradient is differentiated again)."""

    name: ClassVar[str] = "perturbed_samples"
    nondiff: ClassVar[tuple[int, ...]] = (1, 2)

    def forward(self, theta: Any, z: Any, ys: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        return xp.mean(ys, axis=0), (ys, z)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return (*super().vjp(residuals, g, xp=xp), None)


def _check_solver_output(ys: Any, eta: Any, event_ndim: int) -> None:
    lead = tuple(eta.shape[: eta.ndim - event_ndim])
    if tuple(ys.shape[: len(lead)]) != lead:
        raise ValueError(
            f"the solver must keep the batch axes {lead[1:]} of theta (shape {tuple(eta.shape[1:])}, "
            f"event_ndim={event_ndim}), got an output of shape {tuple(ys.shape[1:])} per sample"
        )


# ---------------------------------------------------------------------------------
# Factories
# ---------------------------------------------------------------------------------
def make_perturbation(
    solver: Callable[..., Any],
    *,
    sigma: float,
    num_samples: int,
    noise: str | Noise,
    multiplicative: bool,
    antithetic: bool,
    chunk_size: int | None,
    event_ndim: int | None,
    require_score: bool = True,
) -> Perturbation:
    """Validate the static configuration shared by the perturbed ops and losses."""
    check_callable_solver(solver)
    sigma = check_positive(sigma, name="sigma")
    num_samples = check_int(num_samples, name="num_samples", low=1)
    law = get_noise(noise)
    multiplicative = check_flag(multiplicative, name="multiplicative")
    antithetic = check_flag(antithetic, name="antithetic")
    if require_score and not law.has_score:
        raise ValueError(
            f"noise={law.name!r} has no closed-form score, which the perturbed estimators need "
            "(use dopt_core.imle for sum-of-gamma noise)"
        )
    if multiplicative and law.name != "normal":
        raise ValueError(f"multiplicative perturbation needs noise='normal', got noise={law.name!r}")
    if antithetic and not law.symmetric:
        raise ValueError(f"antithetic pairs (Z, -Z) need symmetric noise, and {law.name!r} is not")
    if antithetic and num_samples % 2:
        raise ValueError(f"antithetic=True needs an even num_samples, got {num_samples}")
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, name="chunk_size", low=1)
    solver, event_ndim = instance_solver(solver, event_ndim)
    return Perturbation(solver, float(sigma), law, num_samples, multiplicative, antithetic, chunk_size, event_ndim)


def perturbed(
    solver: Callable[..., Any],
    *,
    sigma: float = 1.0,
    num_samples: int = 10,
    noise: str | Noise = "normal",
    multiplicative: bool = False,
    control_variate: bool = False,
    antithetic: bool = False,
    chunk_size: int | None = None,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""The perturbed optimizer :math:`\theta \mapsto y_\varepsilon(\theta)` of ``solver``.

    Parameters
    ----------
    solver : callable
        A batched oracle, ``(..., *event) -> (..., *out)`` (any dopt solver, or
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your
        own).
    sigma : float
        Noise scale ε > 0.
    num_samples : int
        Monte-Carlo samples M.
    noise : {"normal", "gumbel"} or Noise
        Law of Z (module docstring).
    multiplicative : bool
        Use :math:`\theta \odot e^{\varepsilon Z - \varepsilon^2/2}` (Normal noise, θ ≠ 0).
    control_variate : bool
        Subtract :math:`\langle y^*(\theta), g\rangle` in the VJP (one extra problem,
        solved in the same call).
    antithetic : bool
        Use pairs (Z, -Z) (symmetric noise, even ``num_samples``).
    chunk_size : int, optional
        At most this many samples per solver call.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).
        A solver that declares none (a plain function) is checked on first use to
        solve each row on its own (``ValueError`` otherwise, saying how to pass
        ``event_ndim``).

    Returns
    -------
    f(theta, *, rng=None, noise=None)
        ``rng``: the backend's generator (NumPy ``Generator``, ``torch.Generator``, JAX
        key), an int seed, or a NumPy ``Generator`` for any backend. ``noise``: the
        pre-drawn standard noise of shape ``(num_samples, *theta.shape)``, used as is.
        Differentiable in every framework; ``dopt_core.value_and_vjp(f, theta, rng=0)``
        gives the explicit estimator.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> f = dc.perturbed(dc.solvers.argmax, sigma=1.0, num_samples=20000, noise="gumbel")
    >>> theta = np.array([0.0, 1.0, 2.0])
    >>> softmax = np.exp(theta) / np.exp(theta).sum()   # [0.090, 0.245, 0.665]
    >>> bool(np.abs(f(theta, rng=0) - softmax).max() < 0.01)   # Monte-Carlo error ~0.003
    True
    """
    p = make_perturbation(
        solver, sigma=sigma, num_samples=num_samples, noise=noise, multiplicative=multiplicative,
        antithetic=antithetic, chunk_size=chunk_size, event_ndim=event_ndim,
    )
    op = PerturbedOp(p, check_flag(control_variate, name="control_variate"))

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
        return Bound(op, (theta, z), out_dtype)

    f = op_function(bind, name=f"perturbed({solver_name(solver)})", doc=perturbed.__doc__)
    f.perturbation = p  # type: ignore[attr-defined]
    return f


def perturbed_max(
    solver: Callable[..., Any],
    *,
    sigma: float = 1.0,
    num_samples: int = 10,
    noise: str | Noise = "normal",
    multiplicative: bool = False,
    antithetic: bool = False,
    chunk_size: int | None = None,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""The perturbed maximum :math:`F_\varepsilon(\theta) = \mathbb E \max_y \langle y, \theta + \varepsilon Z\rangle`.

    Returns ``F(theta, *, rng=None, noise=None)`` of shape ``theta.shape[:-event_ndim]``
    (one value per instance), estimated by :math:`\frac1M\sum_m \langle y^*(\eta_m), \eta_m\rangle`,
    with gradient :math:`y_\varepsilon(\theta) \approx \frac1M\sum_m y^*(\eta_m)` (no
    score function needed: Danskin's theorem). Multiplicative: gradient
    :math:`\frac1M\sum_m y^*(\eta_m) \odot e^{\varepsilon Z_m - \varepsilon^2/2}`.
    The solver must be a linear oracle (output shaped like θ). Parameters as in
    :func:`perturbed`.

    With Gumbel noise and ``argmax``, :math:`F_\varepsilon(\theta) = \varepsilon
    \operatorname{logsumexp}(\theta/\varepsilon) + \varepsilon\gamma` exactly.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    sigma : float
        Noise scale ε > 0.
    num_samples : int
        Monte-Carlo samples M.
    noise : {"normal", "gumbel"} or Noise
        Law of Z.
    multiplicative : bool
        Multiplicative perturbation (Normal noise, θ ≠ 0).
    antithetic : bool
        Use pairs (Z, -Z) (symmetric noise, even ``num_samples``).
    chunk_size : int, optional
        At most this many samples per solver call.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> F = dc.perturbed_max(dc.solvers.argmax, sigma=1.0, num_samples=50000, noise="gumbel")
    >>> theta = np.array([0.0, 1.0, 2.0])
    >>> round(float(F(theta, rng=0)), 1)   # logsumexp(theta) + 0.5772 = 2.98
    3.0
    """
    p = make_perturbation(
        solver, sigma=sigma, num_samples=num_samples, noise=noise, multiplicative=multiplicative,
        antithetic=antithetic, chunk_size=chunk_size, event_ndim=event_ndim,
    )
    op = PerturbedMaxOp(p)

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
        return Bound(op, (theta, z), out_dtype)

    f = op_function(bind, name=f"perturbed_max({solver_name(solver)})", doc=perturbed_max.__doc__)
    f.perturbation = p  # type: ignore[attr-defined]
    return f
