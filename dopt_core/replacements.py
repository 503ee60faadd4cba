r"""Gradient replacements: exact solvers forward, a surrogate Jacobian backward.

All in score form (θ is maximised; ``θ = -cost``). With ``g = ∂L/∂y`` the cotangent
of the solver's output:

* :func:`identity` (Sahoo et al., 2023) — forward :math:`y^*(P(\theta) + \xi)`,
  backward :math:`J_P^\top g`: the solver is treated as the identity. In cost form
  this is the paper's "negative identity" :math:`-g`.
* :func:`interpolation` (Vlastelica et al., 2020) — forward :math:`y^*(\theta)`,
  backward :math:`\bigl(y^*(\theta) - y^*(\theta - \lambda g)\bigr)/\lambda`, the
  gradient of the piecewise-affine interpolation :math:`f_\lambda` of the loss. (Cost
  form: :math:`-(y(\omega) - y(\omega + \lambda g))/\lambda`; PyEPO's ``blackboxOpt``
  for a maximisation model uses the same perturbation direction after its sign fix.)
* :func:`straight_through` — forward :math:`y^*(\theta)`, backward the VJP of a chosen
  smooth relaxation at θ (softmax for argmax, a sorting network for sorting, a
  perturbed optimizer with fixed noise, …).
* :func:`imle` (Niepert et al., 2021) — forward the perturb-and-MAP average
  :math:`\frac1M\sum_m y^*(\theta + \sigma\varepsilon_m)`; backward the finite
  difference towards the target distribution :math:`\theta' = \theta - \lambda g`,
  :math:`\frac1M\sum_m \bigl(y^*(\theta + \sigma\varepsilon_m) - y^*(\theta' +
  \sigma\varepsilon_m)\bigr)/\lambda` with the same noise in both solves, or the two-sided
  :math:`\frac1M\sum_m\bigl(y^*(\theta + \lambda g + \sigma\varepsilon_m) -
  y^*(\theta - \lambda g + \sigma\varepsilon_m)\bigr)/(2\lambda)`. Default noise:
  sum-of-Gamma (:class:`dopt_core.noise.SumOfGamma`).

Every estimator here passes the sign check (``tests/test_replacements.py``): on a toy
instance whose decision is wrong, a small step along minus the estimated gradient
lowers the downstream loss.

References
----------
S. S. Sahoo et al. *Backpropagation through combinatorial algorithms: identity with
projection works.* ICLR 2023. M. Vlastelica, A. Paulus, V. Musil, G. Martius, M.
Rolínek. *Differentiation of blackbox combinatorial solvers.* ICLR 2020. M. Niepert,
P. Minervini, L. Franceschi. *Implicit MLE: backpropagating through discrete
exponential family distributions.* NeurIPS 2021.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import (
    check_callable_solver,
    check_flag,
    check_nonnegative,
    check_positive,
    check_scores,
    instance_solver,
    solver_name,
)
from ._lib._random import bind_noise
from .noise import Noise, get_noise, sum_of_gamma_law
from .op import Bound, Op, OpFunction, op_function
from .perturbed import Perturbation, make_perturbation
from .projections import check_projection, project_forward, project_vjp

__all__ = ["identity", "imle", "interpolation", "straight_through"]


def _check_same_shape(y: Any, theta: Any, what: str) -> None:
    if tuple(y.shape) != tuple(theta.shape):
        raise ValueError(
            f"{what} needs a solver whose output has theta's shape {tuple(theta.shape)}, "
            f"got {tuple(y.shape)}"
        )


# ---------------------------------------------------------------------------------
# identity with projection
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class IdentityOp(Op):
    solver: Callable[..., Any]
    projection: str | None = None
    noise_sigma: float = 0.0
    event_ndim: int = 1
    noisy: bool = False  # inputs (θ, ξ) rather than (θ,)
    name: ClassVar[str] = "identity"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, *noise: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p, residuals = project_forward(theta, self.projection, event_ndim=self.event_ndim, xp=xp)
        if noise:
            p = p + self.noise_sigma * noise[0]
        y = xp.astype(self.solver(p), theta.dtype)
        _check_same_shape(y, theta, "identity")
        return y, residuals

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        grad = project_vjp(residuals, g, self.projection, event_ndim=self.event_ndim, xp=xp)
        return (grad, None) if self.noisy else (grad,)


def identity(
    solver: Callable[..., Any],
    *,
    projection: str | None = None,
    noise: str | Noise | None = None,
    noise_sigma: float = 0.0,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""Identity backward pass with an optional projection and optional noise.

    Returns ``f(theta, *, rng=None, noise=None)`` computing :math:`y^*(P(\theta) + \xi)`
    with :math:`\xi` = ``noise_sigma`` × a draw of the ``noise`` law — only when ``rng``
    or a pre-drawn ``noise`` array (shaped like θ) is given, i.e. while training;
    without them the layer is deterministic (evaluation). The backward pass is
    :math:`J_P(\theta)^\top g` (:mod:`dopt_core.projections`). The solver must be a
    linear oracle (output shaped like θ).

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    projection : {None, "mean", "norm", "standardize"}
        The projection ``P`` applied to θ before the solver and in the backward pass.
    noise : {"normal", "gumbel", "sum_of_gamma"}, Noise or None
        Law of the training noise ξ (``None``: no noise).
    noise_sigma : float
        Scale of ξ (> 0 when ``noise`` is given).
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> f = dc.identity(dc.solvers.argmax, projection="mean")
    >>> y, vjp = dc.value_and_vjp(f, np.array([1.0, 3.0, 2.0]))
    >>> y, vjp(np.array([1.0, 0.0, -4.0]))
    (array([0., 1., 0.]), array([ 2.,  1., -3.]))
    """
    check_callable_solver(solver)
    projection = check_projection(projection)
    law = None if noise is None else get_noise(noise)
    noise_sigma = check_nonnegative(noise_sigma, name="noise_sigma")
    if noise_sigma > 0 and law is None:
        raise ValueError("noise_sigma > 0 needs a noise law (noise='normal', 'gumbel' or 'sum_of_gamma')")
    checked, nd = instance_solver(solver, event_ndim)
    op = IdentityOp(checked, projection, noise_sigma, nd)
    noisy_op = IdentityOp(checked, projection, noise_sigma, nd, noisy=True)

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        theta, _, out_dtype = check_scores(theta, min_ndim=nd)
        if noise is not None and rng is not None:
            raise ValueError("pass either rng or noise, not both")
        if rng is None and noise is None:
            return Bound(op, (theta,), out_dtype)
        if law is None or noise_sigma == 0:
            raise ValueError(
                "this identity layer adds no noise (build it with noise=... and noise_sigma > 0); "
                "do not pass rng or noise to it"
            )
        xi = bind_noise(theta, rng, noise, law=law)
        return Bound(noisy_op, (theta, xi), out_dtype)

    return op_function(bind, name=f"identity({solver_name(solver)})", doc=identity.__doc__)


# ---------------------------------------------------------------------------------
# blackbox interpolation
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class InterpolationOp(Op):
    solver: Callable[..., Any]
    lam: float = 10.0
    name: ClassVar[str] = "interpolation"

    def forward(self, theta: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        y = xp.astype(self.solver(theta), theta.dtype)
        _check_same_shape(y, theta, "interpolation")
        return y, (theta, y)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        theta, y = residuals
        y_lam = xp.astype(self.solver(theta - self.lam * g), theta.dtype)  # one extra batched solve
        return ((y - y_lam) / self.lam,)


def interpolation(solver: Callable[..., Any], *, lam: float = 10.0) -> OpFunction:
    r"""Blackbox differentiation: :math:`\nabla_\theta \approx (y^*(\theta) - y^*(\theta - \lambda g))/\lambda`.

    ``lam`` (λ > 0) trades faithfulness (small λ: the true, a.e. zero gradient) for
    informativeness (large λ). One extra solver call per backward pass, batched.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    lam : float
        Interpolation step λ > 0.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> f = dc.interpolation(dc.solvers.argmax, lam=10.0)
    >>> y, vjp = dc.value_and_vjp(f, np.array([1.0, 0.0, 0.0]))
    >>> vjp(np.array([2.0, -2.0, 0.0]))      # L = |y - e_2|^2: move mass from item 0 to 1
    array([ 0.1, -0.1,  0. ])
    """
    op = InterpolationOp(check_callable_solver(solver), check_positive(lam, name="lam"))

    def bind(theta: Any) -> Bound:
        theta, _, out_dtype = check_scores(theta)
        return Bound(op, (theta,), out_dtype)

    return op_function(
        bind, name=f"interpolation({solver_name(solver)})", doc=interpolation.__doc__
    )


# ---------------------------------------------------------------------------------
# straight-through
# ---------------------------------------------------------------------------------
def _unwrap_relaxation(
    relaxation: Callable[..., Any],
) -> tuple[OpFunction, tuple[Any, ...], dict[str, Any]]:
    """``(dopt function, args, kwargs)`` of a dopt function or a ``functools.partial`` of one."""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    f = relaxation
    while isinstance(f, functools.partial):
        args, kwargs = f.args + args, {**f.keywords, **kwargs}
        f = f.func
    if not isinstance(f, OpFunction):
        raise TypeError(
            "relaxation must be a dopt function (e.g. dopt_core.relax.softmax) or a functools.partial "
            f"of one, got {type(relaxation).__name__}"
        )
    return f, args, kwargs


def _bind_relaxation(relaxation: Callable[..., Any], theta: Any) -> Bound:
    """Bind a dopt function (or a ``functools.partial`` of one) to ``theta``."""
    f, args, kwargs = _unwrap_relaxation(relaxation)
    return f.bind(theta, *args, **kwargs)


@dataclass(frozen=True)
class StraightThroughOp(Op):
    """Inputs ``(θ, *the relaxation's other inputs)``; the relaxation's Op is bound once."""

    solver: Callable[..., Any]
    relaxation: Op
    name: ClassVar[str] = "straight_through"

    def forward(self, theta: Any, *extra: Any, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        y = xp.astype(self.solver(theta), theta.dtype)
        soft, residuals = self.relaxation.forward(theta, *extra, xp=xp)
        if tuple(soft.shape) != tuple(y.shape):
            raise ValueError(
                f"the relaxation's output shape {tuple(soft.shape)} differs from the solver's {tuple(y.shape)}"
            )
        return y, residuals

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        grads = self.relaxation.vjp(residuals, g, xp=xp)
        return (grads[0], *([None] * (len(grads) - 1)))


def straight_through(solver: Callable[..., Any], relaxation: Callable[..., Any]) -> OpFunction:
    """Exact solver forward, the relaxation's VJP backward.

    ``relaxation`` is a dopt function with the solver's output shape, or a
    ``functools.partial`` binding its parameters (e.g.
    ``functools.partial(dc.relax.softmax, tau=0.5)``). It is bound once per call, so a
    stochastic relaxation draws its noise once; its other array inputs receive no
    gradient.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    relaxation : callable
        The dopt function whose VJP is the backward pass (e.g. :func:`dopt_core.relax.softmax`).

    Example
    -------
    >>> import functools, numpy as np, dopt_core as dc
    >>> f = dc.straight_through(dc.solvers.argmax, functools.partial(dc.relax.softmax, tau=0.5))
    >>> y, vjp = dc.value_and_vjp(f, np.array([0.0, 2.0, 1.0]))
    >>> y                                                   # exact forward
    array([0., 1., 0.])
    """
    check_callable_solver(solver)
    _unwrap_relaxation(relaxation)  # refuse a non-dopt relaxation now, not at the first call

    def bind(theta: Any) -> Bound:
        theta, _, out_dtype = check_scores(theta)
        relaxed = _bind_relaxation(relaxation, theta)
        op = StraightThroughOp(solver, relaxed.op)
        return Bound(op, (relaxed.inputs[0], *relaxed.inputs[1:]), out_dtype)

    return op_function(
        bind, name=f"straight_through({solver_name(solver)})", doc=straight_through.__doc__
    )


# ---------------------------------------------------------------------------------
# I-MLE
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class IMLEOp(Op):
    p: Perturbation
    lam: float = 10.0
    two_sided: bool = False
    name: ClassVar[str] = "imle"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        eta, _ = self.p.perturb(theta, z, xp=xp)
        ys = xp.astype(self.p.solve(eta, xp=xp), theta.dtype)
        if tuple(ys.shape) != tuple(eta.shape):  # name theta's shape, not the samples'
            _check_same_shape(ys[0, ...] if ys.shape[:1] == eta.shape[:1] else ys, theta, "imle")
        return xp.mean(ys, axis=0), (theta, z, ys)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        theta, z, ys = residuals
        m, step = z.shape[0], self.lam * xp.expand_dims(g, axis=0)
        eta, _ = self.p.perturb(theta, z, xp=xp)
        if self.two_sided:  # both targets in one batched call
            both = xp.astype(self.p.solve(xp.concat([eta + step, eta - step], axis=0), xp=xp), theta.dtype)
            diff = both[:m, ...] - both[m:, ...]
            return xp.mean(diff, axis=0) / (2 * self.lam), None
        target = xp.astype(self.p.solve(eta - step, xp=xp), theta.dtype)
        return xp.mean(ys - target, axis=0) / self.lam, None


def imle(
    solver: Callable[..., Any],
    *,
    lam: float = 10.0,
    num_samples: int = 1,
    noise: str | Noise = "sum_of_gamma",
    kappa: float = 5.0,
    num_terms: int = 10,
    sigma: float = 1.0,
    two_sided: bool = False,
    chunk_size: int | None = None,
    event_ndim: int | None = None,
) -> OpFunction:
    r"""Implicit maximum-likelihood estimation (module docstring for the math).

    Returns ``f(theta, *, rng=None, noise=None)``. ``noise`` (factory argument) is the
    law: ``"sum_of_gamma"`` (default, with ``kappa`` — set it to k for k-subset
    problems — and ``num_terms``), ``"gumbel"`` or ``"normal"``; ``sigma`` scales it
    (the temperature τ). ``noise=`` at call time takes pre-drawn standard noise of
    shape ``(num_samples, *theta.shape)``. ``lam`` is λ; ``two_sided`` uses the
    central difference. The solver must be a linear oracle.

    Parameters
    ----------
    solver : callable
        A batched oracle ``(..., *event) -> (..., *event)`` (a dopt solver, a
        ``functools.partial`` of one, or :func:`dopt_core.solvers.solver` around your own).
    lam : float
        Target step λ > 0.
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
        Central difference ``(y(θ + λg) - y(θ - λg)) / 2λ`` instead of the one-sided one.
    chunk_size : int, optional
        At most this many samples per solver call.
    event_ndim : int, optional
        Trailing axes of θ per instance; read from ``solver.event_ndim`` by default (1).

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> f = dc.imle(dc.solvers.argmax, lam=10.0, num_samples=1)
    >>> y, vjp = dc.value_and_vjp(f, np.array([5.0, 0.0, 0.0]), rng=0)
    >>> y, vjp(np.array([2.0, -2.0, 0.0]))      # the target moves the mass to item 1
    (array([1., 0., 0.]), array([ 0.1, -0.1,  0. ]))
    """
    law = sum_of_gamma_law(noise, kappa=kappa, num_terms=num_terms)
    p = make_perturbation(
        solver, sigma=sigma, num_samples=num_samples, noise=law, multiplicative=False,
        antithetic=False, chunk_size=chunk_size, event_ndim=event_ndim, require_score=False,
    )
    op = IMLEOp(p, check_positive(lam, name="lam"), check_flag(two_sided, name="two_sided"))

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
        return Bound(op, (theta, z), out_dtype)

    f = op_function(bind, name=f"imle({solver_name(solver)})", doc=imle.__doc__)
    f.perturbation = p  # type: ignore[attr-defined]  # its noise law, for testing.gradcheck
    return f
