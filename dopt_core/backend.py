"""Backend adapters: what the array API standard leaves to each framework.

The array API standard covers the arithmetic of every :mod:`dopt_core` function; it
does not cover random numbers, host transfers or automatic differentiation. A
:class:`Backend` adapter supplies those for one array library:

* ``name`` and ``extra`` (the pip extra that installs the plugin's framework);
* :meth:`Backend.owns` — does this array belong to me?
* :meth:`Backend.device` — the device an array lives on;
* :meth:`Backend.to_numpy` / :meth:`Backend.from_numpy` — the host round trip;
* random draws — :meth:`Backend.standard_normal`, :meth:`Backend.gumbel`,
  :meth:`Backend.uniform`, :meth:`Backend.exponential` — from the backend's own
  generator (NumPy ``Generator``, ``torch.Generator``, JAX key, CuPy generator), an
  ``int`` seed, or a NumPy ``Generator`` (drawn on the host, then transferred);
* :meth:`Backend.apply_op` — run a core :class:`~dopt_core.op.Op` so that the
  framework's autodiff uses the Op's explicit VJP;
* :meth:`Backend.host_call` — run a NumPy function on the host inside a computation
  (JAX wraps it in ``jax.pure_callback``).

The NumPy adapter lives here; every other array-API library without a plugin (e.g.
``array_api_strict``) gets :class:`ArrayAPIBackend`. The torch, JAX and CuPy adapters
live in their plugins, which register themselves on import. :func:`backend_for` finds
the adapter of an array, importing the plugin lazily — only when an array of that
framework is seen, so the framework is already imported — and caches the answer per
array type. The registry is guarded by a lock: lookups may come from many threads.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lib._compat import array_namespace, is_array_api_obj, is_lazy_array
from ._lib._compat import device as _device

if TYPE_CHECKING:
    from .op import Op

__all__ = [
    "ArrayAPIBackend",
    "Backend",
    "NumPyBackend",
    "apply_op",
    "backend_for",
    "host_call",
    "register_backend",
    "registered_backends",
]

#: Root module of an array type -> (plugin module, pip extra).
PLUGINS: dict[str, tuple[str, str]] = {
    "torch": ("dopt_torch", "torch"),
    "jax": ("dopt_jax", "jax"),
    "jaxlib": ("dopt_jax", "jax"),
    "cupy": ("dopt_cupy", "cupy"),
}


class Backend:
    """Adapter protocol, with the defaults that hold for any eager array-API library.

    Subclasses override what their framework does differently. Draw methods take
    ``rng`` (see the module docstring), a ``shape`` tuple and the ``dtype`` and
    ``device`` of the arrays the draw will be combined with; they return an array of
    this backend.
    """

    name: str = "abstract"
    extra: str | None = None
    #: Whether :meth:`host_call`'s ``func`` always receives the whole array it was
    #: given. False where a batching transform may split it (JAX's ``vmap`` runs the
    #: callback on the vmapped slice, without the mapped axis), so that host code must
    #: not rely on flat positions computed from the array it sees.
    host_call_sees_whole_batch: bool = True

    # -- identity ------------------------------------------------------------------
    def owns(self, x: Any) -> bool:
        raise NotImplementedError

    def namespace(self, x: Any) -> Any:
        return array_namespace(x)

    def device(self, x: Any) -> Any:
        return _device(x)

    def same_device(self, a: Any, b: Any) -> bool:
        return bool(a == b)

    def is_traced(self, x: Any) -> bool:
        """True when ``x``'s values cannot be read now (a tracer, a lazy graph)."""
        return is_lazy_array(x)

    def take(self, x: Any, indices: Any, axis: int) -> Any:
        """``xp.take(x, indices, axis=axis)`` for indices known to be non-negative.

        Static index tables (sorting networks, merge schedules) are never negative;
        backends whose compat ``take`` remaps negative indices on every call may skip it.
        """
        return self.namespace(x).take(x, indices, axis=axis)

    def all_finite(self, x: Any) -> bool | None:
        """Whether every entry of the floating-point array ``x`` is finite.

        ``None`` when the answer cannot be read now (a JAX tracer: a constant used
        inside ``jax.jit``). The default tests entry by entry; backends may answer
        faster, e.g. from one sum (finite only if every entry is).
        """
        xp = self.namespace(x)
        finite = xp.all(xp.isfinite(x))
        return None if self.is_traced(finite) else bool(finite)

    # -- host round trip -----------------------------------------------------------
    def to_numpy(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def from_numpy(self, a: np.ndarray, *, like: Any) -> Any:
        xp = self.namespace(like)
        return xp.asarray(np.asarray(a, order="C"), device=self.device(like))

    # -- random numbers ------------------------------------------------------------
    def _numpy_draw(self, rng: Any, kind: str, shape: tuple[int, ...], dtype: Any, like: Any) -> Any:
        gen = _numpy_generator(rng)
        a = _draw_numpy(gen, kind, shape, _numpy_dtype(dtype))
        return self.from_numpy(a, like=like)

    def draw(self, rng: Any, kind: str, shape: Sequence[int], *, like: Any) -> Any:
        """Standard draw of ``kind`` ("normal", "gumbel", "uniform", "exponential").

        The result has ``like``'s dtype and device. The default draws with NumPy on the
        host and transfers once; plugins draw natively from their own generators.
        """
        _check_kind(kind)
        return self._numpy_draw(rng, kind, tuple(shape), like.dtype, like)

    def standard_gamma(self, rng: Any, concentration: float, shape: Sequence[int], *, like: Any) -> Any:
        """``Gamma(concentration, scale=1)`` draws (default: NumPy on the host, one transfer)."""
        gen = _numpy_generator(rng)
        a = gen.standard_gamma(float(concentration), tuple(shape))
        return self.from_numpy(a.astype(_numpy_dtype(like.dtype), copy=False), like=like)

    def standard_normal(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """``N(0, 1)`` draws."""
        return self.draw(rng, "normal", shape, like=like)

    def gumbel(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """Standard Gumbel draws, ``G = -log E`` with ``E ~ Exp(1)`` (mean γ, variance π²/6)."""
        return self.draw(rng, "gumbel", shape, like=like)

    def uniform(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """``U[0, 1)`` draws."""
        return self.draw(rng, "uniform", shape, like=like)

    def exponential(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """``Exp(1)`` draws."""
        return self.draw(rng, "exponential", shape, like=like)

    # -- execution -----------------------------------------------------------------
    def apply_op(self, op: Op, *inputs: Any) -> Any:
        """Run ``op``; frameworks with autodiff wire ``op.vjp`` into it."""
        xp = self.namespace(inputs[0])
        y, _ = op.forward(*inputs, xp=xp)
        return y

    def native_vjp(self, fn: Callable[[Any], Any], theta: Any, cotangent: Any) -> Any:
        """Gradient of ``<fn(theta), cotangent>`` by the framework's own autodiff.

        Raises ``NotImplementedError`` for libraries without autodiff (NumPy, CuPy,
        array-API libraries), where :func:`dopt_core.value_and_vjp` is the only route.
        """
        raise NotImplementedError(f"{self.name} has no automatic differentiation")

    def host_call(
        self, func: Callable[..., np.ndarray], *inputs: Any, shape: tuple[int, ...], dtype: Any
    ) -> Any:
        """``func(*numpy_inputs)`` on the host; the result comes back like ``inputs[0]``.

        ``func`` must be pure and return an array of exactly ``shape`` and ``dtype``
        (the caller states them up front so that lazy backends can trace the call).
        """
        like = inputs[0]
        out = func(*(self.to_numpy(x) for x in inputs))
        out = np.asarray(out)
        _check_host_result(out, shape)
        return self.from_numpy(out.astype(_numpy_dtype(dtype), copy=False), like=like)

    # -- reporting -----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Version and devices, for ``dopt info``."""
        return {"name": self.name}

    def __repr__(self) -> str:
        return f"<dopt backend {self.name!r}>"


class NumPyBackend(Backend):
    """The reference backend: NumPy arrays, NumPy ``Generator`` draws, no autodiff."""

    name = "numpy"

    def owns(self, x: Any) -> bool:
        return isinstance(x, np.ndarray | np.generic)

    def device(self, x: Any) -> Any:
        return "cpu"

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def all_finite(self, x: Any) -> bool | None:
        return _all_finite_numpy(np.asarray(x))

    def from_numpy(self, a: np.ndarray, *, like: Any) -> Any:
        return np.asarray(a)

    def draw(self, rng: Any, kind: str, shape: Sequence[int], *, like: Any) -> Any:
        _check_kind(kind)
        return _draw_numpy(_numpy_generator(rng), kind, tuple(shape), _numpy_dtype(like.dtype))

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": np.__version__, "devices": ["cpu"]}


class ArrayAPIBackend(Backend):
    """Adapter for an array-API library without a plugin (e.g. ``array_api_strict``).

    Random draws are made with NumPy and transferred; there is no autodiff, so ops run
    their forward only (their VJPs are still reachable through
    :func:`dopt_core.value_and_vjp`).
    """

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.name = getattr(xp, "__name__", repr(xp))

    def owns(self, x: Any) -> bool:
        try:
            return array_namespace(x) is self.xp
        except TypeError:
            return False

    def namespace(self, x: Any) -> Any:
        return self.xp

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": getattr(self.xp, "__version__", "?")}


# ---------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------
_LOCK = threading.RLock()
_BACKENDS: dict[str, Backend] = {}
_BY_TYPE: dict[type, Backend] = {}
_NUMPY = NumPyBackend()


def register_backend(backend: Backend) -> None:
    """Add (or replace) a plugin's adapter. Thread-safe; clears the per-type cache."""
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a dopt_core.backend.Backend, got {type(backend).__name__}")
    with _LOCK:
        _BACKENDS[backend.name] = backend
        _BY_TYPE.clear()


def registered_backends() -> dict[str, Backend]:
    """Snapshot of the registered adapters by name (NumPy always included)."""
    with _LOCK:
        return {"numpy": _NUMPY, **_BACKENDS}


def _lookup(x: Any) -> Backend | None:
    if _NUMPY.owns(x):
        return _NUMPY
    for b in _BACKENDS.values():
        if b.owns(x):
            return b
    return None


def backend_for(x: Any, *, name: str = "theta") -> Backend:
    """The adapter of array ``x``.

    Looks through the registry; failing that, imports the plugin for ``x``'s framework
    (which registers itself); failing that, falls back to :class:`ArrayAPIBackend` for
    any array-API object. Raises ``TypeError`` naming ``name`` for non-arrays, and
    naming the extra to install when a framework's plugin cannot be imported.
    """
    t = type(x)
    cached = _BY_TYPE.get(t)
    if cached is not None:
        return cached
    with _LOCK:
        found = _lookup(x)
    if found is None:
        root = (t.__module__ or "").split(".")[0]
        if root in PLUGINS:
            # Import outside the lock: the plugin registers itself (taking the lock), and
            # another thread may be importing it at the same time (import lock).
            plugin, extra = PLUGINS[root]
            try:
                importlib.import_module(plugin)
            except ImportError as exc:
                raise TypeError(
                    f"{name} is a {root} array, but the dopt plugin {plugin!r} could not be "
                    f"imported ({exc}); install it with: pip install 'dopt[{extra}]'"
                ) from exc
    with _LOCK:
        found = found or _lookup(x)
        if found is None and is_array_api_obj(x):
            generic = ArrayAPIBackend(array_namespace(x))
            found = _BACKENDS.setdefault(generic.name, generic)
        if found is None:
            raise TypeError(
                f"{name} must be an array (NumPy, PyTorch, JAX, CuPy or any array-API "
                f"library), got {t.__module__}.{t.__qualname__}"
            )
        _BY_TYPE[t] = found
        return found


def apply_op(op: Op, *inputs: Any) -> Any:
    """Run ``op`` on ``inputs`` through the adapter of ``inputs[0]``.

    This is where a core function hands its work to a plugin: under torch the op
    becomes a ``torch.autograd.Function``, under JAX a ``jax.custom_vjp`` function; with
    NumPy and other libraries without autodiff, the forward alone runs.
    """
    return backend_for(inputs[0]).apply_op(op, *inputs)


def take_nonnegative(x: Any, indices: Any, axis: int) -> Any:
    """``take`` along ``axis`` with non-negative indices, through ``x``'s adapter
    (:meth:`Backend.take`)."""
    return backend_for(x).take(x, indices, axis)


def host_call(
    func: Callable[..., np.ndarray], *inputs: Any, shape: tuple[int, ...], dtype: Any
) -> Any:
    """Run the NumPy function ``func`` on the host (one transfer each way).

    The single place where arrays leave their device for host code (SciPy solvers, a
    user's oracle). ``shape`` and ``dtype`` describe the result and must be exact;
    under JAX the call becomes ``jax.pure_callback`` and works under ``jit`` and
    ``vmap`` (batched over leading dimensions). ``func`` must be pure and must not
    raise for inputs that passed validation.
    """
    return backend_for(inputs[0]).host_call(func, *inputs, shape=tuple(shape), dtype=dtype)


# ---------------------------------------------------------------------------------
# NumPy random draws (used by the NumPy adapter and as the fallback for all others)
# ---------------------------------------------------------------------------------
_KINDS = ("normal", "gumbel", "uniform", "exponential")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"noise kind must be one of {_KINDS}, got {kind!r}")


def _numpy_generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, int | np.integer) and not isinstance(rng, bool)):
        return np.random.default_rng(None if rng is None else int(rng))
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None for NumPy arrays, "
        f"got {type(rng).__name__}"
    )


def _numpy_dtype(dtype: Any) -> np.dtype:
    """NumPy dtype with the same name as an array-API dtype (float32/float64/...)."""
    if isinstance(dtype, np.dtype):
        return dtype
    name = str(dtype).rsplit(".", 1)[-1]
    return np.dtype(name)


def _draw_numpy(gen: np.random.Generator, kind: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    _check_kind(kind)
    fdtype = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if kind == "normal":
        a = gen.standard_normal(shape, dtype=fdtype)
    elif kind == "exponential":
        a = gen.standard_exponential(shape, dtype=fdtype)
    elif kind == "uniform":
        a = gen.random(shape, dtype=fdtype)
    else:  # gumbel = -log(E), E ~ Exp(1); in float32 E = 0 about once in 10^7 draws: clamp
        a = -np.log(np.maximum(gen.standard_exponential(shape, dtype=fdtype), np.finfo(fdtype).tiny))
    return a.astype(dtype, copy=False)


def _check_host_result(out: np.ndarray, shape: tuple[int, ...]) -> None:
    if tuple(out.shape) != tuple(shape):
        raise ValueError(
            f"host function returned shape {tuple(out.shape)}, but the caller declared {tuple(shape)}"
        )


def _all_finite_numpy(a: np.ndarray) -> bool:
    # NaN and ±inf propagate through a sum: a finite sum means finite entries. A
    # non-finite sum (a non-finite entry, or finite entries overflowing) is re-checked
    # entry by entry, so the answer is always exact.
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(np.sum(a, dtype=a.dtype))):
            return True
    return bool(np.isfinite(a).all())
