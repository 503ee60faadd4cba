"""Every backend the conformance suite knows, as small environments.

An environment turns NumPy test data into arrays of its backend on its device
(:meth:`Env.asarray`), brings results back (:meth:`Env.to_numpy`) and computes a
vector-Jacobian product the way a user of that framework would (:meth:`Env.vjp`:
``loss.backward()`` in torch, ``jax.vjp`` in JAX, the core's explicit
``value_and_vjp`` elsewhere). :func:`setup` raises :class:`Skip` with a short reason
when a backend is missing ("no CUDA device", "torch not installed").

The array-API-strict environments use the non-default device ``device1`` so that a
forgotten ``device=`` shows up on a CPU-only machine; the "strictest" one also
disables boolean indexing and data-dependent shapes (what jit-compiled and GPU
libraries cannot do); the read-only NumPy environment catches in-place writes.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import dopt_core as dc

__all__ = ["BACKEND_NAMES", "Env", "Skip", "backend_names", "load_env", "register_env", "setup"]

BACKEND_NAMES = (
    "numpy",
    "numpy_readonly",
    "array_api_strict",
    "array_api_strictest",
    "torch",
    "torch_cuda",
    "jax",
    "jax_gpu",
    "cupy",
)


class Skip(Exception):
    """A check or backend that does not apply here; the message is the reason."""


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Skip(f"{module} not installed") from None


class Env:
    """A backend under test (see the module docstring)."""

    name: str = "?"
    autodiff: str | None = None  # "torch", "jax" or None (explicit VJP only)
    device: Any = None

    def asarray(self, a: np.ndarray) -> Any:
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray:
        return dc.testing.to_numpy(x)

    def device_of(self, x: Any) -> Any:
        return dc.backend_for(x).device(x)

    def same_device(self, a: Any, b: Any) -> bool:
        return dc.backend_for(self.asarray(np.zeros(1))).same_device(a, b)

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """Entered around every check (library flags, default devices)."""
        yield

    def vjp(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], g: Any) -> Any:
        """Gradient of ``<fn(*args, **kwargs), g>`` with respect to ``args[0]``, as a user
        of the framework gets it: its own autodiff where it has one, else the explicit VJP."""
        if self.autodiff is not None:
            backend = dc.backend_for(args[0])
            return backend.native_vjp(lambda t: fn(t, *args[1:], **kwargs), args[0], g)
        _, vjp = dc.value_and_vjp(fn, *args, **kwargs)
        return vjp(g)


class NumpyEnv(Env):
    name = "numpy"
    device = "cpu"

    def asarray(self, a: np.ndarray) -> Any:
        return np.array(a, copy=True)


class NumpyReadOnlyEnv(NumpyEnv):
    name = "numpy_readonly"

    def asarray(self, a: np.ndarray) -> Any:
        out = np.array(a, copy=True)
        out.flags.writeable = False
        return out


class StrictEnv(Env):
    name = "array_api_strict"

    def __init__(self) -> None:
        self.xp = _require("array_api_strict")
        self.device = self.xp.Device("device1")

    def asarray(self, a: np.ndarray) -> Any:
        return self.xp.asarray(a, device=self.device)


class StrictestEnv(StrictEnv):
    """array_api_strict with boolean indexing and data-dependent shapes disabled:
    what lazy and GPU libraries (JAX under jit, CuPy without sync) can do."""

    name = "array_api_strictest"

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        with self.xp.ArrayAPIStrictFlags(boolean_indexing=False, data_dependent_shapes=False):
            yield


class TorchEnv(Env):
    autodiff = "torch"

    def __init__(self, cuda: bool) -> None:
        self.torch = _require("torch")
        if cuda and not self.torch.cuda.is_available():
            raise Skip("no CUDA device")
        self.name = "torch_cuda" if cuda else "torch"
        self.device = self.torch.device("cuda" if cuda else "cpu")

    def asarray(self, a: np.ndarray) -> Any:
        return self.torch.asarray(np.array(a, order="C", copy=True), device=self.device)



class JaxEnv(Env):
    autodiff = "jax"

    def __init__(self, gpu: bool) -> None:
        self.jax = _require("jax")
        self.jax.config.update("jax_enable_x64", True)
        platform = "gpu" if gpu else "cpu"
        try:
            devices = self.jax.devices(platform)
        except RuntimeError:
            raise Skip(f"no JAX {platform.upper()} device") from None
        self.name = "jax_gpu" if gpu else "jax"
        self.device = devices[0]

    def asarray(self, a: np.ndarray) -> Any:
        return self.jax.device_put(self.jax.numpy.asarray(a), self.device)

    def same_device(self, a: Any, b: Any) -> bool:
        return a == b



class CupyEnv(Env):
    name = "cupy"

    def __init__(self) -> None:
        try:
            self.cupy = importlib.import_module("cupy")
        except Exception:  # noqa: BLE001 - CuPy fails to import in many ways without CUDA
            raise Skip("no CUDA device (cupy not importable)") from None
        try:
            count = self.cupy.cuda.runtime.getDeviceCount()
        except Exception:  # noqa: BLE001
            count = 0
        if count == 0:
            raise Skip("no CUDA device")
        self.device = self.cupy.cuda.Device(0)

    def asarray(self, a: np.ndarray) -> Any:
        with self.device:
            return self.cupy.asarray(a)


_FACTORIES: dict[str, Callable[[], Env]] = {
    "numpy": NumpyEnv,
    "numpy_readonly": NumpyReadOnlyEnv,
    "array_api_strict": StrictEnv,
    "array_api_strictest": StrictestEnv,
    "torch": lambda: TorchEnv(cuda=False),
    "torch_cuda": lambda: TorchEnv(cuda=True),
    "jax": lambda: JaxEnv(gpu=False),
    "jax_gpu": lambda: JaxEnv(gpu=True),
    "cupy": CupyEnv,
}
_CACHE: dict[str, Env | Skip] = {}
_EXTRA: list[str] = []


def register_env(name: str, factory: Callable[[], Env]) -> None:
    """Add a third-party backend to the suite.

    ``factory()`` returns an :class:`Env` for your array library (or raises
    :class:`Skip` with a reason when it is unavailable); register the library's
    :class:`dopt_core.Backend` adapter with :func:`dopt_core.register_backend` before
    (or inside) it. Afterwards ``run(backends=[name])``, ``dopt conformance --env
    MODULE:FACTORY`` and ``pytest --pyargs dopt_conformance --dopt-env
    MODULE:FACTORY`` check it like the built-in backends.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier-like string, got {name!r}")
    if name in BACKEND_NAMES:
        raise ValueError(f"{name!r} is a built-in backend of the suite; choose another name")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _FACTORIES[name] = factory
    _CACHE.pop(name, None)
    if name not in _EXTRA:
        _EXTRA.append(name)


def load_env(target: str) -> str:
    """Import ``"module:factory"``, register it with :func:`register_env` and return its
    name: the factory's ``name`` attribute (an :class:`Env` subclass has one), else the
    factory's own name."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected MODULE:FACTORY (e.g. my_adapter:MyEnv), got {target!r}")
    factory: Any = importlib.import_module(module)
    for part in attr.split("."):
        factory = getattr(factory, part)
    name = getattr(factory, "name", None)
    name = attr.rsplit(".", 1)[-1] if not isinstance(name, str) or name == Env.name else name
    if name not in _EXTRA:
        register_env(name, factory)
    return name


def backend_names() -> tuple[str, ...]:
    """The built-in backends (:data:`BACKEND_NAMES`) followed by the registered ones."""
    return BACKEND_NAMES + tuple(_EXTRA)


def setup(name: str) -> Env:
    """The environment of backend ``name``, or :class:`Skip` with the reason it is absent."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(backend_names())}")
    if name not in _CACHE:
        try:
            _CACHE[name] = _FACTORIES[name]()
        except Skip as exc:
            _CACHE[name] = exc
    env = _CACHE[name]
    if isinstance(env, Skip):
        raise env
    if not isinstance(env, Env):
        raise TypeError(f"the factory of backend {name!r} must return a dopt_conformance.Env, got {type(env).__name__}")
    return env
