r"""Score-function gradient estimators of :math:`\nabla_\theta\, \mathbb E_{X\sim p_\theta}[f(X)]`.

Plain functions of per-sample arrays (losses, scores, critic values and gradients),
written against the array API, so they run in every framework; the sample axis is
axis 0 (``K = num_samples``), the result is averaged over it. Scores come from
:func:`dopt_core.structured.score` (of the trace, :math:`\nabla\log p(T)`) or
:func:`dopt_core.structured.score_exponentials` (of the exponentials,
:math:`\nabla\log p(E)`), both closed forms (Struminsky et al. 2021, section 3).

* :func:`reinforce` — :math:`\frac1K\sum_k (f_k - b_k)\nabla\log p_k`, with no baseline
  or the leave-one-out baseline :math:`b_k = \frac1{K-1}\sum_{j\ne k} f_j` (the
  paper's "+" estimators; Kool, van Hoof, Welling 2019);
* :func:`relax` — RELAX (Grathwohl, Choi, Wu, Roeder, Duvenaud 2018) with the
  conditional exponentials of :func:`dopt_core.structured.conditional_sample` and a
  user critic ``c`` (its values and θ-gradients are computed in the user's framework).
"""

from __future__ import annotations

from typing import Any

from .._lib._checks import check_choice, check_scores
from .._lib._compat import array_namespace

__all__ = ["reinforce", "relax"]


def _loss_and_score(loss: Any, score: Any) -> tuple[Any, Any, Any]:
    s, xp, _ = check_scores(score, name="score")
    f = loss
    if not hasattr(f, "shape"):
        raise TypeError(f"loss must be an array of per-sample loss values, got {type(loss).__name__}")
    if not (xp.isdtype(f.dtype, "real floating") or xp.isdtype(f.dtype, "integral")):
        raise TypeError(f"loss must have a real dtype, got {f.dtype}")
    f = xp.astype(f, s.dtype)
    if f.ndim < 1:
        raise ValueError("loss must have a leading sample axis (shape (num_samples, ...))")
    extra = s.ndim - f.ndim
    if extra < 0 or tuple(s.shape[: f.ndim]) != tuple(f.shape):
        raise ValueError(
            f"loss (shape {tuple(f.shape)}) must be the leading part of score's shape {tuple(s.shape)}"
        )
    f = xp.reshape(f, (*f.shape, *([1] * extra)))
    return f, s, xp


def reinforce(loss: Any, score: Any, *, baseline: str | None = None) -> Any:
    r"""The REINFORCE (score-function) estimator, optionally with a leave-one-out baseline.

    .. math::

        \hat g = \frac1K \sum_{k=1}^K (f_k - b_k)\, \nabla_\theta \log p(X_k;\theta),
        \qquad b_k = \begin{cases} 0 & \text{baseline=None}\\
        \frac{1}{K-1}\sum_{j\neq k} f_j & \text{baseline="loo"} \end{cases}

    unbiased for :math:`\nabla_\theta \mathbb E[f(X)]` (Williams 1992); the leave-one-out
    baseline keeps it unbiased since :math:`b_k` does not depend on sample ``k``
    (the "+" estimators of Struminsky et al. 2021; Kool et al. 2019).

    Parameters
    ----------
    loss : array, shape ``(K, ...)``
        Loss value of each sample (any framework; not differentiated).
    score : array, shape ``(K, ..., m)``
        Per-sample score, e.g. :func:`dopt_core.structured.score` of the traces (T-REINFORCE)
        or :func:`dopt_core.structured.score_exponentials` (E-REINFORCE).
    baseline : {None, "loo"}
        ``"loo"`` needs ``K >= 2``.

    Returns
    -------
    array, shape ``score.shape[1:]``
        The gradient estimate.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.structured.estimators import reinforce
    >>> loss = np.array([1.0, 3.0])
    >>> score = np.array([[1.0, -1.0], [-1.0, 1.0]])
    >>> reinforce(loss, score), reinforce(loss, score, baseline="loo")
    (array([-1.,  1.]), array([-2.,  2.]))
    """
    baseline = check_choice(baseline, name="baseline", choices=("loo",), allow_none=True)
    f, s, xp = _loss_and_score(loss, score)
    k = f.shape[0]
    if baseline is None:
        return xp.mean(f * s, axis=0)
    if k < 2:
        raise ValueError(f"baseline='loo' needs at least 2 samples on the leading axis, got {k}")
    centred = f - xp.mean(f, axis=0, keepdims=True)
    return xp.sum(centred * s, axis=0) / (k - 1)


def relax(
    loss: Any,
    score: Any,
    critic_conditional: Any,
    critic_grad: Any,
    critic_conditional_grad: Any,
) -> Any:
    r"""The RELAX estimator with conditional exponentials (Grathwohl et al. 2018).

    .. math::

        \hat g = \frac1K\sum_k \Bigl[\bigl(f(X_k) - c(\tilde E_k)\bigr)\nabla_\theta \log p(T_k;\theta)
            + \nabla_\theta c(E_k) - \nabla_\theta c(\tilde E_k)\Bigr],

    :math:`E_k = \varepsilon_k e^{-\theta}` the reparametrised exponentials that gave
    the trace :math:`T_k`, :math:`\tilde E_k \sim p(E\mid T_k)` the conditional ones
    (:func:`dopt_core.structured.conditional_sample`, reparametrised in θ), ``c`` a
    critic. Unbiased for every critic; the critic is trained to minimise the
    estimator's variance (Struminsky et al. 2021, section 3). Pure arithmetic on its
    inputs: in torch / JAX the result stays differentiable in the critic's parameters
    when its inputs are (``create_graph=True``), so ``(ĝ**2).sum()`` trains the critic.

    Parameters
    ----------
    loss : array, shape ``(K, ...)``
        :math:`f(X_k)`.
    score : array, shape ``(K, ..., m)``
        :math:`\nabla_\theta\log p(T_k;\theta)`.
    critic_conditional : array, shape ``(K, ...)``
        :math:`c(\tilde E_k)`.
    critic_grad, critic_conditional_grad : array, shape ``(K, ..., m)``
        :math:`\nabla_\theta c(E_k)` and :math:`\nabla_\theta c(\tilde E_k)`.

    Returns
    -------
    array, shape ``score.shape[1:]``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.structured.estimators import relax
    >>> loss, score = np.array([1.0, 3.0]), np.array([[1.0, -1.0], [-1.0, 1.0]])
    >>> c_tilde = np.array([1.0, 1.0])
    >>> dc_e = np.zeros((2, 2)); dc_tilde = np.zeros((2, 2))
    >>> relax(loss, score, c_tilde, dc_e, dc_tilde)
    array([-1.,  1.])
    """
    f, s, xp = _loss_and_score(loss, score)
    ns = array_namespace(critic_conditional, critic_grad, critic_conditional_grad)
    if tuple(critic_conditional.shape) != tuple(loss.shape):
        raise ValueError(
            f"critic_conditional must have loss's shape {tuple(loss.shape)} (one critic value "
            f"per sample), got {tuple(critic_conditional.shape)}"
        )
    c = ns.reshape(critic_conditional, tuple(f.shape))
    if tuple(critic_grad.shape) != tuple(s.shape) or tuple(critic_conditional_grad.shape) != tuple(s.shape):
        raise ValueError(
            f"critic_grad and critic_conditional_grad must have score's shape {tuple(s.shape)}, "
            f"got {tuple(critic_grad.shape)} and {tuple(critic_conditional_grad.shape)}"
        )
    g = (f - c) * s + critic_grad - critic_conditional_grad
    return ns.mean(g, axis=0)
