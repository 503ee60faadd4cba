"""The logic-gate layer in the coefficient form (never materialising the 16 gates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_choice, check_int, check_positive, check_scores, check_same_device
from .._lib._compat import device, index_dtype
from ..backend import backend_for
from ..op import Bound, Op, op_function
from ._gates import GATE_COEFFS, NUM_GATES
from ._wiring import scatter_plan

__all__ = ["LogicLayerOp", "gate_coefficients", "logic_layer"]

# a writable copy for the frameworks (torch warns on read-only NumPy memory); never written
_COEFFS = np.array(GATE_COEFFS)


def _coeffs(W: Any, mode: str, *, xp: Any) -> tuple[Any, Any]:
    """``(c, p)``: the ``(n, 4)`` coefficients and the gate distribution ``p`` (soft) or
    ``None`` (hard, the arg-max gate's row)."""
    C = xp.asarray(_COEFFS, dtype=W.dtype, device=device(W))
    if mode == "hard":
        return xp.take(C, xp.argmax(W, axis=-1), axis=0), None
    e = xp.exp(W - xp.max(W, axis=-1, keepdims=True))
    p = e / xp.sum(e, axis=-1, keepdims=True)
    return p @ C, p


def gate_coefficients(W: Any, *, mode: str = "soft") -> Any:
    r"""The ``(1, a, b, ab)`` coefficients of every neuron: ``softmax(W) @ C`` or ``C[argmax W]``.

    ``C`` is :data:`~dopt_core.logic.GATE_COEFFS` (Petersen et al., NeurIPS 2022): the
    expected output of a neuron whose gate is drawn from ``softmax(W)`` is
    :math:`c_0 + c_1 a + c_2 b + c_3 ab` with :math:`c = \mathrm{softmax}(W)\,C`.
    Not differentiable by itself (use :func:`logic_layer`).

    Parameters
    ----------
    W : array, shape ``(n, 16)``
    mode : {"soft", "hard"}

    Returns
    -------
    array, shape ``(n, 4)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import gate_coefficients
    >>> W = np.zeros((1, 16)); W[0, 6] = 5.0
    >>> gate_coefficients(W, mode="hard")
    array([[ 0.,  1.,  1., -2.]])
    """
    W, xp, _ = check_scores(W, name="W", min_ndim=2)
    if W.ndim != 2 or W.shape[1] != NUM_GATES:
        raise ValueError(f"W must have shape (n, {NUM_GATES}), got {tuple(W.shape)}")
    mode = check_choice(mode, name="mode", choices=("soft", "hard"))
    return _coeffs(W, mode, xp=xp)[0]


def _feature_major(v: Any, xp: Any) -> Any:
    """``(..., n)`` → contiguous ``(n, B)``. The layer computes feature-major: gathering
    whole rows is far faster than gathering columns, and its output is handed back as
    the transposed view of a feature-major array, so a stack of layers transposes only
    once (the reshape of such a view is free)."""
    v2 = xp.reshape(v, (-1, v.shape[-1]))
    vt = xp.permute_dims(v2, (1, 0))
    return xp.reshape(xp.reshape(vt, (-1,)), vt.shape)


def _batch_major(vt: Any, lead: tuple[int, ...], xp: Any) -> Any:
    return xp.reshape(xp.permute_dims(vt, (1, 0)), (*lead, vt.shape[0]))


def _col(c: Any, k: int, share: int) -> Any:
    # column k of the coefficients, broadcast against (n, B) or (rows, share, B)
    return c[:, k : k + 1] if share == 1 else c[:, k : k + 1, None]


@dataclass(frozen=True)
class LogicLayerOp(Op):
    """``y_j = c₀ + c₁ a + c₂ b + c₃ ab`` with ``a = x[idx_a[j]]``, ``b = x[idx_b[j]]``.

    Inputs ``(x, W, idx_a, idx_b, pos)``; ``pos`` is the :func:`scatter_plan` of
    ``concat(idx_a, idx_b)``. Neuron ``j`` uses weight row ``j // share``.
    """

    mode: str = "soft"
    grad_factor: float = 1.0
    share: int = 1
    name: ClassVar[str] = "logic.logic_layer"
    nondiff: ClassVar[tuple[int, ...]] = (2, 3, 4)

    def _rows(self, v: Any, n_w: int, xp: Any) -> Any:
        # (n, B) -> (rows, share, B): neuron j uses weight row j // share
        return v if self.share == 1 else xp.reshape(v, (n_w, self.share, v.shape[-1]))

    def forward(self, x: Any, W: Any, idx_a: Any, idx_b: Any, pos: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        n_w, s = W.shape[0], self.share
        c, _ = _coeffs(W, self.mode, xp=xp)
        be = backend_for(x)
        xt = _feature_major(x, xp)
        at, bt = be.take(xt, idx_a, axis=0), be.take(xt, idx_b, axis=0)  # (n, B)
        a, b = self._rows(at, n_w, xp), self._rows(bt, n_w, xp)
        yt = _col(c, 0, s) + _col(c, 1, s) * a + b * (_col(c, 2, s) + _col(c, 3, s) * a)
        yt = xp.reshape(yt, at.shape)
        lead = tuple(x.shape[:-1])
        shape = xp.zeros((*lead, 0), dtype=x.dtype, device=device(x))  # the batch shape, for jvp
        return _batch_major(yt, lead, xp), (at, bt, W, pos, idx_a, idx_b, shape)

    def vjp(self, residuals: tuple[Any, ...], cotangent: Any, *, xp: Any) -> tuple[Any | None, ...]:
        at, bt, W, pos = residuals[:4]
        n_w, s = W.shape[0], self.share
        lead = tuple(cotangent.shape[:-1])
        c, p = _coeffs(W, self.mode, xp=xp)
        a, b = self._rows(at, n_w, xp), self._rows(bt, n_w, xp)
        gt = _feature_major(cotangent, xp)
        g = self._rows(gt, n_w, xp)
        gW = None
        if p is not None:
            axes = (-1,) if s == 1 else (-2, -1)
            g_a = g * a
            # the four per-neuron sums Σg, Σg·a, Σg·b, Σg·ab (difflogic's CUDA backward)
            S = xp.stack(
                [xp.sum(g, axis=axes), xp.sum(g_a, axis=axes), xp.sum(g * b, axis=axes), xp.sum(g_a * b, axis=axes)],
                axis=-1,
            )
            C = xp.asarray(_COEFFS, dtype=W.dtype, device=device(W))
            gp = S @ xp.permute_dims(C, (1, 0))
            gW = p * (gp - xp.sum(gp * p, axis=-1, keepdims=True))
        ga = xp.reshape(g * (_col(c, 1, s) + _col(c, 3, s) * b), at.shape)
        gb = xp.reshape(g * (_col(c, 2, s) + _col(c, 3, s) * a), at.shape)
        zero = xp.zeros((1, at.shape[1]), dtype=at.dtype, device=device(at))
        G = xp.concat([ga, gb, zero], axis=0)  # (2n + 1, B)
        in_dim, m = pos.shape
        gx = backend_for(G).take(G, xp.reshape(pos, (-1,)), axis=0)
        gx = xp.sum(xp.reshape(gx, (in_dim, m, at.shape[1])), axis=1)
        if self.grad_factor != 1.0:
            gx = gx * self.grad_factor
        return _batch_major(gx, lead, xp), gW, None, None, None

    #: the residuals are gathers of ``x`` and ``W`` itself, the VJP array code (the hard
    #: mode's arg-max is piecewise constant: its W derivative is zero to every order)
    second_order: ClassVar[bool] = True

    def jvp(self, residuals: tuple[Any, ...], tangents: tuple[Any | None, ...], *, xp: Any) -> Any:
        # dy = (c₁ + c₃ b) u_a + (c₂ + c₃ a) u_b (times grad_factor, as the VJP, so that the
        # two are adjoint) + dc₀ + dc₁ a + dc₂ b + dc₃ ab, dc = (p ⊙ (u_W - <p, u_W>)) C (soft)
        at, bt, W, _, idx_a, idx_b, shape = residuals
        ux, uW = tangents[0], tangents[1]
        n_w, s = W.shape[0], self.share
        c, p = _coeffs(W, self.mode, xp=xp)
        a, b = self._rows(at, n_w, xp), self._rows(bt, n_w, xp)
        dy = None
        if ux is not None:
            uxt = _feature_major(ux, xp)
            be = backend_for(uxt)
            ua = self._rows(be.take(uxt, idx_a, axis=0), n_w, xp)
            ub = self._rows(be.take(uxt, idx_b, axis=0), n_w, xp)
            dy = ua * (_col(c, 1, s) + _col(c, 3, s) * b) + ub * (_col(c, 2, s) + _col(c, 3, s) * a)
            if self.grad_factor != 1.0:
                dy = dy * self.grad_factor
        if uW is not None and p is not None:
            C = xp.asarray(_COEFFS, dtype=W.dtype, device=device(W))
            dc = (p * (uW - xp.sum(p * uW, axis=-1, keepdims=True))) @ C
            dW = _col(dc, 0, s) + _col(dc, 1, s) * a + b * (_col(dc, 2, s) + _col(dc, 3, s) * a)
            dy = dW if dy is None else dy + dW
        if dy is None:
            return None
        return _batch_major(xp.reshape(dy, at.shape), tuple(shape.shape[:-1]), xp)


def _index_array(idx: Any, *, name: str) -> np.ndarray:
    try:
        be = backend_for(idx, name=name)
    except TypeError:
        raise TypeError(f"{name} must be an integer array, got {type(idx).__name__}") from None
    if be.is_traced(idx):
        raise TypeError(
            f"{name} must be a concrete array (the wiring is fixed): pass it as a NumPy array or "
            "close over it instead of tracing it under jax.jit"
        )
    a = be.to_numpy(idx)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {a.dtype}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one entry per neuron), got shape {a.shape}")
    return a.astype(np.int64, copy=False)


def bind_wiring(x: Any, idx_a: Any, idx_b: Any, *, in_dim: int) -> tuple[Any, Any, Any]:
    """Validate the wiring against ``in_dim`` and return ``(idx_a, idx_b, pos)`` as
    arrays of ``x``'s backend and device."""
    a = _index_array(idx_a, name="idx_a")
    b = _index_array(idx_b, name="idx_b")
    if a.shape != b.shape:
        raise ValueError(f"idx_a and idx_b must have the same shape, got {a.shape} and {b.shape}")
    if a.shape[0] == 0:
        raise ValueError("idx_a must have at least one neuron")
    for nm, v in (("idx_a", a), ("idx_b", b)):
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= in_dim:
            raise ValueError(f"{nm} must lie in [0, {in_dim}) (the input width), got values in [{lo}, {hi}]")
    pos = scatter_plan(in_dim, np.concatenate([a, b]))
    be = backend_for(x)
    xp = be.namespace(x)
    it = np.int32 if xp.asarray(0, dtype=index_dtype(xp)).dtype == xp.int32 else np.int64
    return tuple(be.from_numpy(v.astype(it), like=x) for v in (a, b, pos))  # type: ignore[return-value]


@op_function
def logic_layer(
    x: Any,
    idx_a: Any,
    idx_b: Any,
    W: Any,
    /,
    *,
    mode: str = "soft",
    grad_factor: float = 1.0,
) -> Bound:
    r"""A layer of differentiable two-input logic gates (Petersen et al., NeurIPS 2022).

    Neuron ``j`` reads :math:`a = x_{\,\mathrm{idx\_a}[j]}` and
    :math:`b = x_{\,\mathrm{idx\_b}[j]}` and outputs the expected value of a gate drawn
    from :math:`p_j = \mathrm{softmax}(W_j)` over the 16 gates,

    .. math::

        y_j = \sum_{i=0}^{15} p_{ji}\, g_i(a, b) = c_0 + c_1 a + c_2 b + c_3 ab,
        \qquad c = p_j\, C,

    with ``C`` = :data:`~dopt_core.logic.GATE_COEFFS`; ``mode="hard"`` uses the arg-max
    gate's row of ``C`` (the discrete network). The 16 gate outputs are never formed.
    VJP: with :math:`S_j = (\sum g_j, \sum g_j a, \sum g_j b, \sum g_j ab)` (sums over
    the batch), :math:`\bar W_j = p_j \odot (C S_j - \langle C S_j, p_j\rangle)` (soft
    mode; zero in hard mode, where the arg-max is piecewise constant), and
    :math:`g_j (c_1 + c_3 b)`, :math:`g_j (c_2 + c_3 a)` are scatter-added into
    :math:`\bar x` at ``idx_a[j]``, ``idx_b[j]``, times ``grad_factor`` (difflogic's
    ``GradFactor``: an identity whose gradient is scaled, against vanishing gradients
    in deep nets).

    ``W`` may have fewer rows than there are neurons: with ``n`` neurons and ``r`` rows
    (``r`` dividing ``n``), neuron ``j`` uses row ``j // (n / r)``. This is how the
    convolutional layers share one gate per kernel node across positions.

    Parameters
    ----------
    x : array, shape ``(..., in_dim)``, float32 or float64, values in ``[0, 1]``
    idx_a, idx_b : integer arrays, shape ``(n,)``, values in ``[0, in_dim)``
        Fixed wiring (see :func:`logic_connections`); concrete arrays (NumPy arrays are
        accepted with any backend's ``x``).
    W : array, shape ``(r, 16)``, same dtype as ``x``
        Gate logits.
    mode : {"soft", "hard"}
    grad_factor : float > 0

    Returns
    -------
    array, shape ``(..., n)``

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.logic import logic_layer
    >>> x = np.array([[0.0, 1.0], [1.0, 1.0]])
    >>> W = np.zeros((1, 16)); W[0, 1] = 3.0   # AND is the most likely gate
    >>> logic_layer(x, np.array([0]), np.array([1]), W, mode="hard")
    array([[0.],
           [1.]])
    >>> logic_layer(x, np.array([0]), np.array([1]), W).round(3)
    array([[0.228],
           [0.772]])
    """
    x_dtype, W_dtype = getattr(x, "dtype", None), getattr(W, "dtype", None)
    x, xp, out_dtype = check_scores(x, name="x")
    W, _, _ = check_scores(W, name="W", min_ndim=2)
    check_same_device({"x": x, "W": W})
    mode = check_choice(mode, name="mode", choices=("soft", "hard"))
    grad_factor = check_positive(grad_factor, name="grad_factor")
    if W_dtype != x_dtype:  # the given dtypes: half precision is promoted by check_scores
        raise TypeError(f"W must have x's dtype {x_dtype}, got {W_dtype}")
    if W.ndim != 2 or W.shape[1] != NUM_GATES:
        raise ValueError(f"W must have shape (rows, {NUM_GATES}), got {tuple(W.shape)}")
    a, b, pos = bind_wiring(x, idx_a, idx_b, in_dim=x.shape[-1])
    n, r = a.shape[0], W.shape[0]
    check_int(r, name="W.shape[0]", low=1)
    if n % r:
        raise ValueError(f"W's number of rows ({r}) must divide the number of neurons ({n})")
    return Bound(LogicLayerOp(mode, grad_factor, n // r), (x, W, a, b, pos), out_dtype)
