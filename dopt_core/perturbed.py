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

import numpy as np

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
from ._lib._scatter import first_argmax, one_hot_sum
from .backend import apply_op, backend_for, numpy_generator
from .noise import STANDARD_EXPONENTIAL, Gumbel, Noise, get_noise, gumbel_from_exponential
from .op import Bound, Op, OpFunction, op_function
from .solvers import argmax

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
    def bind_theta_noise(self, theta: Any, rng: Any, noise: Any, *, law: Noise | None = None) -> tuple[Any, Any, Any]:
        """Validate θ and draw (or validate) the standard noise ``(M, *θ.shape)`` (of
        ``law`` when given, else of ``self.noise``)."""
        theta, xp, out_dtype = check_scores(theta, min_ndim=self.event_ndim)
        backend = backend_for(theta)
        z = bind_noise(
            theta, rng, noise, law=self.noise if law is None else law, sample_shape=(self.num_samples,),
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
    #: the noise input is ``E ~ Exp(1)`` and ``Z = -log E`` is standard Gumbel (draws by
    #: the backend's own generator): the score ``1 - e^{-Z}`` is then ``1 - E``
    exponential_noise: bool = False
    name: ClassVar[str] = "perturbed"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p, m = self.p, z.shape[0]
        noise = z  # the op's input: Z, or E ~ Exp(1) with Z = -log E (exponential_noise)
        if self.exponential_noise:
            z = gumbel_from_exponential(noise, backend=backend_for(noise))
        eta, _ = p.perturb(theta, z, xp=xp)
        if self.indexed and _finite_or_unknown(eta):
            # argmax: the samples are one-hot, so keep their indices (M, *batch) and
            # average them as a histogram (equal to the mean of the one-hot rows)
            idx = first_argmax(eta, xp=xp)
            y = one_hot_sum(idx, theta.shape[-1], like=theta, xp=xp) / m
            residuals = (idx, noise)
            residuals += (xp.argmax(theta, axis=-1),) if self.control_variate else ()
            residuals += (theta,) if p.multiplicative else ()
            return y, residuals
        if self.control_variate:  # θ itself rides along as one more problem in the same call
            ys = p.solve(xp.concat([eta, xp.expand_dims(theta, axis=0)], axis=0), xp=xp)
            ys, y0 = ys[:m, ...], ys[m, ...]
        else:
            ys, y0 = p.solve(eta, xp=xp), None
        ys = xp.astype(ys, theta.dtype)
        _check_solver_output(ys, eta, p.event_ndim)
        residuals = (ys, noise) + ((xp.astype(y0, theta.dtype),) if y0 is not None else ())
        residuals += (theta,) if p.multiplicative else ()
        return xp.mean(ys, axis=0), residuals

    @property
    def indexed(self) -> bool:
        """Whether the samples are kept as arg-max indices (the solver is ``argmax``)."""
        return self.p.solver is argmax and self.p.event_ndim == 1

    def score(self, noise: Any, *, xp: Any) -> Any:
        """:math:`\\nabla\\nu(Z)` (``Z`` itself when multiplicative); from ``E`` directly,
        :math:`1 - e^{-Z} = 1 - E`, when the input is exponential (no ``exp`` pass)."""
        if self.exponential_noise:
            return 1.0 - noise
        return noise if self.p.multiplicative else self.p.noise.grad_nu(noise, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        p = self.p
        ys, z = residuals[0], residuals[1]
        m = ys.shape[0]
        if _is_index(ys, xp):  # <e_i, g> = g[i]: a gather instead of a product and a sum
            r = xp.take_along_axis(xp.expand_dims(g, axis=0), xp.expand_dims(ys, axis=-1), axis=-1)[..., 0]
            if self.control_variate:
                r = r - xp.take_along_axis(g, xp.expand_dims(residuals[2], axis=-1), axis=-1)[..., 0]
        else:
            n_batch = z.ndim - 1 - p.event_ndim
            out_axes = tuple(range(1 + n_batch, ys.ndim))
            r = xp.sum(ys * g, axis=out_axes)  # <y*(η_m), g> per sample and instance: (M, *batch)
            if self.control_variate:
                y0 = residuals[2]
                r = r - xp.sum(y0 * g, axis=tuple(a - 1 for a in out_axes))
        r = xp.reshape(r, (*r.shape, *([1] * p.event_ndim)))
        grad = xp.sum(r * self.score(z, xp=xp), axis=0) / (m * p.sigma)
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
        s = xp.sum(self.score(z, xp=xp) * u, axis=p.event_axes(z.ndim))  # (M, *batch)
        if _is_index(ys, xp):  # Σ_m e_{i_m} s_m: a weighted histogram of the indices
            n = u.shape[-1]
            out = one_hot_sum(ys, n, like=u, weights=s, xp=xp)
            if self.control_variate:
                y0 = one_hot_sum(xp.expand_dims(residuals[2], axis=0), n, like=u, xp=xp)
                out = out - y0 * xp.expand_dims(xp.sum(s, axis=0), axis=-1)
            return out / (m * p.sigma)
        n_out = ys.ndim - s.ndim
        s = xp.reshape(s, (*s.shape, *([1] * n_out)))
        if self.control_variate:
            ys = ys - residuals[2]
        return xp.sum(ys * s, axis=0) / (m * p.sigma)


def _is_index(ys: Any, xp: Any) -> bool:
    """Residual samples stored as arg-max indices (solver outputs are floating)."""
    return not xp.isdtype(ys.dtype, "real floating")


def _finite_or_unknown(eta: Any) -> bool:
    # argmax refuses non-finite scores: let it raise its own error (the solver path);
    # values that cannot be read now (tracers, meta tensors) are not checked, as there
    backend = backend_for(eta)
    return backend.is_traced(eta) or backend.all_finite(eta) is not False


@dataclass(frozen=True)
class GumbelArgmaxRaoBlackwellOp(Op):
    r"""``(θ, Z) -> ŷ``: the perturbed arg-max under Gumbel noise with the Rao-Blackwellised
    VJP (``perturbed(argmax, noise="gumbel", rao_blackwell=True)``).

    ``Z`` is the given standard Gumbel noise (``from_noise``; the samples are
    ``argmax(θ + εZ_m)``) or the sample counts per entry, drawn from
    :math:`\operatorname{Multinomial}(M, p)`, :math:`p = \operatorname{softmax}(\theta/\varepsilon)`
    (the law of the Gumbel arg-max, without its ``M × n`` noise). ``ŷ`` = counts / M.

    The score-function estimator averages :math:`g_{i_m}\nabla\nu(Z_m)/\varepsilon`
    (:math:`i_m` the sample's arg-max); conditioning each term on :math:`i_m` (Gumbel-max
    properties: given the arg-max :math:`i`, the maximum is Gumbel with location
    :math:`\log\sum_j e^{\theta_j/\varepsilon}` and the other entries are Gumbels
    truncated below it) gives :math:`\mathbb E[1 - e^{-Z_j} \mid i] = [j = i] - p_j`, so

    .. math::

        J^\top g \approx \frac{1}{M\varepsilon}\sum_m (g_{i_m} - b)(e_{i_m} - p)
            = \frac{1}{\varepsilon}\bigl(\hat y \odot (g - b) - \langle \hat y, g - b\rangle\, p\bigr),

    with the same mean :math:`(\operatorname{diag}(p) - pp^\top)g/\varepsilon` (the
    exact Jacobian of :math:`y_\varepsilon = p`) and no larger variance (Rao-Blackwell
    theorem); ``b`` is the control variate :math:`g_{i_0}`, :math:`i_0 = \operatorname{argmax}\theta`
    (or 0). See Berthet et al. (2020) for the estimator and e.g. G. Papandreou and
    A. Yuille, *Perturb-and-MAP random fields* (ICCV 2011) and C. Maddison, D. Tarlow,
    T. Minka, *A* sampling* (NeurIPS 2014) for the Gumbel-max properties used.
    """

    p: Perturbation
    control_variate: bool = False
    from_noise: bool = True
    name: ClassVar[str] = "perturbed"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def forward(self, theta: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p, m, n = self.p, self.p.num_samples, theta.shape[-1]
        if self.from_noise:
            eta, _ = p.perturb(theta, z, xp=xp)
            if not _finite_or_unknown(eta):
                p.solve(eta, xp=xp)  # argmax raises its error on non-finite scores
            counts = one_hot_sum(first_argmax(eta, xp=xp), n, like=theta, xp=xp)
        else:
            counts = xp.astype(z, theta.dtype)
        y = counts / m
        residuals = (y, gumbel_argmax_probabilities(theta, p.sigma, xp=xp))
        residuals += (xp.argmax(theta, axis=-1),) if self.control_variate else ()
        return y, residuals

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        y, prob = residuals[0], residuals[1]
        if self.control_variate:
            g = g - xp.take_along_axis(g, xp.expand_dims(residuals[2], axis=-1), axis=-1)
        yg = y * g
        return (yg - xp.sum(yg, axis=-1, keepdims=True) * prob) / self.p.sigma, None

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # the transpose of the VJP: J u = (ŷ ⊙ u - ŷ <p, u>)/ε, then (I - e_{i0} 1ᵀ)
        u = tangents[0]
        if u is None:
            return None
        y, prob = residuals[0], residuals[1]
        v = (y * u - y * xp.sum(prob * u, axis=-1, keepdims=True)) / self.p.sigma
        if self.control_variate:
            e0 = one_hot_sum(xp.expand_dims(residuals[2], axis=0), u.shape[-1], like=u, xp=xp)
            v = v - e0 * xp.sum(v, axis=-1, keepdims=True)
        return v


def gumbel_argmax_probabilities(theta: Any, sigma: float, *, xp: Any) -> Any:
    r""":math:`p = \operatorname{softmax}(\theta/\varepsilon)` over the last axis: the law of
    :math:`\operatorname{argmax}(\theta + \varepsilon G)` for standard Gumbel :math:`G`.

    Parameters
    ----------
    theta : array
        Scores ``(..., n)``.
    sigma : float
        Noise scale ε.
    xp : namespace
        ``theta``'s namespace.

    Example
    -------
    >>> import numpy as np
    >>> gumbel_argmax_probabilities(np.array([0.0, np.log(3.0)]), 1.0, xp=np).round(3)
    array([0.25, 0.75])
    """
    a = theta / sigma
    w = xp.exp(a - xp.max(a, axis=-1, keepdims=True))
    return w / xp.sum(w, axis=-1, keepdims=True)


def gumbel_argmax_counts(theta: Any, sigma: float, num_samples: int, rng: Any) -> Any:
    r"""Counts ``(..., n)`` of :math:`M` arg-max samples of :math:`\theta + \varepsilon G`
    (standard Gumbel :math:`G`), drawn as :math:`\operatorname{Multinomial}(M, p)` with
    :func:`gumbel_argmax_probabilities` (the same law; ``M × batch`` uniforms, or one
    multinomial per instance, instead of ``M × batch × n`` Gumbels). Of ``theta``'s dtype.

    A NumPy ``Generator`` (or NumPy arrays) draws on the host (``Generator.multinomial``);
    a backend with a ``categorical_counts(rng, prob, num_samples, like)`` method (torch:
    ``torch.multinomial``) draws natively; otherwise by inversion of the CDF with the
    backend's uniforms.

    Parameters
    ----------
    theta : array
        Scores ``(..., n)``.
    sigma : float
        Noise scale ε.
    num_samples : int
        M.
    rng
        As for :func:`perturbed`.

    Example
    -------
    >>> import numpy as np
    >>> c = gumbel_argmax_counts(np.array([0.0, 1.0, 2.0]), 1.0, 20000, 0)
    >>> bool(c.sum() == 20000), bool(np.abs(c / 20000 - [0.090, 0.245, 0.665]).max() < 0.01)
    (True, True)
    """
    backend = backend_for(theta)
    xp = backend.namespace(theta)
    prob = gumbel_argmax_probabilities(theta, sigma, xp=xp)
    hook = getattr(backend, "categorical_counts", None)
    if backend.draws_on_host(rng) or (hook is None and isinstance(theta, np.ndarray)):
        if backend.is_traced(prob):
            raise ValueError("rao_blackwell=True draws from a NumPy Generator on the host: under tracing pass the backend's own rng")
        p64 = np.asarray(backend.to_numpy(prob), dtype=np.float64)
        counts = numpy_generator(rng).multinomial(num_samples, p64 / p64.sum(axis=-1, keepdims=True))
        return backend.from_numpy(counts.astype(p64.dtype if theta.dtype == np.float64 else np.float32), like=theta)
    if hook is not None:
        return hook(rng, prob, num_samples, theta)
    u = backend.draw(rng, "uniform", (num_samples, *theta.shape[:-1]), like=theta)
    cdf = xp.cumulative_sum(prob, axis=-1)
    below = xp.expand_dims(cdf[..., :-1], axis=0) <= xp.expand_dims(u * cdf[..., -1], axis=-1)
    idx = xp.sum(xp.astype(below, xp.int32), axis=-1)  # entries of the CDF below u: in [0, n)
    return one_hot_sum(idx, theta.shape[-1], like=theta, xp=xp)


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


def _draws_exponential(p: Perturbation, theta: Any, rng: Any, noise: Any) -> bool:
    """Whether a call draws Gumbel noise with the backend's own generator, where the op
    can take the exponential draws ``E`` themselves (``Z = -log E`` computed inside by
    the same function as :meth:`Gumbel.draw_with`: the same ``Z``). Host draws (a NumPy
    ``Generator``, or NumPy arrays) keep the whole law drawn on the host."""
    if noise is not None or type(p.noise) is not Gumbel or p.antithetic or p.multiplicative:
        return False
    try:
        backend = backend_for(theta)
    except Exception:  # not an array: bind_theta_noise raises its error
        return False
    return not backend.draws_on_host(rng)


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
    rao_blackwell: bool = False,
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
    rao_blackwell : bool
        ``solver=argmax`` with ``noise="gumbel"`` only: the VJP conditional on each
        sample's arg-max, :math:`(\hat y \odot g - \langle \hat y, g\rangle p)/\varepsilon`
        with :math:`p = \operatorname{softmax}(\theta/\varepsilon)` (unbiased, lower
        variance; :class:`GumbelArgmaxRaoBlackwellOp`). Without ``noise=``, the arg-max
        samples are drawn from their law directly (:func:`gumbel_argmax_counts`): the
        values follow the same law as without this option, but are other draws.

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
    op_e = PerturbedOp(p, op.control_variate, exponential_noise=True)
    if check_flag(rao_blackwell, name="rao_blackwell"):
        return _rao_blackwell_function(p, op.control_variate, solver)

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        if _draws_exponential(p, theta, rng, noise):  # Z = -log E inside the op (same values)
            theta, e, out_dtype = p.bind_theta_noise(theta, rng, None, law=STANDARD_EXPONENTIAL)
            return Bound(op_e, (theta, e), out_dtype)
        theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
        return Bound(op, (theta, z), out_dtype)

    f = op_function(bind, name=f"perturbed({solver_name(solver)})", doc=perturbed.__doc__)
    f.perturbation = p  # type: ignore[attr-defined]
    return f


def _rao_blackwell_function(p: Perturbation, control_variate: bool, solver: Any) -> OpFunction:
    if p.solver is not argmax or p.event_ndim != 1:
        raise ValueError(f"rao_blackwell=True needs solver=dopt_core.solvers.argmax, got {solver_name(solver)}")
    if type(p.noise) is not Gumbel:
        raise ValueError(f"rao_blackwell=True needs noise='gumbel', got noise={p.noise.name!r}")
    if p.multiplicative:
        raise ValueError("rao_blackwell=True does not apply to multiplicative perturbation")
    from_noise = GumbelArgmaxRaoBlackwellOp(p, control_variate, from_noise=True)
    from_counts = GumbelArgmaxRaoBlackwellOp(p, control_variate, from_noise=False)

    def bind(theta: Any, *, rng: Any = None, noise: Any = None) -> Bound:
        if noise is not None:
            theta, z, out_dtype = p.bind_theta_noise(theta, rng, noise)
            return Bound(from_noise, (theta, z), out_dtype)
        theta, _, out_dtype = check_scores(theta, min_ndim=1)
        return Bound(from_counts, (theta, gumbel_argmax_counts(theta, p.sigma, p.num_samples, rng)), out_dtype)

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
