"""The CuPy adapter: CUDA devices, ``cupy.random.Generator`` draws, explicit host transfers.

CuPy forbids implicit conversion to NumPy, so every transfer here is explicit
(``cupy.asnumpy``) and happens only at the host-solver boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cupy
import numpy as np
from array_api_compat import cupy as cupy_xp

from dopt_core.backend import Backend


def _generator(rng: Any) -> Any:
    if isinstance(rng, cupy.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        return cupy.random.default_rng(None if rng is None else int(rng))
    raise TypeError(
        "rng must be a cupy.random.Generator, a numpy.random.Generator, an int seed or None for "
        f"CuPy arrays, got {type(rng).__name__}"
    )


class CupyBackend(Backend):
    name = "cupy"
    extra = "cupy"

    def owns(self, x: Any) -> bool:
        return isinstance(x, cupy.ndarray)

    def namespace(self, x: Any) -> Any:
        return cupy_xp

    def device(self, x: Any) -> Any:
        return x.device

    def same_device(self, a: Any, b: Any) -> bool:
        return int(a.id) == int(b.id)  # CuPy devices are not hashable; compare ids

    def is_traced(self, x: Any) -> bool:
        return False

    def to_numpy(self, x: Any) -> np.ndarray:
        return cupy.asnumpy(x)

    def from_numpy(self, a: np.ndarray, *, like: Any) -> Any:
        with like.device:
            return cupy.asarray(a)

    def draw(self, rng: Any, kind: str, shape: Sequence[int], *, like: Any) -> Any:
        if isinstance(rng, np.random.Generator):
            return super().draw(rng, kind, shape, like=like)
        shape = tuple(shape)
        dtype = like.dtype
        with like.device:
            gen = _generator(rng)
            if kind == "normal":
                return gen.standard_normal(shape, dtype=dtype)
            if kind == "uniform":
                return gen.random(shape, dtype=dtype)
            if kind in ("exponential", "gumbel"):
                e = gen.standard_exponential(shape, dtype=dtype)
                if kind == "exponential":
                    return e
                return -cupy.log(cupy.maximum(e, cupy.finfo(dtype).tiny))  # E may round to 0
        return super().draw(rng, kind, shape, like=like)

    def standard_gamma(self, rng: Any, concentration: float, shape: Sequence[int], *, like: Any) -> Any:
        if isinstance(rng, np.random.Generator):
            return super().standard_gamma(rng, concentration, shape, like=like)
        with like.device:
            return _generator(rng).standard_gamma(float(concentration), size=tuple(shape), dtype=like.dtype)

    def info(self) -> dict[str, Any]:
        n = cupy.cuda.runtime.getDeviceCount()
        return {"name": self.name, "version": cupy.__version__, "devices": [f"cuda:{i}" for i in range(n)]}
