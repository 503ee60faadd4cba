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
  ``.item()``), the check is a skip with torch's reason, not a failure.
* ``torch_compile`` — under torch, ``torch.compile(fn, backend="aot_eager")`` (graph
  breaks allowed) gives the reference values and VJP. It costs about half a second
  per op, so it runs on the few ops of :data:`COMPILE_CASES` (and cases tagged
  ``"compile"``); elsewhere, or where ``torch.compile`` is unsupported, it is a skip.
"""

from __future__ import annotations

import logging
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc
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
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
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


CHECKS: dict[str, Callable[[Env, Case, str], float]] = {
    "forward": check_forward,
    "vjp": check_vjp,
    "autodiff": check_autodiff,
    "jit": check_jit,
    "vmap": check_vmap,
    "torch_func": check_torch_func,
    "torch_vmap": check_torch_vmap,
    "torch_compile": check_torch_compile,
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
    return True
