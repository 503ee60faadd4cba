r"""Newton losses (Petersen, Borgelt, Sutter, Kuehne, Deussen & Ermon, NeurIPS 2024,
arXiv:2410.19055): curvature of the loss, in the network's output space only.

Training through a relaxed algorithm (a soft sort, a sorting network, a smoothed
shortest path) often fails not because the gradient is wrong but because the
algorithmic loss :math:`\ell(y)` is badly conditioned in the space of the network's
outputs :math:`y`. A Newton loss takes one damped Newton step on :math:`\ell` there,

.. math::

    z^\star_i = y_i - (C_i + \lambda I)^{-1} \nabla_{y_i} \ell(y_i),

and trains the network on the squared distance to that fixed target,

.. math::

    \ell^\star(y) = \tfrac12 \sum_i \lVert \mathrm{sg}(z^\star_i) - y_i \rVert^2,
    \qquad \nabla_{y_i} \ell^\star = (C_i + \lambda I)^{-1} \nabla_{y_i} \ell ,

with an ordinary first-order optimiser (sg: stop-gradient). The curvature
:math:`C_i` is either the per-sample :math:`m \times m` Hessian
:math:`\nabla^2_{y_i}\ell` (``mode="hessian"``) or the empirical Fisher matrix of the
batch, :math:`F = \frac1N \sum_i \nabla_{y_i}\ell\, \nabla_{y_i}\ell^\top`
(``mode="fisher"``: gradients only). Properties, each checked by the tests: for a
quadratic :math:`\ell = \frac12 (y - t)^\top A (y - t)` and :math:`\lambda = 0` the
Hessian target is :math:`t` exactly; as :math:`\lambda \to \infty` the gradient tends to
:math:`\nabla\ell / \lambda` (rescaled gradient descent); where :math:`\nabla\ell = 0`
the Newton loss's gradient is 0 too, so stationary points are unchanged.

:func:`newton_loss` computes the target from ``loss_fn`` and returns the loss;
:func:`newton_precondition` is the same transform applied to a gradient, for users who
keep their own loss and only want to precondition its VJP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._lib._checks import check_choice, check_nonempty_mean, check_nonnegative, check_scores
from ._lib._compat import device
from ._lib._reduce import REDUCTIONS, reduce_batch, reduced_vjp
from .backend import Backend, backend_for
from .op import Bound, Op, OpFunction, op_function, value_and_vjp

__all__ = ["newton_loss", "newton_precondition"]

MODES = ("hessian", "fisher")
HESSIAN_SOURCES = ("autodiff", "finite_differences")


# ---------------------------------------------------------------------------------
# the preconditioner
# ---------------------------------------------------------------------------------
def _damped_solve(g: Any, curvature: Any, lam: float, *, xp: Any) -> Any:
    """``(C + λI)^{-1} g`` for ``g (..., m)`` and ``C (m, m)`` or ``(..., m, m)``."""
    m = int(g.shape[-1])
    eye = xp.eye(m, dtype=g.dtype, device=device(g))
    a = curvature + lam * eye
    try:
        x = xp.linalg.solve(a, xp.expand_dims(g, axis=-1))[..., 0]
    except (ValueError, RuntimeError) as e:  # NumPy's LinAlgError, torch's
        raise ValueError(
            f"the damped curvature C + lam·I is singular (lam={lam}): increase lam ({e})"
        ) from None
    backend = backend_for(x)
    if not backend.is_traced(x) and backend.all_finite(x) is False:
        raise ValueError(
            f"the damped curvature C + lam·I is singular or the step overflows (lam={lam}): "
            "increase lam"
        )
    return x


def _check_curvature(curvature: Any, g: Any, *, name: str) -> Any:
    c, _, _ = check_scores(curvature, name=name, min_ndim=2)
    m = int(g.shape[-1])
    batch = tuple(g.shape[:-1])
    if tuple(c.shape[-2:]) != (m, m) or tuple(c.shape[:-2]) not in ((), batch):
        raise ValueError(
            f"{name} must have shape ({m}, {m}) (one matrix for the batch) or "
            f"{(*batch, m, m)} (one per sample), got {tuple(c.shape)}"
        )
    return c


def newton_precondition(g: Any, curvature: Any, lam: float) -> Any:
    r"""The damped Newton direction ``(C + λI)^{-1} g``, per sample.

    The gradient transform behind :func:`newton_loss`: applied to the gradient of a
    loss with respect to the network's outputs, it gives the gradient of the Newton
    loss, :math:`\nabla_{y_i}\ell^\star = (C_i + \lambda I)^{-1}\nabla_{y_i}\ell`.

    Parameters
    ----------
    g : array ``(..., m)``
        Per-sample gradients of the loss with respect to the outputs.
    curvature : array ``(m, m)`` or ``(..., m, m)``
        One matrix for the whole batch (an empirical Fisher matrix) or one per sample
        (Hessians). Not checked for symmetry or definiteness: with an indefinite
        Hessian and a small ``lam`` the direction may not be a descent direction.
    lam : float
        Tikhonov damping λ ≥ 0; ``lam → ∞`` gives ``g / lam``.

    Returns
    -------
    array ``(..., m)``
        The preconditioned gradients, like ``g``. ``ValueError`` when ``C + λI`` is
        singular (increase ``lam``).

    Example
    -------
    >>> import numpy as np
    >>> from dopt_core.losses import newton_precondition
    >>> H = np.array([[2.0, 0.0], [0.0, 4.0]])
    >>> newton_precondition(np.array([[2.0, 4.0]]), H, lam=0.0)
    array([[1., 1.]])
    """
    g, xp, out_dtype = check_scores(g, name="g", min_ndim=1)
    lam = check_nonnegative(lam, name="lam")
    c = _check_curvature(curvature, g, name="curvature")
    x = _damped_solve(g, xp.astype(c, g.dtype), lam, xp=xp)
    return x if out_dtype is None else xp.astype(x, out_dtype)


# ---------------------------------------------------------------------------------
# the loss: ½ Σ ‖sg(z*) − y‖²
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewtonLossOp(Op):
    """``(y, z) -> ½ Σ_event (y - z)²`` (reduced over the batch); the target ``z`` is
    constant (it receives no gradient), so the VJP is ``g · (y - z)``."""

    reduction: str = "sum"
    name: ClassVar[str] = "newton_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1,)
    second_order: ClassVar[bool] = True

    def forward(self, y: Any, z: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        d = y - z
        return reduce_batch(0.5 * xp.sum(d * d, axis=-1), d, self.reduction, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return reduced_vjp(residuals[0], g, self.reduction, 1, xp=xp), None

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        u = tangents[0]
        if u is None:
            return None
        per = xp.sum(residuals[0] * u, axis=-1)  # the stored gradient is already reduced
        return per if self.reduction == "none" else xp.sum(per)


def _has_autodiff(backend: Backend) -> bool:
    return type(backend).native_grad_hessian is not Backend.native_grad_hessian


def _check_values(values: Any, y: Any) -> None:
    batch = tuple(y.shape[:-1])
    if tuple(values.shape) != batch:
        raise ValueError(
            f"loss_fn must return one loss per sample, shape {batch} for y of shape "
            f"{tuple(y.shape)}, got shape {tuple(values.shape)} (use reduction='none')"
        )


def _explicit_gradients(loss_fn: Callable[..., Any], gradient: Any, y: Any) -> Callable[[Any], Any]:
    """``Y -> per-sample gradients`` without framework autodiff: the user's closure, or
    the explicit VJP of a dopt loss (any leading axes of ``Y`` are batch axes)."""
    if gradient is not None:
        return gradient
    if not isinstance(loss_fn, OpFunction):
        raise TypeError(
            f"loss_fn must be a dopt loss (an OpFunction, e.g. dopt_core.relax.permutation_loss "
            f"bound with functools.partial) for {type(y).__module__} arrays, which have no "
            f"automatic differentiation; got {type(loss_fn).__name__}. Pass gradient= (a "
            "function of y returning the per-sample gradients) or use torch/JAX arrays"
        )

    def grads(t: Any) -> Any:
        values, vjp = value_and_vjp(loss_fn, t)
        _check_values(values, t)
        xp = backend_for(values).namespace(values)
        return vjp(xp.ones_like(values))

    return grads


def _fd_hessian(grads: Callable[[Any], Any], y: Any, *, xp: Any) -> Any:
    """Per-sample Hessians by central differences of the gradient (``2m`` calls, each
    shifting one output of every sample), symmetrised. Step ``h = ε^{1/3}·max(1, ‖y_i‖_∞)``:
    error ``O(h²)`` (about ``1e-10`` relative in float64, ``1e-5`` in float32 for a
    smooth loss; exact up to rounding for a quadratic one)."""
    m = int(y.shape[-1])
    eps = float(xp.finfo(y.dtype).eps)
    scale = xp.max(xp.abs(y), axis=-1, keepdims=True)
    h = eps ** (1.0 / 3.0) * xp.maximum(scale, xp.ones_like(scale))  # (..., 1)
    eye = xp.eye(m, dtype=y.dtype, device=device(y))
    cols = []
    for j in range(m):  # one call per shift: loss_fn may hold arrays shaped like y (noise)
        step = eye[j, :] * h
        cols.append((_shaped_like(grads(y + step), y) - _shaped_like(grads(y - step), y)) / (2.0 * h))
    hess = xp.stack(cols, axis=-1)  # hess[..., :, j] = ∂g/∂y_j
    return 0.5 * (hess + xp.matrix_transpose(hess))


def _shaped_like(g: Any, y: Any) -> Any:
    if tuple(g.shape) != tuple(y.shape):
        raise ValueError(f"gradient must return an array shaped like y {tuple(y.shape)}, got {tuple(g.shape)}")
    return g


def _gradients_and_hessians(
    loss_fn: Callable[..., Any], y: Any, *, need_hessian: bool, source: str | None, gradient: Any,
) -> tuple[Any, Any]:
    """Per-sample gradients and, when asked, Hessians of ``loss_fn`` at ``y`` (no graph)."""
    backend = backend_for(y)
    xp = backend.namespace(y)
    native = gradient is None and _has_autodiff(backend)
    if source == "autodiff" and not native:
        raise ValueError(
            "hessian='autodiff' needs torch or JAX arrays and no gradient= closure; "
            "use hessian='finite_differences'"
        )
    if native and (source != "finite_differences" or not need_hessian):
        values, g, hess = backend.native_grad_hessian(loss_fn, y, hessian=need_hessian)
        _check_values(values, y)
        return g, hess
    y0 = backend.stop_gradient(y)
    grads = _explicit_gradients(loss_fn, gradient, y0) if not native else _native_grads(backend, loss_fn)
    g = _shaped_like(grads(y0), y)
    return g, (_fd_hessian(grads, y0, xp=xp) if need_hessian else None)


def _native_grads(backend: Backend, loss_fn: Callable[..., Any]) -> Callable[[Any], Any]:
    def grads(t: Any) -> Any:
        values, g, _ = backend.native_grad_hessian(loss_fn, t, hessian=False)
        _check_values(values, t)
        return g

    return grads


def _fisher(g: Any, *, xp: Any) -> Any:
    """``F = (1/N) Σ_i g_i g_iᵀ`` over every sample of the batch."""
    m = int(g.shape[-1])
    flat = xp.reshape(g, (-1, m))
    return xp.matmul(xp.matrix_transpose(flat), flat) / max(int(flat.shape[0]), 1)


def _bind(
    loss_fn: Callable[..., Any],
    y: Any,
    /,
    *,
    mode: str = "hessian",
    lam: float = 1.0,
    hessian: Any = None,
    gradient: Callable[[Any], Any] | None = None,
    reduction: str = "sum",
) -> Bound:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (a function of y), got {type(loss_fn).__name__}")
    y, xp, out_dtype = check_scores(y, name="y", min_ndim=1)
    if int(y.shape[-1]) == 0:
        raise ValueError(f"y must have at least one output per sample, got shape {tuple(y.shape)}")
    mode = check_choice(mode, name="mode", choices=MODES)
    lam = check_nonnegative(lam, name="lam")
    reduction = check_choice(reduction, name="reduction", choices=REDUCTIONS)
    check_nonempty_mean(tuple(y.shape[:-1]), reduction, name="y")
    if gradient is not None and not callable(gradient):
        raise TypeError(f"gradient must be callable (y -> per-sample gradients), got {type(gradient).__name__}")
    given = None
    source = None
    if isinstance(hessian, str):
        source = check_choice(hessian, name="hessian", choices=HESSIAN_SOURCES)
    elif hessian is not None:
        if mode == "fisher":
            raise ValueError("hessian= is for mode='hessian'; the Fisher matrix comes from the gradients")
        given = hessian
    if mode == "fisher" and source is not None:
        raise ValueError("hessian= is for mode='hessian'; the Fisher matrix comes from the gradients")
    backend = backend_for(y)
    need = mode == "hessian" and given is None
    g, hess = _gradients_and_hessians(loss_fn, y, need_hessian=need, source=source, gradient=gradient)
    g = xp.astype(backend.stop_gradient(g), y.dtype)
    if mode == "fisher":
        curvature = _fisher(g, xp=xp)
    elif given is not None:
        given = given(backend.stop_gradient(y)) if callable(given) else given
        curvature = _check_curvature(given, g, name="hessian")
    else:
        curvature = hess
    curvature = xp.astype(backend.stop_gradient(curvature), y.dtype)
    z = backend.stop_gradient(backend.stop_gradient(y) - _damped_solve(g, curvature, lam, xp=xp))
    return Bound(NewtonLossOp(reduction), (y, z), out_dtype)


_DOC = r"""The Newton loss of ``loss_fn`` at the network's outputs ``y``
(:mod:`dopt_core.newton` for the math; Petersen et al., NeurIPS 2024).

Returns :math:`\tfrac12 \sum_i \lVert \mathrm{sg}(z^\star_i) - y_i \rVert^2` with
:math:`z^\star_i = y_i - (C_i + \lambda I)^{-1}\nabla_{y_i}\ell`, whose gradient with
respect to ``y`` is the damped Newton direction :math:`(C_i + \lambda I)^{-1}
\nabla_{y_i}\ell`. Train the network on it with any first-order optimiser.

``loss_fn(y)`` must return one loss per sample (shape ``y.shape[:-1]``; the last
axis of ``y`` holds a sample's ``m`` outputs); samples must not interact (the
per-sample gradients and Hessians are read off the gradient of the batch's sum).
How the derivatives are obtained:

* torch and JAX arrays: the framework's autodiff of ``loss_fn``, which may be any
  differentiable function, dopt ops included (``neural_sort``, ``sorting_network``,
  ``permutation_loss``, ``soft_sort`` ... have second-order VJPs); the Hessian is
  exact (double backward; ``m`` Hessian-vector products).
* NumPy, CuPy and other array-API arrays (no autodiff): ``loss_fn`` must be a dopt
  OpFunction of ``y`` alone (its explicit VJP gives the gradient), or pass
  ``gradient=``. The Hessian is then central finite
  differences of the gradient (``2m`` calls, each shifting one output of every sample, step
  :math:`\varepsilon^{1/3}\max(1, \lVert y_i\rVert_\infty)`, symmetrised): exact up to
  rounding for a quadratic loss, about ``1e-10`` relative error in float64 otherwise.
  ``hessian="finite_differences"`` asks for this route on torch/JAX too (for a
  smooth ``loss_fn`` made of first-order-only ops, where double backward raises), and
  ``hessian=`` an array or a function of ``y`` supplies the Hessians yourself (a
  closed form, a Gauss-Newton matrix).
* Stochastic smoothing (the paper's perturbed baselines): the perturbed
  Fenchel-Young loss (additive noise, fixed ``noise=``) has an exact second-order
  VJP in torch and JAX, :math:`\nabla^2 L = J y_\varepsilon` by the score identity over
  the same samples, so ``mode="hessian"`` works on it. A squared loss on a
  perturbed optimizer's output has first-order VJPs only (double backward raises, and
  finite differences of a Monte-Carlo gradient with fixed noise are meaningless): use
  ``mode="fisher"``, or pass ``hessian=`` (e.g. the Gauss-Newton :math:`J^\top J`).

Parameters
----------
loss_fn : callable
    ``y -> (*batch,)`` per-sample losses ℓ_i (a dopt OpFunction, or in torch/JAX any
    differentiable function).
y : array ``(*batch, m)``
    The network's outputs; the result is differentiable with respect to ``y``.
mode : {"hessian", "fisher"}
    Curvature: the per-sample Hessians of ℓ, or the empirical Fisher matrix of the
    batch ``F = (1/N) Σ_i ∇ℓ_i ∇ℓ_iᵀ`` (gradients only; use ``lam > 0`` when the
    batch has fewer samples than ``m``).
lam : float
    Tikhonov damping λ ≥ 0 (default 1). Large λ: the gradient is ``∇ℓ / λ``. The
    gradients are those of the per-sample losses (not divided by the batch size),
    so λ is on the scale of ℓ_i's curvature.
hessian : None, "autodiff", "finite_differences", array or callable
    Where the Hessians come from (``mode="hessian"``): automatic (``None``: autodiff
    where the framework has it, else finite differences), one of the two routes, an
    array ``(*batch, m, m)`` or ``(m, m)``, or a function of ``y`` returning one.
gradient : callable, optional
    ``y -> (*batch, m)`` per-sample gradients of ℓ, for arrays without autodiff when
    ``loss_fn`` is not a dopt OpFunction (any leading axes of its argument are batch
    axes).
reduction : {"sum", "mean", "none"}
    Sum over the batch (the paper's loss, default), mean, or one loss per sample.

Example
-------
>>> import numpy as np, dopt_core as dc
>>> from dopt_core.losses import newton_loss
>>> t, a = np.array([[1.0, -2.0]]), np.array([3.0, 0.5])
>>> loss = lambda y: 0.5 * ((y - t) ** 2 * a).sum(-1)          # a quadratic ℓ
>>> grad = lambda y: (y - t) * a
>>> y = np.zeros((1, 2))
>>> value, vjp = dc.value_and_vjp(newton_loss, loss, y, lam=0.0, gradient=grad)
>>> vjp(1.0)          # the Newton direction H^{-1}∇ℓ = y - t: z* = t exactly
array([[-1.,  2.]])
"""

newton_loss = op_function(_bind, name="newton_loss", doc=_DOC, module=__name__)
