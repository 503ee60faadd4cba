"""Gradient checking for users' own layers and solvers, and the shared tolerance policy.

* :func:`gradcheck` — the gradients of a dopt function (finite differences in float64,
  the backend against the NumPy reference with the same pre-drawn noise, a statistical
  check of Monte-Carlo estimators, InferOpt's identities) or of any torch/JAX callable
  with a custom backward (finite differences of its own forward in float64, a NumPy
  ``reference``), as a :class:`GradcheckReport`;
* :func:`check_solver` — a solver returns integral, feasible, optimal vertices,
  deterministically, in ``theta``'s library, dtype, device and batch shape;
* :func:`check_perturbed_identities` — InferOpt's identities for a noise law;
* :func:`assert_close`, :func:`tolerance`, :func:`finite_difference_vjp` — what the
  tests and the conformance suite compare with.

Tolerances scale with the dtype: ``"exact"`` ops (solvers, sorting) must agree to the
last bit; ``"float"`` ops to ``4·sqrt(eps)`` relative/absolute, the default of the
array-API test ecosystem; ``"reduction"`` ops (sums over many terms, whose rounding
order differs between backends) to ``64·eps·sqrt(n)``-style bounds expressed as a
multiple of ``sqrt(eps)``. Finite-difference checks in float64 use ``rtol=1e-5``
of the largest expected entry plus ``atol=1e-8`` plus the rounding of the
differenced values (``8 eps sum|g||f| / 2h``, which matters only where the values
dwarf the gradient); statistical checks ``4.5`` standard errors measured from
independent noise batches.

This module imports no framework: torch and JAX inputs are recognised through the
backend registry (:func:`dopt_core.backend_for`), which loads their plugin only when
such an array is seen.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._lib._checks import check_int, check_positive, check_real
from .backend import Backend, backend_for
from .op import OpFunction, value_and_vjp
from .perturbed import perturbed

__all__ = [
    "GradcheckReport",
    "GradcheckResult",
    "assert_close",
    "check_perturbed_identities",
    "check_solver",
    "finite_difference_vjp",
    "gradcheck",
    "max_abs_error",
    "to_numpy",
    "tolerance",
]

_KINDS = ("exact", "float", "reduction")


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy copy of any supported array (one explicit device->host transfer).

    Parameters
    ----------
    x : array
        An array of any supported library (``TypeError`` for anything else).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.testing import to_numpy
    >>> to_numpy(np.float32(2.5)), to_numpy(np.arange(3.0))
    (array(2.5, dtype=float32), array([0., 1., 2.]))
    """
    if isinstance(x, np.ndarray | np.generic):
        return np.asarray(x)
    return backend_for(x, name="x").to_numpy(x)  # TypeError for non-arrays


def tolerance(dtype: Any, kind: str = "float") -> tuple[float, float]:
    """``(rtol, atol)`` for comparing results of ``dtype`` computed two ways.

    Parameters
    ----------
    dtype : dtype
        The dtype of the compared results (any library's float dtype).
    kind : {"exact", "float", "reduction"}
        ``"exact"`` (solvers: bit-equal), ``"float"`` (4 √eps), ``"reduction"`` (32 √eps,
        for sums over many terms).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.testing import tolerance
    >>> tolerance(np.dtype("float64")), tolerance(np.dtype("float32"), "exact")
    ((5.960464477539063e-08, 5.960464477539063e-08), (0.0, 0.0))
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    if kind == "exact":
        return 0.0, 0.0
    eps = float(np.finfo(np.dtype(str(dtype).rsplit(".", 1)[-1])).eps)
    scale = 4.0 if kind == "float" else 32.0
    tol = scale * eps**0.5
    return tol, tol


def max_abs_error(actual: Any, desired: Any) -> float:
    """Largest absolute difference of two arrays of one shape, in float64 (0 when empty).

    Parameters
    ----------
    actual, desired : array
        Arrays of any supported libraries.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.testing import max_abs_error
    >>> max_abs_error(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    0.5
    """
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

    Parameters
    ----------
    actual, desired : array
        The result and the reference.
    kind : {"exact", "float", "reduction"}
        Tolerance class of :func:`tolerance`, for ``desired``'s dtype.
    rtol, atol : float, optional
        Override the class's tolerances.
    check_dtype : bool
        Also require the same dtype.
    err_msg : str
        Prefix of the failure message.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.testing import assert_close
    >>> assert_close(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-9])) < 1e-8
    True
    >>> assert_close(np.array([1.0]), np.array([1.0], dtype=np.float32), err_msg="y:")
    Traceback (most recent call last):
    AssertionError: y: dtype float64 != expected float32
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

    Parameters
    ----------
    f : callable
        NumPy array to NumPy array (any shapes).
    x : numpy.ndarray
        The point (computed in float64).
    g : numpy.ndarray
        Cotangent, shaped like ``f(x)``.
    h : float
        Step of the central differences.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.testing import finite_difference_vjp
    >>> finite_difference_vjp(lambda x: x**2, np.array([1.0, 3.0]), np.ones(2)).round(6)  # 2x
    array([2., 6.])
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        out[idx] = np.sum(g * (to_numpy(f(x + e)) - to_numpy(f(x - e)))) / (2 * h)
    return out


# ---------------------------------------------------------------------------------
# Reference gradient checking for users' own layers, losses and solvers
# ---------------------------------------------------------------------------------
_METHODS = ("auto", "fd", "reference", "statistical", "identities")
_Z = 4.5  # standard errors allowed by the statistical checks (two-sided, several entries)


@dataclass(frozen=True)
class GradcheckResult:
    """One comparison made by :func:`gradcheck` or :func:`check_solver`.

    ``max_error`` is the largest absolute error, ``max_rel_error`` the same divided by
    the largest magnitude of the expected values, ``worst_index`` the entry where the
    absolute error is largest (``None`` for scalar tests), ``tolerance`` the absolute
    error allowed and ``why`` where that allowance comes from.
    """

    method: str
    max_error: float
    tolerance: float
    passed: bool
    detail: str = ""
    max_rel_error: float = float("nan")
    worst_index: tuple[int, ...] | None = None
    why: str = ""


@dataclass(frozen=True)
class GradcheckReport:
    """What :func:`gradcheck` found; ``bool(report)`` is ``report.ok``.

    ``method`` names the kind of checks run ("fd", "reference", "statistical",
    "identities", "solver", joined by "+"); ``results`` holds one
    :class:`GradcheckResult` per comparison (per output and input where the function
    has several).
    """

    function: str
    results: tuple[GradcheckResult, ...]
    method: str = ""

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def passed(self) -> bool:
        return self.ok

    @property
    def failures(self) -> tuple[GradcheckResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def __bool__(self) -> bool:
        return self.ok

    def assert_ok(self) -> GradcheckReport:
        """Raise ``AssertionError`` with the whole report unless every check passed."""
        if not self.ok:
            raise AssertionError(str(self))
        return self

    def __str__(self) -> str:
        head = f"gradcheck of {self.function}: {'PASS' if self.ok else 'FAIL'}"
        lines = [head + (f" (method {self.method})" if self.method else "")]
        for r in self.results:
            mark = "ok  " if r.passed else "FAIL"
            rel = "" if math.isnan(r.max_rel_error) else f", rel {r.max_rel_error:.1e}"
            where = "" if r.worst_index is None else f" at entry {r.worst_index}"
            lines.append(
                f"  {mark} {r.method:<46} max error {r.max_error:.2e}{rel}{where} "
                f"(tolerance {r.tolerance:.1e}) {r.detail}".rstrip()
            )
            if r.why and not r.passed:
                lines.append(f"       tolerance: {r.why}")
        return "\n".join(lines)


def _compare(method: str, actual: np.ndarray, expected: np.ndarray, atol: float, rtol: float,
             why: str, detail: str = "") -> GradcheckResult:
    """Entrywise comparison; the allowance is ``atol + rtol * max|expected|``."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return GradcheckResult(method, float("inf"), 0.0, False,
                               f"(shape {a.shape}, expected {e.shape})", why=why)
    err = np.abs(a - e)
    if err.size == 0:
        return GradcheckResult(method, 0.0, atol, True, detail, 0.0, None, why)
    if not np.all(np.isfinite(a)):
        i = np.unravel_index(int(np.argmax(~np.isfinite(a))), a.shape)
        return GradcheckResult(method, float("inf"), 0.0, False, "(non-finite value)", worst_index=_idx(i), why=why)
    scale = float(np.max(np.abs(e)))
    i = np.unravel_index(int(np.argmax(err)), err.shape)
    worst = float(err[i])
    tol = atol + rtol * scale
    rel = worst / scale if scale > 0 else (0.0 if worst == 0 else float("inf"))
    return GradcheckResult(method, worst, tol, worst <= tol, detail, rel, _idx(i) if err.ndim else None, why)


def _idx(i: tuple[Any, ...]) -> tuple[int, ...]:
    return tuple(int(k) for k in i)


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer) or rng < 0:
        raise TypeError(f"rng must be an int seed in [0, 2**63) or a numpy.random.Generator, got {rng!r}")
    return np.random.default_rng(int(rng))


def _check_common(inputs: tuple[Any, ...], method: str, num_directions: Any, eps: Any,
                  max_elementwise: Any, atol: Any, rtol: Any) -> int:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not inputs:
        raise TypeError("gradcheck needs at least one input array after fn")
    nd = check_int(num_directions, name="num_directions", low=1)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0 < eps < 1:
        raise ValueError(f"eps must be a finite step in (0, 1), got {eps!r}")
    check_int(max_elementwise, name="max_elementwise", low=0)
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if tol is not None and not check_real(tol, name=name) >= 0:
            raise ValueError(f"{name} must be a non-negative number, got {tol!r}")
    return nd


def _check_not_empty(x: Any, name: str) -> None:
    shape = tuple(getattr(x, "shape", ()))
    if math.prod(shape) == 0 and shape != ():
        raise ValueError(
            f"{name} is empty (shape {shape}): gradcheck needs at least one entry to "
            "differentiate (an empty batch has no gradient to check)"
        )


def gradcheck(
    fn: Any,
    *inputs: Any,
    reference: Any = None,
    method: str = "auto",
    noise: Any = None,
    rng: Any = None,
    atol: float | None = None,
    rtol: float | None = None,
    eps: float = 1e-6,
    num_directions: int = 4,
    max_elementwise: int = 64,
    num_batches: int = 100,
    fd_step: float | None = None,
    raise_on_failure: bool = False,
    **kwargs: Any,
) -> GradcheckReport:
    r"""Check the gradients of a dopt function or of any torch/JAX function.

    Parameters
    ----------
    fn : callable
        Either a **dopt function** (any public dopt layer or loss, a solver lifted with
        :func:`dopt_core.solvers.solver` and wrapped in :func:`~dopt_core.perturbed`,
        :func:`~dopt_core.fenchel_young_loss`, :func:`~dopt_core.identity`..., or your
        own ``@op_function``), or **any torch or JAX callable** — a
        ``torch.autograd.Function.apply``, a ``jax.custom_vjp`` function, a module —
        of one or more arrays, returning an array or a tuple of arrays (outputs that
        are not floating-point, such as indices, are compared with ``reference`` only).
    *inputs
        The arrays (and, for dopt functions, static positional arguments). For a dopt
        function the gradient is taken with respect to the first; for a torch/JAX
        callable, with respect to every floating-point input.
    reference : callable, optional
        A NumPy implementation of the same function (torch/JAX callables): its values
        are compared with ``fn``'s and its finite differences with ``fn``'s backward.
    method : {"auto", "fd", "reference", "statistical", "identities"}
        ``"fd"``: the VJP against central finite differences in float64. ``"reference"``
        (dopt functions): the VJP on the inputs' backend against the NumPy reference
        VJP, with the same pre-drawn noise. ``"statistical"`` (stochastic dopt
        functions): the Monte-Carlo Jacobian against finite differences of the smoothed
        map with common random numbers. ``"identities"`` (perturbed functions):
        InferOpt's two identities with the function's noise law, ε and sample count
        (:func:`check_perturbed_identities`). ``"auto"``: ``fd`` + ``reference`` for
        smooth dopt functions and any torch/JAX callable; ``reference`` +
        ``statistical`` + ``identities`` for perturbed functions and losses;
        ``reference`` alone for gradient replacements (``identity``, ``imle``,
        ``straight_through``, ``interpolation``), whose VJP is by design not the
        derivative of their forward.
    noise : array, optional
        Pre-drawn standard noise for a stochastic dopt function (shape
        ``(num_samples, *theta.shape)``); drawn from ``rng`` when omitted.
    rng : int or numpy.random.Generator, optional
        Seed of the cotangents, directions and noise draws (default 0).
    atol, rtol : float, optional
        Tolerance of the finite-difference comparisons (default ``1e-8`` and ``1e-5``
        in float64). Comparisons across backends use the dtype policy of
        :func:`tolerance` unless given; statistical ones ``4.5`` measured standard
        errors plus ``atol``.
    eps : float
        Finite-difference step of the deterministic checks.
    num_directions : int
        Random directions of the dot-product test :math:`\langle J^\top g, v\rangle
        \approx \langle g, (f(\theta + \epsilon v) - f(\theta - \epsilon v))/2\epsilon
        \rangle` (≥ 1); when θ has at most ``max_elementwise`` entries every entry of
        :math:`J^\top g` is checked too and the report names the worst one.
    max_elementwise : int
        Largest number of entries of θ for which every entry of :math:`J^\top g` is
        checked (and the worst one named), beside the dot-product test. ``0``: the
        dot-product test alone.
    num_batches : int
        Independent noise batches of the statistical checks (their spread gives the
        standard error; ≥ 2).
    fd_step : float, optional
        Step of the finite differences of the smoothed map (default ε/8, times
        ``|theta|`` when multiplicative).
    raise_on_failure : bool
        Raise ``AssertionError`` with the report on failure (same as
        ``report.assert_ok()``).
    **kwargs
        Keyword arguments of ``fn``.

    Returns
    -------
    GradcheckReport
        ``report.ok``, ``str(report)`` (one line per comparison: max absolute and
        relative errors, worst entry, tolerance), ``report.assert_ok()``.

    Notes
    -----
    Piecewise-constant outputs (solvers) have zero finite differences while their
    estimators are not zero: perturbed functions are therefore checked statistically.
    Stochastic torch/JAX layers that draw their own noise cannot be finite-differenced;
    check the dopt function they wrap, with ``noise=``.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> report = dc.testing.gradcheck(dc.projections.project, np.array([[3.0, 1.0, 2.0]]), "norm")
    >>> report.ok
    True
    """
    nd = _check_common(inputs, method, num_directions, eps, max_elementwise, atol, rtol)
    gen = _generator(rng)
    if isinstance(fn, OpFunction):
        report = _gradcheck_dopt(fn, inputs, kwargs, method=method, noise=noise, gen=gen, atol=atol,
                                 rtol=rtol, eps=eps, nd=nd, max_elementwise=max_elementwise,
                                 num_batches=num_batches, fd_step=fd_step)
    elif callable(fn):
        if method not in ("auto", "fd"):
            raise ValueError(f"method={method!r} applies to dopt functions only; use 'fd' or 'auto' for {_name(fn)}")
        if noise is not None:
            raise ValueError("noise= applies to dopt functions only")
        report = _gradcheck_native(fn, inputs, kwargs, reference=reference, gen=gen, atol=atol, rtol=rtol,
                                   eps=eps, nd=nd, max_elementwise=max_elementwise)
    else:
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if raise_on_failure:
        report.assert_ok()
    return report


def _name(f: Any) -> str:
    return getattr(f, "__name__", None) or getattr(type(f), "__name__", repr(f))


# -- dopt functions -------------------------------------------------------------------
def _kind(f: OpFunction, bound: Any) -> str:
    if type(bound.op).__module__ == "dopt_core.replacements":  # imle has a perturbation too
        return "replacement"
    if hasattr(f, "perturbation"):
        return "stochastic"
    return "smooth"


def _gradcheck_dopt(f: OpFunction, inputs: tuple[Any, ...], kwargs: dict[str, Any], *, method: str,
                    noise: Any, gen: np.random.Generator, atol: float | None, rtol: float | None,
                    eps: float, nd: int, max_elementwise: int, num_batches: int,
                    fd_step: float | None) -> GradcheckReport:
    theta = inputs[0]
    backend = backend_for(theta, name="theta")
    _check_not_empty(theta, "theta")
    host = tuple(_host64(a) for a in inputs)
    host_kw = {k: _host64(v) for k, v in kwargs.items()}
    p = getattr(f, "perturbation", None)
    if p is not None:
        if noise is None:
            noise = _draw(p, gen, host[0].shape, like=host[0])
        host_kw["noise"] = _host64(noise)
        kwargs = {**kwargs, "noise": noise if _is_array_of(noise, backend) else
                  backend.from_numpy(to_numpy(noise).astype(to_numpy(theta).dtype), like=theta)}
    elif noise is not None:
        host_kw["noise"] = _host64(noise)
        kwargs = {**kwargs, "noise": noise}
    kind = _kind(f, f.bind(*host, **host_kw))
    if method == "auto":
        methods = {"smooth": ("fd", "reference"), "replacement": ("reference",),
                   "stochastic": ("reference", "statistical", "identities")}[kind]
    else:
        if method in ("statistical", "identities") and p is None:
            raise ValueError(f"method={method!r} needs a perturbed function or loss (built with a perturbation)")
        methods = (method,)
    rtol_fd = 1e-5 if rtol is None else rtol
    atol_fd = 1e-8 if atol is None else atol
    y, vjp = value_and_vjp(f, *host, **host_kw)
    g = gen.normal(size=np.shape(y))
    results: list[GradcheckResult] = []
    if "fd" in methods:
        results += _fd_checks(lambda t: to_numpy(f(t, *host[1:], **host_kw)), host[0], vjp, g, gen,
                              eps=eps, nd=nd, max_elementwise=max_elementwise, atol=atol_fd, rtol=rtol_fd,
                              label="explicit VJP")
    if "reference" in methods:
        results += _reference_checks(f, inputs, kwargs, host, host_kw, backend, g, atol, rtol)
    if "statistical" in methods:
        results.append(_statistical_check(f, host, host_kw, p, g, gen, num_batches, fd_step, atol))
    if "identities" in methods:
        results += check_perturbed_identities(
            noise=p.noise, sigma=p.sigma, num_samples=p.num_samples, multiplicative=p.multiplicative,
            antithetic=p.antithetic, theta=host[0][(0,) * (host[0].ndim - p.event_ndim)]
            if host[0].ndim > p.event_ndim else host[0],
            rng=gen, num_batches=num_batches, event_ndim=p.event_ndim,
        ).results
    return GradcheckReport(getattr(f, "__name__", repr(f)), tuple(results), "+".join(methods))


def _host64(a: Any) -> Any:
    """Float arrays of any backend as float64 NumPy; anything else unchanged."""
    try:
        arr = to_numpy(a)
    except TypeError:
        return a
    return arr.astype(np.float64) if arr.dtype.kind == "f" else arr


def _is_array_of(x: Any, backend: Any) -> bool:
    try:
        return backend_for(x) is backend
    except TypeError:
        return False


def _draw(p: Any, gen: np.random.Generator, shape: tuple[int, ...], *, like: np.ndarray) -> np.ndarray:
    """Standard noise of ``p``'s law, ``(num_samples, *shape)``, in float64 NumPy."""
    m = p.num_samples // 2 if p.antithetic else p.num_samples
    z = np.asarray(p.noise.sample(backend_for(like), gen, (m, *shape), like=like), dtype=np.float64)
    return np.concatenate([z, -z], axis=0) if p.antithetic else z


def _fd_checks(f_np: Callable[[np.ndarray], np.ndarray], t64: np.ndarray, vjp: Callable[[Any], Any],
               g: np.ndarray, gen: np.random.Generator, *, eps: float, nd: int, max_elementwise: int,
               atol: float, rtol: float, label: str, precision: str = "float64") -> list[GradcheckResult]:
    r"""The dot-product test in ``nd`` random directions, then every entry of ``J^T g``.

    Beside ``atol + rtol * scale`` each comparison allows the rounding of the
    differenced values, :math:`8\,\epsilon\,\sum_j |g_j|\,|f_j(\theta)| / (2h)`
    (ε of the output's dtype): it matters only where the values dwarf the
    gradient (``f = t**2 + 1e6``), whose central differences are that inaccurate."""
    y0 = np.asarray(f_np(t64))
    u = float(np.finfo(y0.dtype).eps) if y0.dtype.kind == "f" else float(np.finfo(np.float64).eps)

    def rounding(gg: np.ndarray) -> float:
        return 8.0 * u * float(np.sum(np.abs(gg) * np.abs(y0))) / (2 * eps)

    why = (f"atol {atol:g} + rtol {rtol:g} x scale + rounding of the differenced values "
           f"(8 eps |g|.|f| / 2h = {rounding(g):.1e}): central differences in {precision}, "
           f"step {eps:g}")
    worst: GradcheckResult | None = None
    for _ in range(nd):
        v = gen.normal(size=t64.shape)
        gd = gen.normal(size=g.shape)
        lhs = float(np.sum(to_numpy(vjp(gd)) * v))
        rhs = float(np.sum(gd * (f_np(t64 + eps * v) - f_np(t64 - eps * v))) / (2 * eps))
        r = _compare(f"{label} vs finite differences", np.array(lhs), np.array(rhs),
                     atol + rounding(gd), rtol, why, "(random directions)")
        if worst is None or r.max_error - r.tolerance > worst.max_error - worst.tolerance:
            worst = r
    assert worst is not None
    out = [worst]
    if t64.size <= max_elementwise:
        grad = to_numpy(vjp(g))
        fd = finite_difference_vjp(f_np, t64, g, eps)
        out.append(_compare(f"{label} vs finite differences, per entry", grad, fd,
                            atol + rounding(g), rtol, why, "(worst entry shown)"))
    return out


def _reference_checks(f: OpFunction, inputs: tuple[Any, ...], kwargs: dict[str, Any], host: tuple[Any, ...],
                      host_kw: dict[str, Any], backend: Any, g: np.ndarray, atol: float | None,
                      rtol: float | None) -> list[GradcheckResult]:
    """The forward and the gradient on the inputs' backend against the NumPy reference."""
    theta = inputs[0]
    dtype = to_numpy(theta).dtype
    r_d, a_d = tolerance(dtype, "float")
    r_d, a_d = (r_d if rtol is None else rtol), (a_d if atol is None else atol)
    why = f"dtype policy for {dtype}: 4*sqrt(eps) relative and absolute"
    y_ref, vjp_ref = value_and_vjp(f, *host, **host_kw)
    out = []
    if backend.name != "numpy":
        y = f(*inputs, **kwargs)
        out.append(_compare(f"{backend.name} forward vs NumPy reference", to_numpy(y), to_numpy(y_ref),
                            a_d, r_d, why))
    reference = to_numpy(vjp_ref(g))
    g_b = backend.from_numpy(g.astype(to_numpy(y_ref).dtype if dtype.kind != "f" else dtype), like=theta)
    try:
        ours = backend.native_vjp(lambda t: f(t, *inputs[1:], **kwargs), theta, g_b)
        label = f"{backend.name} autodiff vs NumPy reference VJP"
    except NotImplementedError:
        ours = value_and_vjp(f, *inputs, **kwargs)[1](g_b)
        label = f"{backend.name} explicit VJP vs NumPy reference VJP"
    itself = backend.name == "numpy" and all(
        a is h or not isinstance(a, np.ndarray) or a.dtype == h.dtype
        for a, h in zip(inputs, host, strict=True))
    detail = "(same pre-drawn noise)" if "noise" in kwargs else ""
    if itself:  # float64 NumPy inputs are the reference's own: nothing independent compared
        detail = "(float64 NumPy inputs: the reference compared with itself; use torch/JAX/float32)"
    out.append(_compare(label, to_numpy(ours), reference, a_d, r_d, why, detail))
    return out


def _smoothing_step(p: Any, t64: np.ndarray, fd_step: float | None) -> float:
    if fd_step is not None:
        return check_positive(fd_step, name="fd_step")
    scale = float(np.median(np.abs(t64))) if p.multiplicative else 1.0
    return 0.125 * p.sigma * max(scale, 1e-3)


def _richardson_fd(phi: Callable[[np.ndarray], float], t: np.ndarray, v: np.ndarray, h: float) -> float:
    r"""Directional derivative of ``phi`` at ``t`` along ``v`` by central differences
    with steps ``h`` and ``2h`` combined as :math:`(4D_h - D_{2h})/3` (Richardson), which
    cancels the :math:`O(h^2)` term: the smoothed map curves on the scale of ε, so a
    plain central difference at a step useful against Monte-Carlo noise is biased."""
    d1 = (phi(t + h * v) - phi(t - h * v)) / (2 * h)
    d2 = (phi(t + 2 * h * v) - phi(t - 2 * h * v)) / (4 * h)
    return (4 * d1 - d2) / 3


def _pilot_direction(f: OpFunction, t64: np.ndarray, rest: tuple[Any, ...], kw: dict[str, Any], p: Any,
                     g: np.ndarray, gen: np.random.Generator, b: int) -> np.ndarray:
    """A direction where the VJP is large: the mean estimate of ``J^T g`` over ``b``
    pilot batches (independent of the test's noise), scaled to unit RMS; a random
    direction when the estimate vanishes."""
    pilot = np.zeros_like(t64)
    for _ in range(b):
        _, vjp = value_and_vjp(f, t64, *rest, noise=_draw(p, gen, t64.shape, like=t64), **kw)
        pilot += to_numpy(vjp(g))
    if not np.any(pilot):
        pilot = gen.normal(size=t64.shape)
    return pilot / np.sqrt(np.mean(pilot * pilot))


def _statistical_check(f: OpFunction, host: tuple[Any, ...], host_kw: dict[str, Any], p: Any, g: np.ndarray,
                       gen: np.random.Generator, num_batches: int, fd_step: float | None,
                       atol: float | None) -> GradcheckResult:
    r"""Monte-Carlo VJP against finite differences of the smoothed map, common noise.

    For ``B`` independent noise batches :math:`Z_b`, the paired differences
    :math:`d_b = \langle \widehat{J^\top g}(Z_b), v\rangle - D_v\langle g, f(\cdot;
    Z_b)\rangle(\theta)`, the second term by Richardson-extrapolated central differences
    (:func:`_richardson_fd`), have mean :math:`O(h^4)` (both estimate the directional
    derivative of the smoothed map); the check allows ``4.5`` standard
    errors of their mean, measured from their spread. ``v`` is where the VJP is
    largest (:func:`_pilot_direction`), so that a mis-scaled estimator shows.
    """
    b = check_int(num_batches, name="num_batches", low=2)
    t64, rest = host[0], host[1:]
    kw = {k: v for k, v in host_kw.items() if k != "noise"}
    h = _smoothing_step(p, t64, fd_step)
    v = _pilot_direction(f, t64, rest, kw, p, g, gen, max(2, b // 4))
    est, fd = np.empty(b), np.empty(b)
    for i in range(b):
        z = _draw(p, gen, t64.shape, like=t64)
        _, vjp = value_and_vjp(f, t64, *rest, noise=z, **kw)
        est[i] = float(np.sum(to_numpy(vjp(g)) * v))
        fd[i] = _richardson_fd(lambda t: float(np.sum(g * to_numpy(f(t, *rest, noise=z, **kw)))), t64, v, h)
    d = est - fd
    se = float(np.std(d, ddof=1) / np.sqrt(b))
    tol = _Z * se + (1e-8 if atol is None else atol)
    err = abs(float(np.mean(d)))
    scale = abs(float(np.mean(fd)))
    resolves = f"resolves {tol / scale:.0%} of it" if scale > tol / 100 else "derivative ~0: weak check"
    detail = (f"(VJP {np.mean(est):.3g} vs smoothed FD {np.mean(fd):.3g} along the pilot direction, "
              f"{resolves}; {b} batches of {p.num_samples} samples, step {h:.3g})")
    why = f"{_Z} measured standard errors (SE {se:.2e} from {b} batches) of the paired differences"
    return GradcheckResult("Monte-Carlo VJP vs FD of smoothed map (CRN)", err, tol, err <= tol, detail,
                           err / scale if scale > 0 else float("nan"), None, why)


# -- InferOpt's identities -------------------------------------------------------------
def _identity_map(eta: Any) -> Any:
    return eta * 1.0


def _softmax_map(eta: Any) -> Any:
    xp = backend_for(eta, name="eta").namespace(eta)
    e = xp.exp(eta - xp.max(eta, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _mc_jacobian(f: OpFunction, theta: np.ndarray, p: Any, gen: np.random.Generator,
                 b: int) -> tuple[np.ndarray, np.ndarray]:
    """Batch means of the estimated Jacobian ``(n, n)`` (rows: outputs) and their SE."""
    n = theta.size
    jac = np.empty((b, n, n))
    for i in range(b):
        z = _draw(p, gen, theta.shape, like=theta)
        _, vjp = value_and_vjp(f, theta, noise=z)
        for j in range(n):
            e = np.zeros(n)
            e[j] = 1.0
            jac[i, j] = to_numpy(vjp(e.reshape(theta.shape))).ravel()
    return jac.mean(axis=0), jac.std(axis=0, ddof=1) / np.sqrt(b)


def _entrywise_statistical(method: str, err: np.ndarray, allow: np.ndarray, scale: float, detail: str,
                           why: str) -> GradcheckResult:
    """Pass when every entry is within its own allowance; report the entry closest to
    (or furthest beyond) it."""
    i = np.unravel_index(int(np.argmax(err - allow)), err.shape)
    worst = float(err[i])
    rel = worst / scale if scale > 0 else float("nan")
    return GradcheckResult(method, worst, float(allow[i]), bool(np.all(err <= allow)), detail, rel, _idx(i), why)


def check_perturbed_identities(
    *,
    noise: Any = "normal",
    sigma: float = 1.0,
    num_samples: int = 10,
    multiplicative: bool = False,
    antithetic: bool = False,
    theta: Any = None,
    smooth: Callable[[Any], Any] | None = None,
    small_sigma: float = 1e-2,
    rng: Any = None,
    num_batches: int = 100,
    event_ndim: int = 1,
) -> GradcheckReport:
    r"""InferOpt's two identities for the perturbed estimator with a given noise law.

    1. Perturbing the **identity map** :math:`y^*(\eta) = \eta` gives
       :math:`y_\varepsilon(\theta) = \theta + \varepsilon\,\mathbb E Z` (additive) or
       :math:`\theta` (multiplicative), whose Jacobian is the identity: the score
       estimator must return :math:`I` up to Monte-Carlo error, for any ε.
    2. As :math:`\varepsilon \to 0` the perturbed **smooth map** (``smooth``, default a
       softmax) has the map's own Jacobian: estimated at ``small_sigma`` with the
       control variate, it must match central finite differences of the map at
       :math:`\theta + \varepsilon\,\mathbb E Z` up to Monte-Carlo error plus
       :math:`\varepsilon` (the smoothing bias).

    Both tolerances are ``4.5`` standard errors measured over ``num_batches`` batches
    of ``num_samples`` draws. A wrong ``grad_nu`` of a custom :class:`~dopt_core.noise.Noise`,
    a missing 1/ε or a mis-scaled sample mean fails the first.

    Parameters
    ----------
    noise : str or Noise
        The noise law (``"normal"``, ``"gumbel"`` or a :class:`~dopt_core.noise.Noise`).
    sigma : float
        The smoothing ε of the first identity.
    num_samples : int
        Samples per estimate (one batch).
    multiplicative, antithetic : bool
        The perturbation's form and variance reduction, as in :func:`~dopt_core.perturbed`.
    theta : array, optional
        The point of the checks (default four evenly spaced scores in [-0.5, 0.7]).
    smooth : callable, optional
        The smooth map of the second identity (default a softmax).
    small_sigma : float
        The ε of the second identity.
    rng : int or numpy.random.Generator, optional
        Seed of the draws (default 0).
    num_batches : int
        Independent batches whose spread gives the standard error (≥ 2).
    event_ndim : int
        Trailing axes of ``theta`` forming one instance.

    Returns
    -------
    GradcheckReport
        One line per identity.

    Example
    -------
    >>> import dopt_core as dc
    >>> dc.testing.check_perturbed_identities(noise="gumbel", sigma=0.5, num_samples=50).ok
    True
    """

    gen = _generator(rng)
    b = check_int(num_batches, name="num_batches", low=2)
    small_sigma = check_positive(small_sigma, name="small_sigma")
    t = np.linspace(-0.5, 0.7, 4) if theta is None else _host64(theta)
    _check_not_empty(t, "theta")
    common = dict(num_samples=num_samples, noise=noise, multiplicative=multiplicative,
                  antithetic=antithetic, event_ndim=event_ndim)
    results = []
    f_id = perturbed(_identity_map, sigma=sigma, **common)
    jac, se = _mc_jacobian(f_id, t, f_id.perturbation, gen, b)
    results.append(_entrywise_statistical(
        "perturbed identity map: Jacobian = I", np.abs(jac - np.eye(t.size)), _Z * se + 1e-8, 1.0,
        f"(noise {f_id.perturbation.noise.name}, sigma {sigma:g}; (output, input) entry)",
        f"{_Z} standard errors per entry over {b} batches of {num_samples} samples"))
    law = f_id.perturbation.noise
    smooth = _softmax_map if smooth is None else smooth
    f_s = perturbed(smooth, sigma=small_sigma, control_variate=True, **common)
    jac_s, se_s = _mc_jacobian(f_s, t, f_s.perturbation, gen, b)
    shift = t if multiplicative else t + small_sigma * (law.mean if np.isfinite(law.mean) else 0.0)
    n = t.size
    fd = np.stack([finite_difference_vjp(lambda x: np.asarray(smooth(x)), shift, np.eye(n)[j].reshape(t.shape))
                   .ravel() for j in range(n)])
    results.append(_entrywise_statistical(
        f"perturbed smooth map, sigma {small_sigma:g}: Jacobian -> map's", np.abs(jac_s - fd),
        _Z * se_s + small_sigma, float(np.abs(fd).max()), f"(map {_name(smooth)}; (output, input) entry)",
        f"{_Z} standard errors per entry + sigma (smoothing bias)"))
    return GradcheckReport(f"perturbed estimator with {law.name} noise", tuple(results), "identities")


# -- torch / JAX callables --------------------------------------------------------------
def _gradcheck_native(fn: Callable[..., Any], inputs: tuple[Any, ...], kwargs: dict[str, Any], *,
                      reference: Any, gen: np.random.Generator, atol: float | None, rtol: float | None,
                      eps: float, nd: int, max_elementwise: int) -> GradcheckReport:
    """A framework callable with a custom backward: its own autodiff against finite
    differences of its own forward in float64, and against ``reference``."""
    arrays = [i for i, a in enumerate(inputs) if _is_float_array(a)]
    if not arrays:
        raise TypeError(f"gradcheck of {_name(fn)} needs at least one floating-point array input")
    backend = backend_for(inputs[arrays[0]], name=f"inputs[{arrays[0]}]")
    for i in arrays:
        _check_not_empty(inputs[i], f"inputs[{i}]")
    if backend.name == "numpy" or type(backend).native_vjp is Backend.native_vjp:
        raise TypeError(
            f"{_name(fn)} is not a dopt function and its inputs are {backend.name} arrays, which have no "
            "autodiff: pass torch or JAX arrays (or build fn with dopt_core.op_function)"
        )
    wide = list(inputs)
    x64_ok = True
    for i in arrays:
        wide[i], ok = _to_float64(backend, inputs[i])
        x64_ok = x64_ok and ok

    def fd_policy(wide64: bool) -> tuple[float, float, float]:
        """``(rtol, atol, step)`` of finite differences of a float64 or a lower-precision map."""
        return ((1e-5 if wide64 else 1e-2) if rtol is None else rtol,
                (1e-8 if wide64 else 1e-4) if atol is None else atol,
                eps if wide64 else 1e-3)

    def call(args: list[Any]) -> tuple[Any, ...]:
        y = fn(*args, **kwargs)
        return tuple(y) if isinstance(y, tuple | list) else (y,)

    outs = call(wide)
    multi_out, multi_in = len(outs) > 1, len(arrays) > 1
    float_outs = [k for k, y in enumerate(outs) if _is_float_array(y)]  # indices etc. have no VJP
    if not float_outs:
        raise TypeError(f"gradcheck of {_name(fn)}: fn has no floating-point output to differentiate")
    results: list[GradcheckResult] = []
    ref_out = None
    if reference is not None:
        host_in = [to_numpy(a) if _is_float_array(a) else a for a in inputs]
        ref_out = reference(*host_in, **kwargs)
        ref_out = tuple(ref_out) if isinstance(ref_out, tuple | list) else (ref_out,)
        if len(ref_out) != len(outs):
            raise ValueError(f"reference returned {len(ref_out)} outputs, fn returned {len(outs)}")
        low = call(list(inputs))
        for k, (y, r) in enumerate(zip(low, ref_out, strict=True)):
            dt = to_numpy(y).dtype
            rt, at = tolerance(dt, "float") if dt.kind == "f" else (0.0, 0.0)
            results.append(_compare(f"{_tag(k, None, multi_out, False)}forward vs reference", to_numpy(y),
                                    np.asarray(r), at if atol is None else atol, rt if rtol is None else rtol,
                                    f"dtype policy for {dt}"))
    for k in float_outs:
        g = gen.normal(size=tuple(outs[k].shape))
        # a function that computes in float32 inside (t.float()) has float32 outputs even
        # on float64 inputs: its finite differences need the float32 step and tolerance
        out_dt = to_numpy(outs[k]).dtype
        wide64 = x64_ok and out_dt == np.float64
        rtol_fd, atol_fd, step = fd_policy(wide64)
        precision = ("float64" if wide64 else
                     f"{out_dt} (fn returns {out_dt} on float64 inputs)" if x64_ok else
                     f"{out_dt} (this backend holds no float64 here, e.g. jax_enable_x64 off)")
        for i in arrays:
            def f_i(t: Any, i: int = i, k: int = k, base: list[Any] = wide) -> Any:
                args = list(base)
                args[i] = t
                return call(args)[k]

            def f_np(t: np.ndarray, i: int = i, k: int = k) -> np.ndarray:
                return to_numpy(f_i(backend.from_numpy(t.astype(to_numpy(wide[i]).dtype), like=wide[i]), i, k))

            def vjp(gg: np.ndarray, i: int = i, k: int = k) -> np.ndarray:
                gb = backend.from_numpy(gg.astype(to_numpy(outs[k]).dtype), like=outs[k])
                return to_numpy(backend.native_vjp(lambda t: f_i(t, i, k), wide[i], gb))

            tag = _tag(k, i, multi_out, multi_in)
            t64 = to_numpy(wide[i])
            results += _fd_checks(f_np, t64, vjp, g, gen, eps=step, nd=nd, max_elementwise=max_elementwise,
                                  atol=atol_fd, rtol=rtol_fd, label=f"{tag}{backend.name} VJP",
                                  precision=precision)
            if ref_out is not None:
                def ref_np(t: np.ndarray, i: int = i, k: int = k) -> np.ndarray:
                    args = [to_numpy(a).astype(np.float64) if j in arrays else a for j, a in enumerate(inputs)]
                    args[i] = t
                    r = reference(*args, **kwargs)
                    return np.asarray(r[k] if isinstance(r, tuple | list) else r)

                if t64.size <= max_elementwise:
                    results.append(_compare(f"{tag}{backend.name} VJP vs FD of reference", vjp(g),
                                            finite_difference_vjp(ref_np, t64.astype(np.float64), g, 1e-6),
                                            atol_fd, rtol_fd, "central differences of the NumPy reference"))
            dt = to_numpy(inputs[i]).dtype
            if dt != to_numpy(wide[i]).dtype:
                def f_low(t: Any, i: int = i, k: int = k) -> Any:
                    args = list(inputs)
                    args[i] = t
                    return call(args)[k]

                low_out = call(list(inputs))[k]
                gl = backend.from_numpy(g.astype(to_numpy(low_out).dtype), like=low_out)
                ours = to_numpy(backend.native_vjp(f_low, inputs[i], gl))
                rt, at = tolerance(dt, "float")
                results.append(_compare(f"{tag}{backend.name} VJP in {dt} vs float64", ours, vjp(g),
                                        at if atol is None else atol, rt if rtol is None else rtol,
                                        f"dtype policy for {dt}"))
    return GradcheckReport(_name(fn), tuple(results), "fd" + ("+reference" if reference is not None else ""))


def _tag(k: int, i: int | None, multi_out: bool, multi_in: bool) -> str:
    parts = ([f"output {k}"] if multi_out else []) + ([f"input {i}"] if multi_in and i is not None else [])
    return (", ".join(parts) + ": ") if parts else ""


def _to_float64(backend: Any, x: Any) -> tuple[Any, bool]:
    """``x`` in float64 on its own backend and device; ``(x, False)`` where the
    backend cannot hold float64 (JAX without ``jax_enable_x64``)."""
    a = to_numpy(x).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wide = backend.from_numpy(a, like=x)
    return (wide, True) if to_numpy(wide).dtype == np.float64 else (x, False)


# -- the user's solver -------------------------------------------------------------------
def _flag(method: str, ok: bool, detail: str, index: tuple[int, ...] | None = None, error: float | None = None,
          why: str = "") -> GradcheckResult:
    err = (0.0 if ok else 1.0) if error is None else error
    return GradcheckResult(method, err, 0.0, ok, detail, float("nan"), index, why)


def check_solver(
    fn: Callable[..., Any],
    theta: Any,
    *,
    feasible_set: Any = None,
    is_feasible: Callable[[np.ndarray], bool] | None = None,
    event_ndim: int | None = None,
    integral: bool = True,
) -> GradcheckReport:
    r"""Check a solver (a maximiser of :math:`\langle\theta, y\rangle`) before wrapping it.

    ``fn`` is a batched solver taking ``theta`` — a dopt solver, a
    :func:`dopt_core.solvers.solver` around your own oracle, or any function of
    ``theta``'s library. Checks, each a line of the report:

    * the output is an array of ``theta``'s library on its device, with its dtype and
      its batch shape (the leading ``theta.ndim - event_ndim`` axes);
    * **deterministic**: a second call returns the same bits;
    * **integral** (``integral=True``): every entry is an integer, as vertices of a 0/1
      or integer polytope are;
    * **batch-consistent**: solving each instance alone gives the batched rows;
    * **feasible** under ``is_feasible(y) -> bool``, called on each instance's NumPy
      output;
    * **optimal** on tiny instances when ``feasible_set`` (an array ``(K, *event)`` of
      every feasible point) is given: :math:`\langle\theta, y\rangle` equals the brute-
      force maximum over the set (ties may pick any maximiser), and ``y`` is in the set.

    Parameters
    ----------
    fn : callable
        The batched solver, ``fn(theta) -> y``.
    theta : array
        Scores of one or more instances (leading axes are batch axes).
    feasible_set : array, optional
        Every feasible point of one instance, shape ``(K, *event)``, for the brute-force
        optimality check.
    is_feasible : callable, optional
        ``is_feasible(y) -> bool`` on one instance's NumPy output.
    event_ndim : int, optional
        Trailing axes of ``theta`` forming one instance (default: the solver's declared
        ``event_ndim``, else 1).
    integral : bool
        Check that every output entry is an integer.

    Returns
    -------
    GradcheckReport
        One line per check.

    Example
    -------
    >>> import numpy as np, dopt_core as dc
    >>> one_hot = np.eye(3)
    >>> theta = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 1.0]])
    >>> dc.testing.check_solver(dc.solvers.argmax, theta, feasible_set=one_hot).ok
    True
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    backend = backend_for(theta, name="theta")
    _check_not_empty(theta, "theta")
    nd = check_int(getattr(fn, "event_ndim", 1) if event_ndim is None else event_ndim, name="event_ndim", low=0)
    if theta.ndim < nd:
        raise ValueError(f"theta must have at least event_ndim={nd} dimensions, got shape {tuple(theta.shape)}")
    if is_feasible is not None and not callable(is_feasible):
        raise TypeError(f"is_feasible must be callable, got {type(is_feasible).__name__}")
    name = f"solver {_name(fn)}"
    y = fn(theta)
    results: list[GradcheckResult] = []
    try:
        b_out = backend_for(y, name="output")
    except TypeError:
        b_out = None
    same = b_out is backend
    results.append(_flag("output is an array of theta's library", same,
                         f"(got {type(y).__module__}.{type(y).__qualname__})" if not same else ""))
    if not same:
        return GradcheckReport(name, tuple(results), "solver")
    d_in, d_out = backend.device(theta), backend.device(y)
    results.append(_flag("keeps the device", backend.same_device(d_in, d_out), f"({d_out}, theta on {d_in})"))
    results.append(_flag("keeps the dtype", y.dtype == theta.dtype, f"({y.dtype}, theta {theta.dtype})"))
    lead = tuple(theta.shape[: theta.ndim - nd])
    results.append(_flag("keeps the batch shape", tuple(y.shape[: len(lead)]) == lead,
                         f"(output {tuple(y.shape)}, theta {tuple(theta.shape)}, event_ndim {nd})"))
    if tuple(y.shape[: len(lead)]) != lead:
        return GradcheckReport(name, tuple(results), "solver")
    y_np = to_numpy(y).astype(np.float64)
    again = to_numpy(fn(theta)).astype(np.float64)
    results.append(_compare("deterministic (two calls agree)", again, y_np, 0.0, 0.0, "exact"))
    if integral:
        results.append(_compare("integral (returns vertices)", y_np, np.round(y_np), 0.0, 0.0, "exact"))
    t_np = to_numpy(theta)
    flat_t = t_np.reshape((-1, *t_np.shape[len(lead):]))
    flat_y = y_np.reshape((-1, *y_np.shape[len(lead):]))
    if lead:
        alone = np.stack([to_numpy(fn(backend.from_numpy(flat_t[i:i + 1], like=theta)))[0] for i in range(len(flat_t))])
        r = _compare("batch-consistent (instances alone)", alone.reshape(y_np.shape).astype(np.float64), y_np,
                     0.0, 0.0, "exact")
        results.append(r)
    if is_feasible is not None:
        bad = [i for i in range(len(flat_y)) if not bool(is_feasible(flat_y[i]))]
        where = _idx(np.unravel_index(bad[0], lead)) if bad and lead else None
        results.append(_flag("feasible (is_feasible)", not bad, f"({len(bad)} of {len(flat_y)} instances infeasible)",
                             where, float(len(bad))))
    if feasible_set is not None:
        results += _brute_force(flat_t, flat_y, np.asarray(to_numpy(feasible_set), dtype=np.float64), lead, t_np.dtype)
    return GradcheckReport(name, tuple(results), "solver")


def _brute_force(flat_t: np.ndarray, flat_y: np.ndarray, points: np.ndarray, lead: tuple[int, ...],
                 dtype: np.dtype) -> list[GradcheckResult]:
    """Objective gap to the best point of ``points`` and membership, per instance."""
    if points.ndim < 1 or tuple(points.shape[1:]) != tuple(flat_y.shape[1:]):
        raise ValueError(
            f"feasible_set must have shape (K, *output_event) = (K, {', '.join(map(str, flat_y.shape[1:]))}), "
            f"got {tuple(points.shape)}"
        )
    if tuple(flat_t.shape[1:]) != tuple(flat_y.shape[1:]):
        raise ValueError("feasible_set needs a linear objective: the solver's output must have theta's event shape")
    axes = tuple(range(1, flat_t.ndim))
    t64 = flat_t.astype(np.float64)
    obj = np.sum(t64 * flat_y, axis=axes)
    best = np.max(np.tensordot(t64, points, axes=(axes, axes)), axis=1)
    rt, at = tolerance(dtype, "float") if dtype.kind == "f" else (0.0, 0.0)
    gap = best - obj
    scale = float(np.max(np.abs(best))) if best.size else 0.0
    i = int(np.argmax(gap))
    tol = at + rt * scale
    where = _idx(np.unravel_index(i, lead)) if lead else None
    out = [GradcheckResult("optimal (brute force over feasible_set)", float(gap[i]), tol, bool(np.all(gap <= tol)),
                           "(objective gap of the worst instance)", float(gap[i]) / max(scale, 1e-300), where,
                           f"dtype policy for {dtype} on the objective")]
    dist = np.min(np.max(np.abs(flat_y[:, None] - points[None]), axis=tuple(range(2, points.ndim + 1))), axis=1)
    j = int(np.argmax(dist))
    out.append(_flag("in feasible_set", bool(np.all(dist == 0)), "(distance to the nearest feasible point)",
                     _idx(np.unravel_index(j, lead)) if lead else None, float(dist[j])))
    return out


def _is_float_array(a: Any) -> bool:
    try:
        return to_numpy(a).dtype.kind == "f"
    except TypeError:
        return False
