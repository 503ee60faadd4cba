r"""Cone-aligned vector estimation (CaVE; Tang & Khalil, 2024) for binary linear programs.

For :math:`\max_y \langle\theta, y\rangle` over :math:`\{y : a_i^\top y \le b_i\}`, a
vertex :math:`y^*` is optimal exactly when θ lies in the **optimal cone** spanned by
the outward normals of the constraints binding at :math:`y^*` (KKT):

.. math::

    K(y^*) = \Bigl\{\textstyle\sum_{i \in A(y^*)} x_i a_i : x \ge 0\Bigr\},
    \qquad A(y^*) = \{i : a_i^\top y^* = b_i\}.

CaVE trains the predicted scores :math:`\hat\theta` to point into the cone of the
true solution, without solving the problem during training: with
:math:`p = \operatorname{proj}_{K}(\hat\theta)` (a non-negative least-squares problem
:math:`\min_{x \ge 0}\lVert N^\top x - \hat\theta\rVert`, :math:`N` the normals as rows),

.. math::

    \ell_{\mathrm{CaVE}}(\hat\theta) = 1 - \cos(\hat\theta, p),
    \qquad \nabla_{\hat\theta}\ell = -\frac{p}{\lVert\hat\theta\rVert\lVert p\rVert}
        + \frac{\langle\hat\theta, p\rangle}{\lVert\hat\theta\rVert^3\lVert p\rVert}\,\hat\theta ,

with :math:`p` held fixed (as in the paper and PyEPO's ``coneAlignedCosine``; cost
form: :math:`-\hat c` projected). ``method="exact"`` solves the projection exactly on
the host (the paper's CaVE-E: SciPy's NNLS on the rows that bind with one sign, in
the complement of the subspace spanned by the rows binding with both signs, such as
equality constraints); ``method="pgd"`` runs ``max_iter``
Nesterov-accelerated projected-gradient steps on the device from :math:`x = 0`
(a truncated projection in the spirit of CaVE+, 20 steps by default; PyEPO's CaVE+
truncates Clarabel at 3 interior-point iterations instead), which lands inside the
cone.

The binding normals come from :func:`binding_normals` (any LP/MILP in inequality
form with bounds) or :func:`shortest_path_normals` (the grid DAG of
:func:`dopt_core.solvers.shortest_path_dag`: flow conservation, whose rows bind with
both signs, and :math:`y_j \ge 0` for the arcs off the path). Rows that are all zero
stand for inactive constraints (fixed shapes, batched).

Reference
---------
B. Tang, E. B. Khalil. *CaVE: a cone-aligned approach for fast predict-then-optimize
with binary linear programs.* CPAIOR 2024. https://arxiv.org/abs/2312.07718
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ._lib._checks import (
    check_choice,
    check_int,
    check_nonempty_mean,
    check_positive,
    check_same_device,
    check_scores,
)
from ._lib._compat import device
from ._lib._reduce import REDUCTIONS, reduce_batch, reduced_vjp
from .backend import host_call
from .op import Bound, Op, op_function
from .solvers import grid_dag_arcs

__all__ = ["binding_normals", "cave_loss", "shortest_path_normals"]

_EPS = 1e-12


def _nnls_block(normals: np.ndarray, theta: np.ndarray) -> np.ndarray:
    r"""Exact cone projections on the host, one NNLS per instance on its one-sided rows.

    Rows present with both signs (``r`` and ``-r``: the two halves of an equality
    constraint) span a subspace :math:`L` inside the cone, which is then the
    orthogonal sum of :math:`L` and the cone :math:`K'` of the other rows projected
    onto :math:`L^\perp`; so :math:`\operatorname{proj}_K(\theta) =
    \operatorname{proj}_L(\theta) + \operatorname{proj}_{K'}(\theta)`, and the NNLS
    runs in coordinates of :math:`L^\perp` (dimension n - rank L) on the one-sided
    rows only — fewer, smaller active-set steps. :math:`L^\perp`'s basis comes from one
    SVD per distinct set of two-sided rows (shared by instances with the same
    equality constraints, and kept for the next calls: :func:`_complement_basis`).
    Without two-sided rows: the NNLS on all rows.
    """
    n = normals.reshape(-1, *normals.shape[-2:]).astype(np.float64, copy=False)
    t = theta.reshape(-1, theta.shape[-1]).astype(np.float64, copy=False)
    out = np.zeros_like(t)
    nonzero = n.any(axis=2)
    two = _two_sided(n)
    paired = two.any(axis=1)
    groups: dict[bytes, list[int]] = {}
    lin = np.where(two[..., None], n, 0.0)
    if t.shape[0] and paired.all() and np.all(lin == lin[:1]):  # the same two-sided rows everywhere
        groups[n[0][two[0]].tobytes()] = list(range(t.shape[0]))
    else:
        for i in range(t.shape[0]):
            if paired[i]:
                groups.setdefault(n[i][two[i]].tobytes(), []).append(i)
    for i in np.flatnonzero(~paired):
        rows = n[i][nonzero[i]]
        if rows.shape[0]:
            out[i] = rows.T @ _nnls(rows.T, t[i])
    for key, members in groups.items():
        q = _complement_basis(key, n.shape[-1])  # orthonormal basis of L⊥, (k, k - rank)
        idx = np.asarray(members)
        b_all = t[idx] @ q
        res = b_all.copy()  # residuals in L⊥ coordinates
        one = nonzero & ~two
        # (products per instance: small enough for BLAS to stay on one thread, which
        # matters on a shared machine)
        for j, i in enumerate(members):
            rows = n[i][one[i]]
            if not q.shape[1] or not rows.shape[0]:
                continue
            proj = rows @ q  # the one-sided rows in L⊥ coordinates
            # a row in L (up to rounding) adds nothing to the cone: its rounding noise
            # outside L would let the NNLS reach any direction with huge weights
            keep = np.sum(proj * proj, axis=1) > 1e-20 * np.sum(rows * rows, axis=1)
            gens = proj[keep].T
            if gens.shape[1]:
                res[j] = b_all[j] - gens @ _nnls(gens, b_all[j])
        out[idx] = t[idx] - res @ q.T  # θ minus its residual in L⊥
    return out.reshape(theta.shape).astype(theta.dtype, copy=False)


@functools.lru_cache(maxsize=32)  # the same equality constraints recur at every step
def _complement_basis(key: bytes, k: int) -> np.ndarray:
    """An orthonormal basis (columns) of the orthogonal complement of the row span of
    the rows stored in ``key`` (float64 bytes of an ``(r, k)`` array), by SVD."""
    lin = np.frombuffer(key, dtype=np.float64).reshape(-1, k)
    _, sv, vt = np.linalg.svd(lin)
    rank = int(np.sum(sv > sv[0] * max(lin.shape) * np.finfo(np.float64).eps))
    basis = np.ascontiguousarray(vt[rank:].T)
    basis.flags.writeable = False  # shared by the cache's callers
    return basis


def _two_sided(n: np.ndarray) -> np.ndarray:
    """``(B, m)`` mask of the nonzero rows ``r`` of ``n`` (shape ``(B, m, k)``) whose
    negation ``-r`` is also a row of the same instance.

    Candidates pair up when sorted by a fixed projection ``h = ⟨r, v⟩`` (exactly
    negated for ``-r``: rounding is symmetric in sign) with adjacent values ``h, -h``;
    each candidate pair is then compared entry by entry, so a marked row always has
    its opposite. A row with a missed opposite (a repeated row) stays one-sided, which
    only leaves it to the NNLS.
    """
    v = np.cos(np.arange(n.shape[-1]) * 1.618) + 2.0
    h = np.einsum("bmk,k->bm", n, v)  # no BLAS call (threads)
    order = np.argsort(np.abs(h), axis=1, kind="stable")
    hs = np.take_along_axis(h, order, axis=1)
    bi, ki = np.nonzero((hs[:, 1:] == -hs[:, :-1]) & (hs[:, 1:] != 0))
    lo, hi = order[bi, ki], order[bi, ki + 1]
    ok = np.all(n[bi, lo] == -n[bi, hi], axis=1)
    two = np.zeros(h.shape, dtype=bool)
    two[bi[ok], lo[ok]] = True
    two[bi[ok], hi[ok]] = True
    return two


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``argmin_{x ≥ 0} |a x - b|`` (SciPy's active-set NNLS)."""
    from scipy.optimize import nnls  # SciPy loads when the first exact projection runs

    return nnls(a, b, maxiter=50 * max(a.shape))[0]


def _rowmul(v: Any, a: Any) -> Any:
    """``vᵀA`` per instance: ``v`` of shape ``(..., k)``, ``a`` of shape ``(..., k, j)``."""
    return (v[..., None, :] @ a)[..., 0, :]


def _pgd_project(normals: Any, theta: Any, max_iter: int, *, xp: Any) -> Any:
    """``max_iter`` accelerated projected-gradient steps for min_{x≥0} |Nᵀx - θ|² (device)."""
    nt = xp.permute_dims(normals, (*range(normals.ndim - 2), normals.ndim - 1, normals.ndim - 2))
    # step 1/L, L the largest eigenvalue of N Nᵀ by power iteration (+10 % margin,
    # capped by the safe bound ‖N‖_F²)
    # a start with no symmetry (± pairs of rows make a constant start miss the top eigenvector)
    m = normals.shape[-2]
    start = xp.sin(xp.astype(xp.arange(1, m + 1, device=device(theta)), theta.dtype) * 1.618) + 1.5
    v = xp.broadcast_to(start, tuple(normals.shape[:-1]))
    # products as row vector @ matrix, (1, k) @ (k, j) per instance: CPU BLAS runs these
    # several times faster than the matrix @ column form (one gemv per instance)
    for _ in range(8):
        v = _rowmul(_rowmul(v, normals), nt)
        nv = xp.sqrt(xp.sum(v * v, axis=-1, keepdims=True))
        v = v / xp.where(nv > 0, nv, 1.0)
    u = _rowmul(v, normals)
    frob = xp.sum(normals * normals, axis=(-2, -1))
    lip = xp.minimum(1.1 * xp.sum(u * u, axis=-1), frob)
    step = 1.0 / xp.where(lip > 0, lip, 1.0)
    x = xp.zeros(tuple(normals.shape[:-1]), dtype=theta.dtype, device=device(theta))
    x_prev = x
    for k in range(max_iter):
        mom = 0.0 if k == 0 else (k - 1.0) / (k + 2.0)
        z = x + mom * (x - x_prev)
        res = _rowmul(z, normals) - theta  # Nᵀz - θ
        grad = _rowmul(res, nt)  # N(Nᵀz - θ)
        x_prev = x
        x = z - step[..., None] * grad
        x = xp.where(x > 0, x, xp.zeros_like(x))
    return _rowmul(x, normals)


@dataclass(frozen=True)
class CaveOp(Op):
    """``(θ̂, normals) -> 1 - cos(θ̂, proj)`` (reduced), the projection held fixed;
    the projection by accelerated projected gradient on the device (CaVE+)."""

    max_iter: int = 20
    reduction: str = "mean"
    name: ClassVar[str] = "cave_loss"
    nondiff: ClassVar[tuple[int, ...]] = (1,)

    def project(self, theta: Any, normals: Any, *, xp: Any) -> Any:
        return _pgd_project(normals, theta, self.max_iter, xp=xp)

    def forward(self, theta: Any, normals: Any, *, xp: Any) -> tuple[Any, tuple[Any, ...]]:
        p = self.project(theta, normals, xp=xp)
        tn = xp.sqrt(xp.sum(theta * theta, axis=-1))
        pn = xp.sqrt(xp.sum(p * p, axis=-1))
        den = xp.where(tn * pn > _EPS, tn * pn, _EPS)
        dot = xp.sum(theta * p, axis=-1)
        per = 1.0 - dot / den
        tn2 = xp.where(tn > 0, tn * tn, 1.0)
        grad = -(p - (dot / tn2)[..., None] * theta) / den[..., None]
        return reduce_batch(per, grad, self.reduction, xp=xp)

    def vjp(self, residuals: tuple[Any, ...], g: Any, *, xp: Any) -> tuple[Any | None, ...]:
        return reduced_vjp(residuals[0], g, self.reduction, 1, xp=xp), None


@dataclass(frozen=True)
class CaveExactOp(CaveOp):
    """:class:`CaveOp` with the exact projection (NNLS per instance, on the host: CaVE-E)."""

    host: ClassVar[bool] = True

    def project(self, theta: Any, normals: Any, *, xp: Any) -> Any:
        return host_call(_nnls_block, normals, theta, shape=tuple(theta.shape), dtype=theta.dtype)


@op_function
def cave_loss(
    theta_hat: Any, normals: Any, *, method: str = "exact", max_iter: int = 20, reduction: str = "mean"
) -> Bound:
    r"""The CaVE loss :math:`1 - \cos(\hat\theta, \operatorname{proj}_{K}(\hat\theta))` (Tang & Khalil, 2024).

    ``normals`` (shape ``(*batch, m, n)``) are the outward normals of the constraints
    binding at each instance's true solution, zero rows for the others
    (:func:`binding_normals`, :func:`shortest_path_normals`); ``theta_hat`` (shape
    ``(*batch, n)``) the predicted scores (``-ĉ`` for costs). The projection is held
    fixed in the gradient (module :mod:`dopt_core.cave`). Tang & Khalil, *CaVE: a
    cone-aligned approach for fast predict-then-optimize with binary linear programs*,
    CPAIOR 2024.

    Parameters
    ----------
    theta_hat : array, shape ``(*batch, n)``
        Predicted scores.
    normals : array, shape ``(*batch, m, n)``
        Binding-constraint normals of the true solutions.
    method : {"exact", "pgd"}
        Exact NNLS projection on the host (CaVE-E), or ``max_iter`` accelerated
        projected-gradient steps on the device (CaVE+).
    max_iter : int
        Steps of ``method="pgd"``.
    reduction : {"mean", "sum", "none"}
        Reduction over the batch.

    Returns
    -------
    array
        The loss (a scalar, or ``(*batch)`` for ``reduction="none"``).

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> normals = np.array([[[1.0, 0.0], [1.0, 1.0]]])   # cone between e_1 and (1, 1)
    >>> round(float(dc.cave_loss(np.array([[2.0, 1.0]]), normals)), 6)   # inside: loss 0
    0.0
    >>> value, vjp = dc.value_and_vjp(dc.cave_loss, np.array([[0.0, 1.0]]), normals)
    >>> round(float(value), 4), (vjp(np.array(1.0)) + 0.0).round(4)   # projects onto (1, 1)/2
    (0.2929, array([[-0.7071,  0.    ]]))
    """
    method = check_choice(method, name="method", choices=("exact", "pgd"))
    max_iter = check_int(max_iter, name="max_iter", low=1)
    reduction = check_choice(reduction, name="reduction", choices=REDUCTIONS)
    theta, xp, out_dtype = check_scores(theta_hat, name="theta_hat", min_ndim=1)
    check_nonempty_mean(tuple(theta.shape[:-1]), reduction, name="theta_hat")
    nrm, _, _ = check_scores(normals, name="normals", min_ndim=2)
    if nrm.ndim != theta.ndim + 1 or tuple(nrm.shape[:-2]) != tuple(theta.shape[:-1]) or nrm.shape[-1] != theta.shape[-1]:
        raise ValueError(
            f"normals must have shape (*batch, m, {theta.shape[-1]}) with theta_hat's batch "
            f"{tuple(theta.shape[:-1])}, got {tuple(nrm.shape)}"
        )
    check_same_device({"theta_hat": theta, "normals": nrm})
    op = CaveExactOp(max_iter, reduction) if method == "exact" else CaveOp(max_iter, reduction)
    return Bound(op, (theta, xp.astype(nrm, theta.dtype)), out_dtype)


def binding_normals(
    y: Any,
    *,
    A_ub: Any = None,
    b_ub: Any = None,
    A_eq: Any = None,
    lower: float | None = 0.0,
    upper: float | None = 1.0,
    atol: float = 1e-6,
) -> Any:
    r"""Outward normals of the constraints binding at solutions ``y`` of :math:`\max\langle\theta, y\rangle`.

    The feasible set is :math:`\{A_{ub}\,y \le b_{ub},\ A_{eq}\,y = b_{eq},\
    \text{lower} \le y \le \text{upper}\}`. Returns ``(*batch, m, n)`` with
    ``m = rows(A_ub) + 2 rows(A_eq) + 2n`` (bounds that are ``None`` omitted): row
    :math:`a_i` where :math:`a_i^\top y = b_i` (within ``atol``), both :math:`\pm`
    equality rows (they always bind), :math:`-e_j` where :math:`y_j` = lower,
    :math:`+e_j` where :math:`y_j` = upper, and zero rows elsewhere. θ makes ``y``
    optimal iff θ is in the cone of these rows (Tang & Khalil, 2024). Device
    arithmetic only.

    Parameters
    ----------
    y : array, shape ``(*batch, n)``
        Feasible solutions (vertices).
    A_ub, b_ub : arrays, shapes ``(r, n)`` and ``(r,)``, optional
        Inequality constraints.
    A_eq : array, shape ``(q, n)``, optional
        Equality constraints (their right-hand side is not needed: they bind).
    lower, upper : float or None
        Bounds on every variable (``None``: no bound).
    atol : float
        Tolerance of the binding test.

    Returns
    -------
    array
        The normals, shape ``(*batch, m, n)``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y = np.array([1.0, 0.0])                # a vertex of the square [0, 1]^2
    >>> dc.binding_normals(y)                   # -e_2 (y_2 = 0), +e_1 (y_1 = 1)
    array([[ 0.,  0.],
           [-0., -1.],
           [ 1.,  0.],
           [ 0.,  0.]])
    """
    y, xp, _ = check_scores(y, name="y", min_ndim=1)
    n = y.shape[-1]
    dt, dev = y.dtype, device(y)
    atol = check_positive(atol, name="atol")
    batch = tuple(y.shape[:-1])
    blocks = []
    if A_ub is not None:
        if b_ub is None:
            raise ValueError("A_ub needs b_ub")
        A = xp.asarray(A_ub, dtype=dt, device=dev)
        b = xp.asarray(b_ub, dtype=dt, device=dev)
        if A.ndim != 2 or A.shape[1] != n or tuple(b.shape) != (A.shape[0],):
            raise ValueError(f"A_ub must have shape (r, {n}) and b_ub shape (r,), got {tuple(A.shape)}, {tuple(b.shape)}")
        act = xp.abs(xp.sum(y[..., None, :] * A, axis=-1) - b) <= atol
        blocks.append(xp.where(act[..., None], A, xp.zeros_like(A)))
    if A_eq is not None:
        E = xp.asarray(A_eq, dtype=dt, device=dev)
        if E.ndim != 2 or E.shape[1] != n:
            raise ValueError(f"A_eq must have shape (q, {n}), got {tuple(E.shape)}")
        both = xp.concat([E, -E], axis=0)
        blocks.append(xp.broadcast_to(both, (*batch, *both.shape)))
    eye = xp.eye(n, dtype=dt, device=dev)
    if lower is not None:
        at = xp.abs(y - lower) <= atol
        blocks.append(xp.where(at[..., None], -eye, xp.zeros_like(eye)))
    if upper is not None:
        at = xp.abs(y - upper) <= atol
        blocks.append(xp.where(at[..., None], eye, xp.zeros_like(eye)))
    if not blocks:
        raise ValueError("binding_normals needs at least one constraint (A_ub, A_eq or a bound)")
    return xp.concat([xp.broadcast_to(b, (*batch, *b.shape[-2:])) for b in blocks], axis=-2)


def shortest_path_normals(y: Any, grid: tuple[int, int], *, atol: float = 1e-6) -> Any:
    r"""Binding normals of paths ``y`` of :func:`dopt_core.solvers.shortest_path_dag`.

    The path polytope of the ``H × W`` grid DAG is :math:`\{N y = b,\ y \ge 0\}` with
    :math:`N` the node-arc incidence matrix (flow out minus flow in; one unit leaves
    the top-left node, one enters the bottom-right one). At a path ``y`` the
    conservation rows bind with both signs and :math:`y_j \ge 0` binds off the path,
    so the optimal cone is spanned by :math:`\pm N` and :math:`-e_j` for
    :math:`y_j = 0` (:func:`binding_normals` with ``A_eq=N``, no upper bound).

    Parameters
    ----------
    y : array, shape ``(*batch, m)``
        Paths as arc indicators (arcs in :func:`dopt_core.solvers.grid_dag_arcs` order).
    grid : (int, int)
        ``(H, W)``.
    atol : float
        Tolerance of the binding test.

    Returns
    -------
    array
        Shape ``(*batch, 2HW + m, m)``.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> y = dc.solvers.shortest_path_dag(np.array([1.0, 0, 0, 0]), grid=(2, 2))
    >>> normals = dc.shortest_path_normals(y, (2, 2))
    >>> y                                        # arcs 0 (0→1) and 2 (1→3)
    array([1., 0., 1., 0.])
    >>> normals = dc.shortest_path_normals(y, (2, 2))
    >>> normals.shape
    (12, 4)
    >>> round(float(dc.cave_loss(np.array([[1.0, -1, 1, -1]]), normals[None])), 6)   # y optimal: in the cone
    0.0
    """
    h, w = (check_int(g, name="grid", low=1) for g in grid)
    arcs = grid_dag_arcs((h, w))
    inc = np.zeros((h * w, arcs.shape[0]))
    inc[arcs[:, 0], np.arange(arcs.shape[0])] = 1.0
    inc[arcs[:, 1], np.arange(arcs.shape[0])] = -1.0
    return binding_normals(y, A_eq=inc, lower=0.0, upper=None, atol=atol)
