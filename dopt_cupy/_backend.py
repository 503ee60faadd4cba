"""The CuPy adapter: CUDA devices, ``cupy.random.Generator`` draws, explicit host transfers.

CuPy forbids implicit conversion to NumPy, so every transfer here is explicit
(``cupy.asnumpy``) and happens only at the host-solver boundary.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np
from array_api_compat import cupy as cupy_xp

from dopt_core.backend import Backend, int_seed, type_name


def _generator(rng: Any) -> Any:
    if isinstance(rng, cupy.random.Generator):
        return rng
    seed = int_seed(rng)
    if rng is None or seed is not None:
        return cupy.random.default_rng(seed)
    raise TypeError(
        "rng must be a cupy.random.Generator, a numpy.random.Generator, an int seed or None for "
        f"CuPy arrays, got {type_name(rng)}"
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

    def draws_on_host(self, rng: Any) -> bool:
        return isinstance(rng, np.random.Generator)

    def native_draw(self, rng: Any, kind: str, shape: tuple[int, ...], *, like: Any) -> Any:
        with like.device:
            gen = _generator(rng)
            if kind == "normal":
                return gen.standard_normal(shape, dtype=like.dtype)
            if kind == "uniform":
                return gen.random(shape, dtype=like.dtype)
            return gen.standard_exponential(shape, dtype=like.dtype)

    def native_gamma(
        self, rng: Any, concentration: float, shape: tuple[int, ...], *, like: Any
    ) -> Any:
        with like.device:
            return _generator(rng).standard_gamma(concentration, size=shape, dtype=like.dtype)

    def info(self) -> dict[str, Any]:
        n = cupy.cuda.runtime.getDeviceCount()
        return {"name": self.name, "version": cupy.__version__, "devices": [f"cuda:{i}" for i in range(n)]}
