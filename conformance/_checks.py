"""The checks run for every (backend, case, dtype).

Each check computes the NumPy reference first, then the backend's result, compares
them on the host, and returns the largest absolute error. It raises
``AssertionError`` on a disagreement and :class:`~._backends.Skip` when it does not
apply (with the reason).

* ``forward`` — values equal the NumPy reference; the result is an array of the
  input's library, on the input's device, with its dtype and batch shape.
* ``vjp`` — the framework's own gradient call (``backward``, ``jax.vjp``; the explicit
  ``value_and_vjp`` for libraries without autodiff) equals the core's reference VJP
  computed with NumPy.
* ``autodiff`` — where the forward is made of differentiable array operations, the
  framework's native autodiff *through the forward* equals the explicit VJP.
* ``jit`` / ``vmap`` — under JAX, ``jax.jit`` and ``jax.vmap`` give the same numbers.
* ``torch_func`` — under torch, ``torch.func.vjp`` gives the reference values and VJP
  (ops with a non-zero gradient).
* ``torch_vmap`` — under torch, ``torch.func.vmap`` over the batch gives the batched
  values. Where the installed dopt_torch cannot be vmapped yet (its
  ``autograd.Function`` reads a tensor's value, e.g. a finiteness check calling
  ``.item()``), the check is a skip with torch's reason, not a failure; any other
  error under vmap is a failure.
* ``jvp_adjoint`` — for an op with a forward-mode derivative (:meth:`Op.jvp
  <dopt_core.op.Op.jvp>`): the framework's own JVP (``jax.jvp``, ``torch.func.jvp``;
  the explicit ``value_and_jvp`` elsewhere) equals the core's NumPy reference, and
  ``⟨jvp(u), v⟩ = ⟨u, vjp(v)⟩`` to rounding. float64 only (cost).
* ``jacfwd`` — under JAX and torch, ``jacfwd`` equals ``jacrev`` (ops with a JVP, one
  instance, float64).
* ``hvp`` — under JAX and torch, for an op with ``second_order = True`` whose forward
  is differentiable array code, the Hessian-vector product of ``⟨f(θ), v⟩`` (``jax.jvp``
  of ``jax.grad``; torch's double backward) equals central finite differences of the
  explicit VJP along one direction (float64).
* ``torch_compile`` — under torch, ``torch.compile(fn, backend="aot_eager")`` (graph
  breaks allowed) gives the reference values and VJP. It costs about half a second
  per op, so it runs on the few ops of :data:`COMPILE_CASES` (and cases tagged
  ``"compile"``); elsewhere, or where ``torch.compile`` is unsupported, it is a skip.
"""

from __future__ import annotations

import functools
import logging
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc
from dopt_core.op import has_jvp, value_and_jvp
from dopt_core.testing import assert_close

from ._backends import Env, Skip
from ._cases import Case

__all__ = ["CHECKS", "COMPILE_CASES", "Prepared", "applies", "prepare"]

#: The ops ``torch_compile`` runs on (one per family: a sort, a solver, a relaxation).
COMPILE_CASES = frozenset({"sort", "argmax", "top_k"})


class Prepared:
    """Inputs of one (case, dtype) in NumPy and in the backend, with the references."""

    def __init__(self, env: Env, case: Case, dtype: str) -> None:
        if dtype not in case.dtypes:
            raise Skip(f"{case.name} is not defined for {dtype}")
        rng = np.random.default_rng(zlib.crc32(f"{case.name}/{dtype}".encode()))
        self.arrays, self.kwargs = case.make_inputs(rng, np.dtype(dtype))
        self.reference = case.fn(*self.arrays, **self.kwargs)
        self.cotangent = np.asarray(rng.normal(size=np.shape(self.reference)), dtype=dtype)
        self.inputs = tuple(env.asarray(a) for a in self.arrays)
        self.array_kw = {k: env.asarray(v) for k, v in self.kwargs.items() if isinstance(v, np.ndarray)}
        self.static_kw = {k: v for k, v in self.kwargs.items() if k not in self.array_kw}
        self.env, self.case, self.dtype = env, case, dtype

    @property
    def backend_kwargs(self) -> dict[str, Any]:
        return {**self.static_kw, **self.array_kw}

    def traceable(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """``(g, args)`` with every array (positional and keyword) a positional argument of g."""
        n, names = len(self.inputs), list(self.array_kw)

        def g(*args: Any) -> Any:
            return self.case.fn(*args[:n], **dict(zip(names, args[n:], strict=True)), **self.static_kw)

        return g, (*self.inputs, *self.array_kw.values())

    def reference_vjp(self) -> np.ndarray:
        _, vjp = dc.value_and_vjp(self.case.fn, *self.arrays, **self.kwargs)
        return vjp(self.cotangent)

    def call(self, *inputs: Any) -> Any:
        return self.case.fn(*inputs, **self.backend_kwargs)


def prepare(env: Env, case: Case, dtype: str) -> Prepared:
    return Prepared(env, case, dtype)


def _assert_like_input(p: Prepared, out: Any, what: str) -> None:
    theta = p.inputs[0]
    b_in, b_out = dc.backend_for(theta), dc.backend_for(out, name=what)
    if b_out is not b_in:
        raise AssertionError(f"{what} is a {b_out.name} array for a {b_in.name} input")
    if not b_in.is_traced(out):
        d_in, d_out = b_in.device(theta), b_in.device(out)
        if not b_in.same_device(d_in, d_out):
            raise AssertionError(f"{what} is on {d_out}, the input on {d_in}")


def check_forward(env: Env, case: Case, dtype: str) -> float:
    p = prepare(env, case, dtype)
    y = p.call(*p.inputs)
    _assert_like_input(p, y, "output")
    return assert_close(env.to_numpy(y), p.reference, kind=case.tolerance, err_msg=f"{case.name} forward:")


def check_vjp(env: Env, case: Case, dtype: str) -> float:
    if not case.differentiable:
        raise Skip("zero gradient")
    p = prepare(env, case, dtype)
    expected = p.reference_vjp()
    grad = env.vjp(case.fn, p.inputs, p.backend_kwargs, env.asarray(p.cotangent))
    _assert_like_input(p, grad, "gradient")
    return assert_close(env.to_numpy(grad), expected, kind=case.tolerance, err_msg=f"{case.name} vjp:")


def check_autodiff(env: Env, case: Case, dtype: str) -> float:
    if not case.native_autodiff:
        raise Skip("forward not differentiable")
    if env.autodiff is None:
        raise Skip("no autodiff")
    p = prepare(env, case, dtype)
    bound = case.fn.bind(*p.inputs, **p.backend_kwargs)  # type: ignore[attr-defined]
    op, inputs = bound.op, bound.inputs
    g = env.asarray(p.cotangent)
    backend = dc.backend_for(inputs[0])
    xp = backend.namespace(inputs[0])
    # the framework differentiates the op's forward itself, bypassing the explicit VJP
    native = backend.native_vjp(lambda t: op.forward(t, *inputs[1:], xp=xp)[0], inputs[0], g)
    explicit = env.vjp(case.fn, p.inputs, p.backend_kwargs, g)
    return assert_close(env.to_numpy(explicit), env.to_numpy(native), kind=case.tolerance,
                        err_msg=f"{case.name} explicit vs native VJP:")


def _require_jax(env: Env) -> Any:
    if env.autodiff != "jax":
        raise Skip("JAX only")
    import jax

    return jax


def check_jit(env: Env, case: Case, dtype: str) -> float:
    jax = _require_jax(env)
    p = prepare(env, case, dtype)
    fn, args = p.traceable()
    y = jax.jit(fn)(*args)
    err = assert_close(env.to_numpy(y), p.reference, kind=case.tolerance, err_msg=f"{case.name} jit:")
    if case.differentiable:
        g = env.asarray(p.cotangent)

        def pulled(*a: Any) -> Any:
            return jax.vjp(lambda t: fn(t, *a[1:]), a[0])[1](g)[0]

        grad = jax.jit(pulled)(*args)
        err = max(err, assert_close(env.to_numpy(grad), p.reference_vjp(), kind=case.tolerance,
                                    err_msg=f"{case.name} jit vjp:"))
    return err


def check_vmap(env: Env, case: Case, dtype: str) -> float:
    jax = _require_jax(env)
    if not case.vmap:
        raise Skip("not batch-separable")
    p = prepare(env, case, dtype)
    if p.arrays[0].ndim < 2:
        raise Skip("unbatched case")
    fn, args = p.traceable()
    axes = (0,) * len(p.inputs) + tuple(case.vmap_axes.get(k, 0) for k in p.array_kw)
    y = jax.vmap(fn, in_axes=axes)(*args)
    return assert_close(env.to_numpy(y), p.reference, kind=case.tolerance, err_msg=f"{case.name} vmap:")


def _require_torch(env: Env) -> Any:
    if env.autodiff != "torch":
        raise Skip("torch only")
    import torch

    return torch


def _torch_vjp_check(env: Env, p: Prepared, fn: Callable[..., Any], what: str) -> float:
    """Values of ``fn`` against the reference and, if differentiable, its VJP by
    ``backward`` against the reference VJP."""
    torch = _require_torch(env)
    case = p.case
    theta = p.inputs[0].detach().clone().requires_grad_(case.differentiable)
    y = fn(theta, *p.inputs[1:])
    err = assert_close(env.to_numpy(y.detach()), p.reference, kind=case.tolerance, err_msg=f"{case.name} {what}:")
    if case.differentiable:
        (grad,) = torch.autograd.grad(y, theta, grad_outputs=env.asarray(p.cotangent))
        err = max(err, assert_close(env.to_numpy(grad), p.reference_vjp(), kind=case.tolerance,
                                    err_msg=f"{case.name} {what} vjp:"))
    return err


def check_torch_func(env: Env, case: Case, dtype: str) -> float:
    torch = _require_torch(env)
    if not case.differentiable:
        raise Skip("zero gradient")
    p = prepare(env, case, dtype)
    kw = p.backend_kwargs
    y, pull = torch.func.vjp(lambda t: case.fn(t, *p.inputs[1:], **kw), p.inputs[0])
    err = assert_close(env.to_numpy(y), p.reference, kind=case.tolerance, err_msg=f"{case.name} torch.func:")
    (grad,) = pull(env.asarray(p.cotangent))
    return max(err, assert_close(env.to_numpy(grad), p.reference_vjp(), kind=case.tolerance,
                                 err_msg=f"{case.name} torch.func.vjp:"))


#: Phrases of torch's own "this cannot be vmapped" errors (a value read with
#: ``.item()``, data-dependent control flow, an ``autograd.Function`` without a
#: vmap rule or ``setup_context``): those make ``torch_vmap`` a skip, nothing else.
_TORCH_VMAP_UNSUPPORTED = (
    "vmap: It looks like you're",
    "does not have vmap support",
    "must override the setup_context staticmethod",
    "Batching rule not implemented",
)


def check_torch_vmap(env: Env, case: Case, dtype: str) -> float:
    torch = _require_torch(env)
    if not case.vmap:
        raise Skip("not batch-separable")
    p = prepare(env, case, dtype)
    if p.arrays[0].ndim < 2:
        raise Skip("unbatched case")
    fn, args = p.traceable()
    axes = (0,) * len(p.inputs) + tuple(case.vmap_axes.get(k, 0) for k in p.array_kw)
    try:
        y = torch.func.vmap(fn, in_dims=axes)(*args)
    except RuntimeError as exc:  # dopt_torch's Function has no vmap rule at this version
        text = str(exc)
        if not any(m in text for m in _TORCH_VMAP_UNSUPPORTED):
            raise  # any other error (a shape mismatch of a batch rule...) is a failure
        first = text.splitlines()[0] if text else type(exc).__name__
        raise Skip(f"torch.func.vmap unsupported by this dopt_torch: {first[:120]}") from None
    return assert_close(env.to_numpy(y), p.reference, kind=case.tolerance, err_msg=f"{case.name} torch vmap:")


def check_torch_compile(env: Env, case: Case, dtype: str) -> float:
    torch = _require_torch(env)
    if case.name not in COMPILE_CASES and "compile" not in case.tags:
        raise Skip("torch.compile runs on a few ops only (cost); see COMPILE_CASES")
    if not hasattr(torch, "compile"):
        raise Skip("torch.compile not available in this torch")
    p = prepare(env, case, dtype)
    kw = p.backend_kwargs
    compiled = torch.compile(lambda t, *rest: case.fn(t, *rest, **kw), backend="aot_eager", dynamic=False)
    quiet = logging.getLogger("torch._dynamo")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # graph-break advice is logged at WARNING
    try:
        with warnings.catch_warnings():  # dynamo's advice on library internals (lru_cache...)
            warnings.simplefilter("ignore")
            return _torch_vjp_check(env, p, compiled, "torch.compile")
    finally:
        quiet.setLevel(level)


@functools.lru_cache(maxsize=None)
def _op_of(name: str) -> Any:
    """The Op a case binds (on its float64 NumPy inputs), or None when it cannot be bound."""
    from ._cases import CASES  # lazy: the registry fills after this module is imported

    case = CASES[name]
    if "float64" not in case.dtypes:
        return None
    rng = np.random.default_rng(zlib.crc32(f"{name}/float64".encode()))
    arrays, kwargs = case.make_inputs(rng, np.dtype("float64"))
    bind = getattr(case.fn, "bind", None)
    if bind is None:
        return None
    return bind(*arrays, **kwargs).op


def _require_jvp(case: Case, dtype: str) -> Any:
    if not case.differentiable:
        raise Skip("zero gradient")
    op = _op_of(case.name)
    if op is None or not has_jvp(op):
        raise Skip("no forward-mode derivative (first-order op)")
    if dtype != "float64":
        raise Skip("forward-mode checks run in float64 only")
    return op


def _framework_jvp(env: Env, p: Prepared, u: Any) -> Any:
    fn = lambda t: p.call(t, *p.inputs[1:])  # noqa: E731
    if env.autodiff == "jax":
        import jax

        # one jit: eager JAX compiles every primitive of the rule separately (seconds)
        return jax.jit(lambda t, d: jax.jvp(fn, (t,), (d,))[1])(p.inputs[0], u)
    if env.autodiff == "torch":
        import torch

        with warnings.catch_warnings():  # torch's own, about torch.jit, on functorch's first use
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.func.jvp(fn, (p.inputs[0],), (u,))[1]
    return value_and_jvp(p.case.fn, *p.inputs, **p.backend_kwargs)[1](u)


def _require_framework_jvp(env: Env, op: Any) -> None:
    if env.autodiff == "jax" and not op.jvp_transposes_exactly:
        raise Skip("JAX keeps the explicit VJP (Op.jvp_transposes_exactly): no forward mode")


def check_jvp_adjoint(env: Env, case: Case, dtype: str) -> float:
    _require_framework_jvp(env, _require_jvp(case, dtype))
    p = prepare(env, case, dtype)
    u = np.random.default_rng(zlib.crc32(f"{case.name}/tangent".encode())).normal(size=p.arrays[0].shape)
    reference = value_and_jvp(case.fn, *p.arrays, **p.kwargs)[1](u)
    t = _framework_jvp(env, p, env.asarray(u))
    _assert_like_input(p, t, "tangent")
    t = env.to_numpy(t)
    err = assert_close(t, reference, kind="reduction", err_msg=f"{case.name} jvp:")
    v = env.asarray(p.cotangent)
    if env.autodiff == "jax":  # reverse mode by JAX's transposition of the JVP, jitted
        import jax

        rest, kw = p.inputs[1:], p.backend_kwargs
        pull = jax.jit(lambda t, c: jax.vjp(lambda s: case.fn(s, *rest, **kw), t)[1](c)[0])
        grad = env.to_numpy(pull(p.inputs[0], v))
    else:
        grad = env.to_numpy(env.vjp(case.fn, p.inputs, p.backend_kwargs, v))
    left, right = float(np.sum(t * p.cotangent)), float(np.sum(u * grad))
    scale = float(np.linalg.norm(t) * np.linalg.norm(p.cotangent) + np.linalg.norm(u) * np.linalg.norm(grad))
    if abs(left - right) > 1e-10 * max(scale, 1.0):
        raise AssertionError(f"{case.name}: <jvp(u), v> = {left!r} but <u, vjp(v)> = {right!r}")
    return max(err, abs(left - right))


def _one_instance(p: Prepared) -> tuple[Callable[..., Any], Any]:
    """``fn(t)`` of θ's first instance (leading batch index 0 when θ is batched and the
    case is batch-separable), the other inputs sliced alike; small Jacobians."""
    theta, rest, kw = p.inputs[0], p.inputs[1:], p.backend_kwargs
    if p.case.vmap and theta.ndim >= 2 and not p.case.vmap_axes and all(
        getattr(x, "shape", ())[:1] == theta.shape[:1] for x in rest
    ) and not any(hasattr(v, "shape") for v in p.array_kw.values()):
        theta, rest = theta[0], tuple(x[0] for x in rest)
    return (lambda t: p.case.fn(t, *rest, **kw)), theta


def check_jacfwd(env: Env, case: Case, dtype: str) -> float:
    if env.autodiff not in ("jax", "torch"):
        raise Skip("JAX and torch only")
    _require_framework_jvp(env, _require_jvp(case, dtype))
    p = prepare(env, case, dtype)
    fn, theta = _one_instance(p)
    if env.autodiff == "jax":
        import jax

        fwd, rev = jax.jit(lambda t: (jax.jacfwd(fn)(t), jax.jacrev(fn)(t)))(theta)
    else:
        import torch

        with warnings.catch_warnings():  # torch's own, about torch.jit
            warnings.simplefilter("ignore", DeprecationWarning)
            fwd, rev = torch.func.jacfwd(fn)(theta), torch.func.jacrev(fn)(theta)
    return assert_close(env.to_numpy(fwd), env.to_numpy(rev), kind="reduction",
                        err_msg=f"{case.name} jacfwd vs jacrev:")


def check_hvp(env: Env, case: Case, dtype: str) -> float:
    if env.autodiff not in ("jax", "torch"):
        raise Skip("JAX and torch only")
    op = _require_jvp(case, dtype)
    if not op.second_order:
        raise Skip("first-order op (second derivatives raise)")
    if not case.native_autodiff:
        raise Skip("forward not differentiable array code: no finite-difference Hessian")
    p = prepare(env, case, dtype)
    w = np.random.default_rng(zlib.crc32(f"{case.name}/direction".encode())).normal(size=p.arrays[0].shape)

    def central(h: float) -> np.ndarray:
        _, up = dc.value_and_vjp(case.fn, p.arrays[0] + h * w, *p.arrays[1:], **p.kwargs)
        _, down = dc.value_and_vjp(case.fn, p.arrays[0] - h * w, *p.arrays[1:], **p.kwargs)
        return (up(p.cotangent) - down(p.cotangent)) / (2 * h)

    # Richardson extrapolation of central differences: error O(h⁴), not O(h²) (sharp
    # relaxations such as the renderer have third derivatives large enough that the
    # plain central difference at h = 1e-5 is off by 1e-6 relative)
    h = 1e-5
    expected = (4 * central(h / 2) - central(h)) / 3
    v, rest, kw = env.asarray(p.cotangent), p.inputs[1:], p.backend_kwargs
    if env.autodiff == "jax":
        import jax

        grad = jax.grad(lambda t: (case.fn(t, *rest, **kw) * v).sum())
        hv = jax.jit(lambda t, d: jax.jvp(grad, (t,), (d,))[1])(p.inputs[0], env.asarray(w))
    else:
        import torch

        t = p.inputs[0].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad((case.fn(t, *rest, **kw) * v).sum(), t, create_graph=True)
        hv = None  # a gradient not depending on θ (a linear op) has no graph
        if g.requires_grad:
            (hv,) = torch.autograd.grad(g, t, grad_outputs=env.asarray(w), allow_unused=True)
        hv = torch.zeros_like(t) if hv is None else hv
    return assert_close(env.to_numpy(hv), expected, kind="reduction", err_msg=f"{case.name} Hessian-vector product:")


CHECKS: dict[str, Callable[[Env, Case, str], float]] = {
    "forward": check_forward,
    "vjp": check_vjp,
    "autodiff": check_autodiff,
    "jit": check_jit,
    "vmap": check_vmap,
    "torch_func": check_torch_func,
    "torch_vmap": check_torch_vmap,
    "torch_compile": check_torch_compile,
    "jvp_adjoint": check_jvp_adjoint,
    "jacfwd": check_jacfwd,
    "hvp": check_hvp,
}


def applies(case: Case, check: str) -> bool:
    """Whether ``check`` is meaningful for ``case`` on some backend (static filter)."""
    if check == "vjp":
        return case.differentiable
    if check == "autodiff":
        return case.native_autodiff
    if check == "torch_func":
        return case.differentiable
    if check in ("vmap", "torch_vmap"):
        return case.vmap
    if check == "torch_compile":
        return case.name in COMPILE_CASES or "compile" in case.tags
    if check in ("jvp_adjoint", "jacfwd", "hvp"):
        if not case.differentiable or "float64" not in case.dtypes:
            return False
        try:
            op = _op_of(case.name)
        except Exception:  # noqa: BLE001 - a case that cannot bind here is checked elsewhere
            return False
        return op is not None and has_jvp(op) and (check != "hvp" or (op.second_order and case.native_autodiff))
    return True
