"""Linear and mixed-integer linear programs through HiGHS (``scipy.optimize``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._lib._checks import check_positive, check_scores
from ..backend import backend_for
from ..op import Bound, Op, op_function
from ._host import HostSolverOp, StaticArray, check_executor, static_array

__all__ = ["linear_program", "milp"]


@dataclass(frozen=True)
class _Problem:
    """The constraints shared by a batch: ``A_ub y <= b_ub``, ``A_eq y = b_eq``,
    ``lb <= y <= ub``, integrality (0 continuous, 1 integer)."""

    A_ub: StaticArray
    b_ub: StaticArray
    A_eq: StaticArray
    b_eq: StaticArray
    lb: StaticArray
    ub: StaticArray
    integrality: StaticArray


_STATUS = {
    1: "HiGHS stopped at its time or iteration limit (time_limit) before proving optimality",
    2: "infeasible",
    3: "unbounded (the score grows without limit along a feasible ray)",
}


def mip_options(time_limit: float | None) -> dict[str, float]:
    """Options of ``scipy.optimize.milp`` for an optimal solution: HiGHS stops branch
    and bound at a relative gap of 1e-4 by default, which returns suboptimal
    solutions of problems with close objective values; gap 0 leaves HiGHS' absolute
    gap (1e-6) as the only stopping slack."""
    options: dict[str, float] = {"mip_rel_gap": 0.0}
    if time_limit is not None:
        options["time_limit"] = time_limit
    return options


def _solve_one(
    theta: np.ndarray, *, problem: _Problem, integer: bool, time_limit: float | None = None
) -> np.ndarray:
    from scipy.optimize import Bounds, LinearConstraint, linprog
    from scipy.optimize import milp as scipy_milp

    p = problem
    c = -np.asarray(theta, dtype=np.float64)
    if not integer:
        n = c.shape[0]
        res = linprog(
            c,
            A_ub=p.A_ub.array if p.A_ub.array.size else None,
            b_ub=p.b_ub.array if p.A_ub.array.size else None,
            A_eq=p.A_eq.array if p.A_eq.array.size else None,
            b_eq=p.b_eq.array if p.A_eq.array.size else None,
            bounds=list(zip(p.lb.array.tolist(), p.ub.array.tolist(), strict=True)) if n else None,
            method="highs-ds",  # dual simplex: a basic (vertex) solution
            options={} if time_limit is None else {"time_limit": time_limit},
        )
    else:
        cons = []
        if p.A_ub.array.size:
            cons.append(LinearConstraint(p.A_ub.array, -np.inf, p.b_ub.array))
        if p.A_eq.array.size:
            cons.append(LinearConstraint(p.A_eq.array, p.b_eq.array, p.b_eq.array))
        res = scipy_milp(
            c,
            integrality=p.integrality.array,
            bounds=Bounds(p.lb.array, p.ub.array),
            constraints=cons,
            options=mip_options(time_limit),
        )
    if res.status != 0 or res.x is None:
        raise ValueError(_STATUS.get(res.status, f"HiGHS status {res.status}: {res.message}"))
    x = np.asarray(res.x, dtype=np.float64)
    if integer:
        x = np.where(p.integrality.array == 1, np.round(x), x)
    return x


@dataclass(frozen=True)
class LinearProgramOp(HostSolverOp, Op):
    problem: _Problem
    integer: bool = False
    executor: Any = None
    nan_on_error: bool = False
    chunk_size: Any = None
    time_limit: float | None = None
    name: ClassVar[str] = "linear_program"
    event_ndim: ClassVar[int] = 1

    @property
    def label(self) -> str:
        """The public name, for error messages."""
        return "milp" if self.integer else "linear_program"

    def kernel(self, event: tuple[int, ...]) -> Any:
        return functools.partial(
            _solve_one, problem=self.problem, integer=self.integer, time_limit=self.time_limit
        )


def _problem(
    n: int,
    A_ub: Any,
    b_ub: Any,
    A_eq: Any,
    b_eq: Any,
    bounds: Any,
    integrality: Any,
    *,
    integer: bool,
) -> _Problem:
    def pair(A: Any, b: Any, an: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
        if (A is None) != (b is None):
            raise ValueError(f"{an} and {bn} must be given together")
        if A is None:
            return np.zeros((0, n)), np.zeros(0)
        A = static_array(A, name=an, dtype=np.float64, ndim=2)
        b = static_array(b, name=bn, dtype=np.float64, ndim=1)
        if A.shape[1] != n:
            raise ValueError(
                f"{an} must have {n} columns (one per variable, theta's last axis), got shape {A.shape}"
            )
        if b.shape[0] != A.shape[0]:
            raise ValueError(
                f"{bn} must have {A.shape[0]} entries (one per row of {an}), got shape {b.shape}"
            )
        if not np.all(np.isfinite(A)):
            raise ValueError(f"{an} must be finite")
        if np.any(np.isnan(b)):
            raise ValueError(f"{bn} contains NaN")
        return A, b

    A_ub, b_ub = pair(A_ub, b_ub, "A_ub", "b_ub")
    A_eq, b_eq = pair(A_eq, b_eq, "A_eq", "b_eq")
    if np.any(b_ub == -np.inf):
        raise ValueError("b_ub must not contain -inf: such a row A_ub y <= -inf cannot be met")
    if not np.all(np.isfinite(b_eq)):
        raise ValueError("b_eq must be finite")
    keep = b_ub < np.inf  # a row with b_ub = +inf constrains nothing (linprog rejects it)
    A_ub, b_ub = A_ub[keep], b_ub[keep]
    if bounds is None:
        bounds = (None, None)
    try:
        b = np.array(bounds, dtype=object)
        if b.shape == (2,):
            b = np.broadcast_to(b, (n, 2))
        if b.shape != (n, 2):
            raise ValueError
        lb = np.array([-np.inf if v is None else float(v) for v in b[:, 0]], dtype=np.float64)
        ub = np.array([np.inf if v is None else float(v) for v in b[:, 1]], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be a pair (lb, ub) for every variable or a sequence of {n} pairs; None means unbounded"
        ) from None
    if np.any(np.isnan(lb)) or np.any(np.isnan(ub)) or np.any(lb > ub):
        raise ValueError("bounds must have lb <= ub (no NaN)")
    if integer:
        if integrality is None:
            integ = np.ones(n, dtype=np.int64)
        else:
            integ = static_array(integrality, name="integrality", dtype=np.int64)
            integ = np.broadcast_to(integ, (n,)) if integ.ndim == 0 else integ
            if integ.shape != (n,) or not np.all((integ == 0) | (integ == 1)):
                raise ValueError(
                    f"integrality must be 0 (continuous) or 1 (integer) per variable, shape ({n},)"
                )
    else:
        integ = np.zeros(n, dtype=np.int64)
    return _Problem(*(StaticArray(a) for a in (A_ub, b_ub, A_eq, b_eq, lb, ub, integ)))


def _check_feasible(problem: _Problem, integer: bool, time_limit: float | None = None) -> None:
    """The constraints do not depend on θ: check once that they can be met."""
    n = problem.lb.array.shape[0]
    try:
        _solve_one(np.zeros(n), problem=problem, integer=integer, time_limit=time_limit)
    except ValueError as exc:
        if "infeasible" in str(exc):
            raise ValueError(
                "the constraints (A_ub, b_ub, A_eq, b_eq, bounds"
                + (", integrality" if integer else "")
                + ") are infeasible: no y satisfies them"
            ) from None
        raise


def _bind(
    theta: Any,
    A_ub: Any,
    b_ub: Any,
    A_eq: Any,
    b_eq: Any,
    bounds: Any,
    integrality: Any,
    executor: Any,
    check_finite: bool,
    integer: bool,
    time_limit: Any = None,
) -> Bound:
    theta, _, out_dtype = check_scores(theta, check_finite=check_finite)
    problem = _problem(
        theta.shape[-1], A_ub, b_ub, A_eq, b_eq, bounds, integrality, integer=integer
    )
    if time_limit is not None:
        time_limit = check_positive(time_limit, name="time_limit")
    _check_feasible(problem, integer, time_limit)
    traced = backend_for(theta).is_traced(theta)
    op = LinearProgramOp(problem, integer, check_executor(executor), traced, None, time_limit)
    return Bound(op, (theta,), out_dtype)


_COMMON_DOC = """
    Parameters
    ----------
    theta : array, shape ``(..., n)``
        Objective scores (maximised); for a cost vector ``c`` pass ``θ = -c``. Leading
        axes are batch axes; every instance shares the constraints.
    A_ub, b_ub : array-like, shapes ``(k, n)`` and ``(k,)``, optional
        Inequality constraints ``A_ub y <= b_ub`` (concrete data, not traced); a row
        with ``b_ub = inf`` constrains nothing.
    A_eq, b_eq : array-like, shapes ``(l, n)`` and ``(l,)``, optional
        Equality constraints ``A_eq y = b_eq`` (finite ``b_eq``).
    bounds : (lb, ub) or sequence of n (lb, ub) pairs
        Variable bounds, ``None`` for no bound; default ``(0, None)`` (``y >= 0``), as
        in ``scipy.optimize.linprog``.
    executor : concurrent.futures.Executor, optional
        Spread the instances over it, in chunks.
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite scores.
"""

_TIME_DOC = """    time_limit : float, optional
        Seconds HiGHS may spend per instance (and on the feasibility check); default
        no limit. The simplex method always terminates, but branch and bound
        (``milp``) can take exponentially long on hard instances: an instance that
        reaches the limit fails like an unbounded one (below).
"""

_RAISES_DOC = """
    Raises
    ------
    ValueError
        When the constraints are infeasible (checked once, when the function is
        called: they do not depend on θ).
    SolverError
        When an instance is unbounded or reaches ``time_limit``; the message names
        the instance. Raised as is with NumPy, PyTorch, CuPy and eager JAX arrays;
        under ``jax.jit`` (or ``jax.grad``, ``jax.vmap``: any tracing) a host callback
        cannot raise, and the rows of the failing instances are NaN. Instances with a
        NaN score are never solved: their rows are NaN.
"""


@op_function
def linear_program(
    theta: Any,
    /,
    A_ub: Any = None,
    b_ub: Any = None,
    A_eq: Any = None,
    b_eq: Any = None,
    bounds: Any = (0, None),
    *,
    executor: Any = None,
    check_finite: bool = True,
    time_limit: float | None = None,
) -> Bound:
    return _bind(
        theta, A_ub, b_ub, A_eq, b_eq, bounds, None, executor, check_finite, integer=False,
        time_limit=time_limit,
    )


linear_program.__doc__ = (
    r"""An optimal vertex of a polyhedron, by HiGHS' dual simplex.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y} \ \langle \theta, y \rangle
        \quad \text{s.t.} \quad A_{ub} y \le b_{ub},\ A_{eq} y = b_{eq},\ lb \le y \le ub

    solved per instance on the host by ``scipy.optimize.linprog(-θ, ...,
    method="highs-ds")`` (HiGHS, Huangfu & Hall 2018); the dual simplex method returns
    a basic solution, i.e. a vertex, the kind of point perturbed optimizers average.
"""
    + _COMMON_DOC
    + _TIME_DOC
    + _RAISES_DOC
    + r"""
    Returns
    -------
    array, shape ``(..., n)``, ``theta``'s dtype and device
        The solutions. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.linear_program(np.array([1.0, 2.0]), A_ub=[[1.0, 1.0]], b_ub=[1.0])
    array([0., 1.])
"""
)


@op_function
def milp(
    theta: Any,
    /,
    A_ub: Any = None,
    b_ub: Any = None,
    A_eq: Any = None,
    b_eq: Any = None,
    bounds: Any = (0, None),
    integrality: Any = None,
    *,
    executor: Any = None,
    check_finite: bool = True,
    time_limit: float | None = None,
) -> Bound:
    return _bind(
        theta, A_ub, b_ub, A_eq, b_eq, bounds, integrality, executor, check_finite, integer=True,
        time_limit=time_limit,
    )


milp.__doc__ = (
    r"""An optimal solution of a mixed-integer linear program, by HiGHS.

    .. math::

        y^*(\theta) = \operatorname*{argmax}_{y} \ \langle \theta, y \rangle
        \quad \text{s.t.} \quad A_{ub} y \le b_{ub},\ A_{eq} y = b_{eq},\
        lb \le y \le ub,\ y_j \in \mathbb Z \text{ where integrality}_j = 1

    solved per instance on the host by ``scipy.optimize.milp`` (HiGHS' branch and
    cut); integer variables are rounded to the nearest integer (HiGHS returns them up
    to its feasibility tolerance).
"""
    + _COMMON_DOC
    + r"""    integrality : array-like of 0/1, shape ``(n,)`` or scalar, optional
        1 for an integer variable; default: all integer.
"""
    + _TIME_DOC
    + _RAISES_DOC
    + r"""
    Returns
    -------
    array, shape ``(..., n)``, ``theta``'s dtype and device
        The solutions. Zero derivative almost everywhere.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> dc.solvers.milp(np.array([5.0, 4.0]), A_ub=[[6.0, 4.0]], b_ub=[9.0])
    array([0., 2.])
"""
)
