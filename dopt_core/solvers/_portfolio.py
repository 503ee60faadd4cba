"""Mean-variance portfolios: a second-order cone program per instance, by Clarabel."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_nonnegative, check_scores
from ..backend import backend_for
from ..op import Bound, Op, op_function
from ._host import HostSolverOp, StaticArray, check_executor, static_array

__all__ = ["portfolio"]


def _factor(cov: np.ndarray) -> np.ndarray:
    """``F`` with ``F Fᵀ = Σ`` for a positive semi-definite ``Σ`` (eigen-decomposition)."""
    vals, vecs = np.linalg.eigh(cov)
    keep = vals > vals.max(initial=0.0) * 1e-14
    return vecs[:, keep] * np.sqrt(vals[keep])


def _solve_one(theta: np.ndarray, *, factor: StaticArray, budget: float) -> np.ndarray:
    import clarabel  # lazy: an optional dependency (the "portfolio" extra)
    from scipy import sparse

    f = factor.array
    m, r = f.shape
    # variables x (m); constraints A x + s = b with s in
    # zero cone (1ᵀx = 1), non-negative cone (x >= 0), second-order cone (‖Fᵀx‖ <= √budget)
    A = sparse.vstack(
        [
            sparse.csc_matrix(np.ones((1, m))),
            -sparse.identity(m, format="csc"),
            sparse.csc_matrix(np.zeros((1, m))),
            sparse.csc_matrix(-f.T),
        ],
        format="csc",
    )
    b = np.concatenate([[1.0], np.zeros(m), [np.sqrt(budget)], np.zeros(r)])
    cones = [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(m), clarabel.SecondOrderConeT(r + 1)]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    # tighter than Clarabel's defaults (1e-8): the solution is the oracle's output, and
    # the risk budget's multiplier is large when Σ is small (PyEPO's Σ ~ 1e-4)
    settings.tol_gap_abs = settings.tol_gap_rel = 1e-10
    settings.tol_feas = settings.tol_ktratio = 1e-10
    P = sparse.csc_matrix((m, m))
    sol = clarabel.DefaultSolver(
        P, -np.asarray(theta, dtype=np.float64), A, b, cones, settings
    ).solve()
    status = str(sol.status)
    if status not in ("Solved", "AlmostSolved"):
        raise ValueError(f"Clarabel status {status}")
    x = np.clip(np.asarray(sol.x, dtype=np.float64), 0.0, None)
    return x / x.sum()


@dataclass(frozen=True)
class PortfolioOp(HostSolverOp, Op):
    factor: StaticArray
    budget: float
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    name: ClassVar[str] = "portfolio"
    event_ndim: ClassVar[int] = 1

    def kernel(self, event: tuple[int, ...]) -> Any:
        return functools.partial(_solve_one, factor=self.factor, budget=self.budget)


@op_function
def portfolio(
    theta: Any,
    /,
    covariance: Any,
    *,
    gamma: float = 2.25,
    risk_level: float | None = None,
    executor: Any = None,
    check_finite: bool = True,
) -> Bound:
    r"""The long-only portfolio of highest expected return under a variance budget.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y} \ \langle \theta, y \rangle
        \quad \text{s.t.} \quad \mathbf 1^\top y = 1,\ y \ge 0,\
        y^\top \Sigma y \le \rho, \qquad \rho = \gamma\, \overline{\Sigma}

    Markowitz's mean-variance model (Markowitz 1952) in PyEPO's form: a unit budget,
    no short sales, and a risk budget ``ρ`` that is ``γ`` times the mean entry of
    the covariance ``Σ`` (PyEPO's default ``γ = 2.25``) unless ``risk_level`` gives
    ``ρ`` directly. ``θ`` are the (predicted) expected returns: the solver maximises
    them. The variance constraint is written as the second-order cone
    ``‖Fᵀy‖₂ ≤ √ρ`` with ``F Fᵀ = Σ`` and each instance is solved on the host by
    the interior-point conic solver Clarabel (Goulart & Chen 2024), to a relative
    accuracy of about ``1e-10``; ``Σ`` and ``ρ`` are shared by the batch. The solution
    is clipped to ``y ≥ 0`` and rescaled to ``1ᵀy = 1``.

    Unlike the linear oracles, this one is smooth where the risk constraint binds;
    it is nevertheless treated as an oracle: its derivative is zero (not the
    solution's sensitivity), for use inside SPO+, perturbed optimizers and
    Fenchel-Young losses, as in PyEPO.

    Needs the optional dependency ``clarabel`` (``pip install dopt[portfolio]``).

    Parameters
    ----------
    theta : array, shape ``(..., m)``
        Expected returns of the ``m`` assets; leading axes are batch axes.
    covariance : array-like, shape ``(m, m)``
        Symmetric positive semi-definite covariance ``Σ`` (concrete data), e.g. the
        one of :func:`dopt_core.data.portfolio`.
    gamma : float
        Risk budget as a multiple of the mean covariance entry.
    risk_level : float, optional
        The budget ``ρ`` itself (overrides ``gamma``).
    executor : concurrent.futures.Executor, optional
        Spread the instances over it.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.

    Returns
    -------
    array, shape ``(..., m)``, ``theta``'s dtype and device
        Portfolio weights. Zero derivative.

    Raises
    ------
    ValueError
        When no portfolio meets the risk budget (checked once: it does not depend
        on θ), or ``covariance`` is not symmetric positive semi-definite.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> cov = np.diag([1.0, 1.0])
    >>> y = dc.solvers.portfolio(np.array([2.0, 1.0]), cov, risk_level=0.625)
    >>> np.round(y, 6)  # y1² + y2² = 0.625 on the budget line
    array([0.75, 0.25])
    """
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    if importlib.util.find_spec("clarabel") is None:
        raise ImportError(
            "solvers.portfolio needs the conic solver Clarabel: pip install clarabel "
            "(or dopt[portfolio])"
        )
    m = theta.shape[-1]
    cov = static_array(covariance, name="covariance", dtype=np.float64, ndim=2)
    if cov.shape != (m, m):
        raise ValueError(
            f"covariance must have shape ({m}, {m}) (theta's last axis), got {cov.shape}"
        )
    if not np.all(np.isfinite(cov)):
        raise ValueError("covariance must be finite")
    scale = max(float(np.abs(cov).max()), 1e-300)
    if not np.allclose(cov, cov.T, rtol=0.0, atol=1e-10 * scale):
        raise ValueError("covariance must be symmetric")
    cov = (cov + cov.T) / 2
    if np.linalg.eigvalsh(cov).min() < -1e-10 * scale:
        raise ValueError("covariance must be positive semi-definite")
    if risk_level is None:
        budget = check_nonnegative(gamma, name="gamma") * float(np.mean(cov))
    else:
        budget = check_nonnegative(risk_level, name="risk_level")
    factor = StaticArray(_factor(cov))
    # the constraints do not depend on θ: check once that some portfolio meets them
    try:
        _solve_one(np.zeros(m), factor=factor, budget=budget)
    except ValueError:
        raise ValueError(
            f"no long-only portfolio has variance <= {budget:.6g} (the risk budget): "
            "raise gamma or risk_level"
        ) from None
    traced = backend_for(theta).is_traced(theta)
    op = PortfolioOp(factor, budget, check_executor(executor), traced, None)
    return Bound(op, (theta,), out_dtype)
