"""Assertion helpers and the tolerance policy shared by the tests and the conformance suite.

Tolerances scale with the dtype: ``"exact"`` ops (solvers, sorting) must agree to the
last bit; ``"float"`` ops to ``4·sqrt(eps)`` relative/absolute, the default of the
array-API test ecosystem; ``"reduction"`` ops (sums over many terms, whose rounding
order differs between backends) to ``64·eps·sqrt(n)``-style bounds expressed as a
multiple of ``sqrt(eps)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import backend_for
from .op import value_and_vjp

__all__ = [
    "GradcheckReport",
    "GradcheckResult",
    "assert_close",
    "finite_difference_vjp",
    "gradcheck",
    "max_abs_error",
    "to_numpy",
    "tolerance",
]

_KINDS = ("exact", "float", "reduction")


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of any supported array (one explicit device->host transfer)."""
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x)
    return backend_for(x, name="x").to_numpy(x)  # TypeError for non-arrays


def tolerance(dtype: Any, kind: str = "float") -> tuple[float, float]:
    """``(rtol, atol)`` for comparing results of ``dtype`` computed two ways."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "exact":
        return 0.0, 0.0
    eps = float(np.finfo(np.dtype(str(dtype).rsplit(".", 1)[-1])).eps)
    scale = 4.0 if kind == "float" else 32.0
    tol = scale * eps**0.5
    return tol, tol


def max_abs_error(actual: Any, desired: Any) -> float:
    a, d = to_numpy(actual).astype(np.float64), to_numpy(desired).astype(np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - d)))


def assert_close(
    actual: Any,
    desired: Any,
    *,
    kind: str = "float",
    rtol: float | None = None,
    atol: float | None = None,
    check_dtype: bool = True,
    err_msg: str = "",
) -> float:
    """Assert shape, dtype name and values agree; return the max absolute error.

    ``actual`` may be any backend's array; ``desired`` is usually the NumPy reference.
    """
    a, d = to_numpy(actual), to_numpy(desired)
    if a.shape != d.shape:
        raise AssertionError(f"{err_msg} shape {a.shape} != expected {d.shape}")
    if check_dtype and a.dtype != d.dtype:
        raise AssertionError(f"{err_msg} dtype {a.dtype} != expected {d.dtype}")
    r, t = tolerance(d.dtype if d.dtype.kind == "f" else np.float64, kind)
    rtol = r if rtol is None else rtol
    atol = t if atol is None else atol
    np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=err_msg)
    return max_abs_error(a, d)


def finite_difference_vjp(f: Any, x: np.ndarray, g: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of ``<g, f(x)>`` with respect to every entry of ``x``.

    ``f`` maps a NumPy array to a NumPy array (any shape); 2·x.size evaluations.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        out[idx] = np.sum(g * (to_numpy(f(x + e)) - to_numpy(f(x - e)))) / (2 * h)
    return out


# ---------------------------------------------------------------------------------
# Reference gradient checking for users' own layers
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradcheckResult:
    """One comparison made by :func:`gradcheck`."""

    method: str
    max_error: float
    tolerance: float
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class GradcheckReport:
    """What :func:`gradcheck` found; ``bool(report)`` is ``report.passed``."""

    function: str
    results: tuple[GradcheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        lines = [f"gradcheck of {self.function}: {'PASS' if self.passed else 'FAIL'}"]
        for r in self.results:
            mark = "ok  " if r.passed else "FAIL"
            lines.append(f"  {mark} {r.method:<38} max error {r.max_error:.2e} (tolerance {r.tolerance:.1e}) {r.detail}")
        return "\n".join(lines)


def gradcheck(
    f: Any,
    theta: Any,
    *args: Any,
    eps: float = 1e-6,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    num_directions: int = 4,
    max_elementwise: int = 64,
    seed: int = 0,
    raise_on_failure: bool = False,
    **kwargs: Any,
) -> GradcheckReport:
    r"""Check a dopt function's gradients the way the conformance suite does.

    ``f`` is a dopt function (built on an Op: every public dopt layer, your
    :func:`dopt_core.solvers.solver`, or your own ``@op_function``); ``theta`` and
    ``args``/``kwargs`` its arguments, in any supported array library. Checks:

    1. **finite differences (float64, NumPy)** — the explicit VJP against central
       differences: the dot-product test :math:`\langle J^\top g, v\rangle \approx
       \langle g, (f(\theta + \epsilon v) - f(\theta - \epsilon v))/2\epsilon\rangle` for
       ``num_directions`` random ``g, v``, and, when θ has at most ``max_elementwise``
       entries, every entry of :math:`J^\top g` (the report names the worst one);
    2. **backend vs reference** — the gradient as ``theta``'s own framework computes it
       (torch ``autograd`` / ``jax.vjp`` through the plugin, or the explicit VJP for
       libraries without autodiff), in ``theta``'s dtype, against the NumPy reference.

    Stochastic layers must get fixed ``noise=`` (or the check compares different
    samples), and piecewise-constant outputs have zero finite differences while their
    estimators are not zero: check smooth layers (relaxations, projections, your own
    smooth ops), and test estimators statistically instead.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> report = dc.testing.gradcheck(dc.projections.project, np.array([[3.0, 1.0, 2.0]]), "norm")
    >>> report.passed
    True
    """
    name = getattr(f, "__name__", repr(f))
    backend = backend_for(theta, name="theta")
    host = [to_numpy(a).astype(np.float64) if _is_float_array(a) else a for a in (theta, *args)]
    host_kw = {k: to_numpy(v).astype(np.float64) if _is_float_array(v) else v for k, v in kwargs.items()}
    t64, rest = host[0], tuple(host[1:])
    y, vjp = value_and_vjp(f, t64, *rest, **host_kw)
    rng = np.random.default_rng(seed)
    results = []

    def fd(direction: np.ndarray, g: np.ndarray) -> float:
        up = to_numpy(f(t64 + eps * direction, *rest, **host_kw))
        down = to_numpy(f(t64 - eps * direction, *rest, **host_kw))
        return float(np.sum(g * (up - down)) / (2 * eps))

    checks = []
    g = rng.normal(size=np.shape(y))
    for _ in range(num_directions):
        v = rng.normal(size=t64.shape)
        g = rng.normal(size=np.shape(y))
        lhs, rhs = float(np.sum(to_numpy(vjp(g)) * v)), fd(v, g)
        checks.append((abs(lhs - rhs), atol + rtol * max(abs(lhs), abs(rhs))))
    worst, worst_tol = max(checks, key=lambda c: c[0] - c[1])
    results.append(GradcheckResult("explicit VJP vs finite differences", worst, worst_tol, worst <= worst_tol, "(random directions)"))
    if t64.size <= max_elementwise:
        grad = to_numpy(vjp(g))
        errs = np.abs(grad - finite_difference_vjp(lambda t: f(t, *rest, **host_kw), t64, g, eps))
        i = np.unravel_index(int(np.argmax(errs)), t64.shape)
        tol = atol + rtol * float(np.max(np.abs(grad)))
        detail = f"(worst entry {tuple(int(k) for k in i)})"
        results.append(GradcheckResult("explicit VJP vs finite differences, per entry", float(errs.max()), tol, float(errs.max()) <= tol, detail))

    # the same gradient computed on theta's own backend, as its users get it
    g_b = backend.from_numpy(g.astype(to_numpy(theta).dtype), like=theta)
    reference = value_and_vjp(f, t64, *rest, **host_kw)[1](g)
    rtol_b, atol_b = tolerance(to_numpy(theta).dtype, "float")
    try:
        ours = backend.native_vjp(lambda t: f(t, *args, **kwargs), theta, g_b)
        method = f"{backend.name} autodiff vs NumPy reference"
    except NotImplementedError:
        ours = value_and_vjp(f, theta, *args, **kwargs)[1](g_b)
        method = f"{backend.name} explicit VJP vs NumPy reference"
    err = max_abs_error(ours, reference)
    tol = atol_b + rtol_b * float(np.max(np.abs(reference), initial=0.0))
    results.append(GradcheckResult(method, err, tol, err <= tol))
    report = GradcheckReport(name, tuple(results))
    if raise_on_failure and not report.passed:
        raise AssertionError(str(report))
    return report


def _is_float_array(a: Any) -> bool:
    try:
        return to_numpy(a).dtype.kind == "f"
    except TypeError:
        return False
