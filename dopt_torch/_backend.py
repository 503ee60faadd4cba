"""The PyTorch adapter: devices, ``torch.Generator`` draws, host transfers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dopt_core.backend import Backend, int_seed, type_name

from ._autograd import apply_op, torch_xp

_functorch = torch._C._functorch
_functorch_active = torch._C._are_functorch_transforms_active
_is_compiling = torch.compiler.is_compiling


def _generator(rng: Any, device: torch.device) -> torch.Generator | None:
    if isinstance(rng, torch.Generator):
        if torch.device(rng.device).type != device.type:
            raise ValueError(
                f"rng is a torch.Generator on {rng.device}, but the arrays are on {device}"
            )
        return rng
    if rng is None:
        return None  # torch's default generator for that device
    seed = int_seed(rng)
    if seed is not None:
        if device.type == "meta":  # shapes only: there are no meta generators
            return None
        return torch.Generator(device=device).manual_seed(seed)
    raise TypeError(
        "rng must be a torch.Generator, a numpy.random.Generator, an int seed or None for "
        f"torch tensors, got {type_name(rng)}"
    )


def _vmapped(x: Any) -> bool:
    """Whether ``x`` is batched by ``torch.func.vmap`` at some functorch level (callers
    ask only while a functorch transform is active: one C call otherwise)."""
    while _functorch.is_functorch_wrapped_tensor(x):
        if _functorch.is_batchedtensor(x):
            return True
        x = _functorch.get_unwrapped(x)
    return False


class TorchBackend(Backend):
    name = "torch"
    extra = "torch"

    def owns(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def namespace(self, x: Any) -> Any:
        return torch_xp

    def device(self, x: Any) -> Any:
        return x.device

    def same_device(self, a: Any, b: Any) -> bool:
        return torch.device(a) == torch.device(b)

    def is_traced(self, x: Any) -> bool:
        # Values that cannot be read now: a meta tensor (shapes only); any tensor while
        # torch.compile traces (reading one forces a graph break and a device sync); a
        # tensor batched by torch.func.vmap (one slice has no readable scalar). Value
        # checks are then skipped, as under jax.jit and jax.vmap.
        return x.device.type == "meta" or _is_compiling() or (_functorch_active() and _vmapped(x))

    def has_value(self, x: Any) -> bool:
        # While compiling, a concrete 0-d tensor given as a hyper-parameter is readable
        # (dynamo specialises on it or breaks the graph); meta and vmapped ones are not.
        return x.device.type != "meta" and not (_functorch_active() and _vmapped(x))

    def take(self, x: Any, indices: Any, axis: int) -> Any:
        # array-api-compat's take remaps negative indices with three extra kernels per
        # call; the core's static tables are non-negative
        return torch.index_select(x, axis % x.ndim, indices)

    def one_hot_sum(self, index: Any, n: int, weights: Any, like: Any) -> Any:
        # the hook of dopt_core._lib._scatter.one_hot_sum: a scatter-add into (*batch, n)
        # instead of an (M, *batch, n) one-hot array (~0.03 ms vs ~10 ms at 100x128x100)
        idx = index.movedim(0, -1)
        src = torch.ones(idx.shape, dtype=like.dtype, device=like.device) if weights is None else weights.movedim(0, -1)
        out = torch.zeros((*idx.shape[:-1], n), dtype=like.dtype, device=like.device)
        return out.scatter_add(-1, idx, src)  # out of place: torch.func.vmap batches it

    def categorical_counts(self, rng: Any, prob: Any, num_samples: int, like: Any) -> Any:
        # the hook of the arg-max counts of dopt_core.perturbed (rao_blackwell): num_samples draws per row
        # of prob (..., n) by torch.multinomial, counted per entry
        n = prob.shape[-1]
        rows = prob.detach().reshape(-1, n)
        gen = _generator(rng, like.device)
        idx = torch.multinomial(rows, num_samples, replacement=True, generator=gen)
        out = torch.zeros(rows.shape, dtype=like.dtype, device=like.device)
        out = out.scatter_add(-1, idx, torch.ones(idx.shape, dtype=like.dtype, device=like.device))
        return out.reshape(prob.shape)

    def clamp_min(self, x: Any, low: float) -> Any:
        return x.clamp_min(low)  # compat's maximum builds a tensor from the scalar per call

    def all_finite(self, x: Any) -> bool | None:
        # One reduction and one scalar read instead of an elementwise isfinite + all
        # (~20 µs at 4096 entries, ~0.4 ms at 128K on one CPU thread): NaN and ±inf
        # propagate through the sum, so a finite sum means finite entries; a non-finite
        # sum (a non-finite entry, or an overflow of finite ones) is re-checked entrywise.
        # Unknown (None) where values cannot be read now (see is_traced).
        if _is_compiling() or (_functorch_active() and _vmapped(x)):
            return None
        if math.isfinite(x.detach().sum().item()):
            return True
        return bool(torch.isfinite(x).all())

    def host_call(self, func: Any, *inputs: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        # meta tensors carry shapes without values: host code cannot run, but its result's
        # shape and dtype are declared up front, so shape propagation still works
        if any(x.device.type == "meta" for x in inputs):
            return torch.empty(tuple(shape), dtype=dtype, device="meta")
        return super().host_call(func, *inputs, shape=shape, dtype=dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        x = x.detach()
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.cpu().numpy()

    def from_numpy(self, a: np.ndarray, *, like: Any) -> Any:
        return torch.from_numpy(np.asarray(a, order="C")).to(like.device)

    def draws_on_host(self, rng: Any) -> bool:
        return isinstance(rng, np.random.Generator)

    def native_draw(self, rng: Any, kind: str, shape: tuple[int, ...], *, like: Any) -> Any:
        gen = _generator(rng, like.device)
        kw: dict[str, Any] = {"dtype": like.dtype, "device": like.device}
        if kind == "normal":
            return torch.randn(shape, generator=gen, **kw)
        if kind == "uniform":
            return torch.rand(shape, generator=gen, **kw)
        return torch.empty(shape, **kw).exponential_(generator=gen)

    def native_gamma(
        self, rng: Any, concentration: float, shape: tuple[int, ...], *, like: Any
    ) -> Any:
        # torch's gamma sampler takes no generator: an int seed seeds NumPy directly, a
        # torch generator (or torch's default one) seeds a NumPy draw, so that results
        # still follow ``rng``.
        seed = int_seed(rng)
        if seed is None:
            on = torch.device(rng.device) if isinstance(rng, torch.Generator) else torch.device("cpu")
            gen = _generator(rng, on)  # TypeError for anything but a generator or None
            seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device if gen is not None else "cpu"))
        return super().standard_gamma(np.random.default_rng(seed), concentration, shape, like=like)

    def native_vjp(self, fn: Any, theta: Any, cotangent: Any) -> Any:
        theta = theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            y = fn(theta)
            (grad,) = torch.autograd.grad(y, theta, grad_outputs=cotangent, allow_unused=True)
        return torch.zeros_like(theta) if grad is None else grad

    def native_grad_hessian(self, fn: Any, y: Any, *, hessian: bool) -> Any:
        # torch.func, not torch.autograd.grad: it also runs inside torch.func transforms
        def total(t: Any) -> Any:
            values = fn(t)
            if not isinstance(values, torch.Tensor):
                raise TypeError(f"loss_fn must return a tensor, got {type(values).__name__}")
            return values.sum(), values

        gradient = torch.func.grad(total, has_aux=True)
        t = y.detach()
        if not hessian:
            g, values = gradient(t)
            return values.detach(), g.detach(), None
        # reverse over reverse: row j of every sample's Hessian is the VJP of the gradient
        # with the unit vector e_j (samples are independent)
        g, pull, values = torch.func.vjp(gradient, t, has_aux=True)
        eye = torch.eye(t.shape[-1], dtype=t.dtype, device=t.device)
        rows = [pull(eye[j].expand(t.shape))[0] for j in range(t.shape[-1])]
        return values.detach(), g.detach(), torch.stack(rows, dim=-2).detach()

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def apply_op(self, op: Any, *inputs: Any) -> Any:
        return apply_op(op, *inputs)

    def info(self) -> dict[str, Any]:
        devices = ["cpu"]
        if torch.cuda.is_available():
            devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
        return {"name": self.name, "version": torch.__version__, "devices": devices}
