"""Backend adapters: what the array API standard leaves to each framework.

The array API standard covers the arithmetic of every :mod:`dopt_core` function; it
does not cover random numbers, host transfers or automatic differentiation. A
:class:`Backend` adapter supplies those for one array library:

* ``name`` and ``extra`` (the pip extra that installs the plugin's framework);
* :meth:`Backend.owns` — does this array belong to me?
* :meth:`Backend.device` — the device an array lives on;
* :meth:`Backend.to_numpy` / :meth:`Backend.from_numpy` — the host round trip;
* random draws — only the basic ones: :meth:`Backend.native_draw` (normal, uniform,
  exponential) and :meth:`Backend.native_gamma` — from the backend's own generator
  (NumPy ``Generator``, ``torch.Generator``, JAX key, CuPy generator) or a
  non-negative ``int`` seed (:func:`int_seed`); a NumPy ``Generator`` draws on the
  host (:meth:`Backend.draws_on_host`), then transfers. The laws built on them
  (Gumbel, Normal, sum-of-Gamma) live in :mod:`dopt_core.noise`, sampled through
  :meth:`Backend.sample`;
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
Its lookup core is :mod:`dopt_core._lib._registry` (so that the validators of
``_lib`` can find an adapter without importing this module); :func:`backend_for` and
:func:`registered_backends` are re-exported from there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._lib import _registry
from ._lib._checks import check_leaf_shapes  # noqa: F401 - re-exported for the plugins
from ._lib._compat import array_namespace, is_lazy_array
from ._lib._compat import device as _device
from ._lib._constants import on_static_table  # noqa: F401 - re-exported for the plugins
from ._lib._registry import PLUGINS, backend_for, registered_backends  # noqa: F401 - re-exported
from ._lib._typing import OpLike

if TYPE_CHECKING:
    from .noise import Noise

__all__ = [
    "ArrayAPIBackend",
    "Backend",
    "NumPyBackend",
    "apply_op",
    "backend_for",
    "check_leaf_shapes",
    "host_call",
    "int_seed",
    "numpy_generator",
    "on_static_table",
    "register_backend",
    "registered_backends",
    "type_name",
]

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

    def has_value(self, x: Any) -> bool:
        """True when a 0-d ``x`` can be read as a Python number now (a hyper-parameter
        given as an array). Defaults to ``not is_traced(x)``; an adapter whose
        ``is_traced`` also skips value *checks* for readable arrays (torch while
        compiling, where a read is only a graph break) answers here separately."""
        return not self.is_traced(x)

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

    def clamp_min(self, x: Any, low: float) -> Any:
        """``max(x, low)`` entrywise for a Python float ``low`` (``xp.maximum`` by default;
        backends whose compat layer converts the scalar on every call may go direct)."""
        return self.namespace(x).maximum(x, low)

    # -- host round trip -----------------------------------------------------------
    def to_numpy(self, x: Any) -> np.ndarray:
        return np.from_dlpack(x)

    def from_numpy(self, a: np.ndarray, *, like: Any) -> Any:
        xp = self.namespace(like)
        return xp.asarray(np.asarray(a, order="C"), device=self.device(like))

    # -- random numbers ------------------------------------------------------------
    def draws_on_host(self, rng: Any) -> bool:
        """Whether draws from ``rng`` are made on the host by NumPy (then transferred once).

        The default (libraries without a plugin): always. Plugins draw natively and say
        ``True`` only for a NumPy ``Generator``; the NumPy adapter is the host.
        """
        return True

    def sample(self, law: Noise, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """Draws of the noise law ``law`` (:mod:`dopt_core.noise`), ``like``'s dtype and device.

        When :meth:`draws_on_host` holds, the whole law is sampled by the NumPy adapter
        and transferred once, so a NumPy ``Generator`` gives the NumPy reference values on
        every backend; otherwise the law is built on this adapter's native draws.
        """
        shape = tuple(shape)
        if self.draws_on_host(rng):
            host_like = np.empty(0, dtype=_numpy_dtype(like.dtype))
            return self.from_numpy(law.draw_with(_NUMPY, rng, shape, like=host_like), like=like)
        return law.draw_with(self, rng, shape, like=like)

    def draw(self, rng: Any, kind: str, shape: Sequence[int], *, like: Any) -> Any:
        """Basic draw of ``kind`` ("normal", "uniform" or "exponential").

        The result has ``like``'s dtype and device. Adapters make only these (and
        :meth:`standard_gamma`); laws built on them — Gumbel, sum-of-Gamma — are
        defined once in :mod:`dopt_core.noise` and sampled with :meth:`sample`.
        """
        _check_kind(kind)
        shape = tuple(shape)
        if self.draws_on_host(rng):
            a = _draw_numpy(numpy_generator(rng), kind, shape, _numpy_dtype(like.dtype))
            return self.from_numpy(a, like=like)
        return self.native_draw(rng, kind, shape, like=like)

    def native_draw(self, rng: Any, kind: str, shape: tuple[int, ...], *, like: Any) -> Any:
        """Plugin hook: a basic draw ("normal", "uniform", "exponential") from the
        framework's own generator, an int seed or ``None``."""
        raise NotImplementedError(f"{self.name} makes its draws on the host")

    def standard_gamma(self, rng: Any, concentration: float, shape: Sequence[int], *, like: Any) -> Any:
        """``Gamma(concentration, scale=1)`` draws (on the host when :meth:`draws_on_host`)."""
        shape = tuple(shape)
        if self.draws_on_host(rng):
            a = numpy_generator(rng).standard_gamma(float(concentration), shape)
            return self.from_numpy(a.astype(_numpy_dtype(like.dtype), copy=False), like=like)
        return self.native_gamma(rng, float(concentration), shape, like=like)

    def native_gamma(
        self, rng: Any, concentration: float, shape: tuple[int, ...], *, like: Any
    ) -> Any:
        """Plugin hook: ``Gamma(concentration)`` draws from the framework's generator."""
        raise NotImplementedError(f"{self.name} makes its draws on the host")

    def standard_normal(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """``N(0, 1)`` draws."""
        return self.draw(rng, "normal", shape, like=like)

    def uniform(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """``U[0, 1)`` draws."""
        return self.draw(rng, "uniform", shape, like=like)

    def exponential(self, rng: Any, shape: Sequence[int], *, like: Any) -> Any:
        """``Exp(1)`` draws."""
        return self.draw(rng, "exponential", shape, like=like)

    # -- execution -----------------------------------------------------------------
    def apply_op(self, op: OpLike, *inputs: Any) -> Any:
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

    def native_grad_hessian(
        self, fn: Callable[[Any], Any], y: Any, *, hessian: bool
    ) -> tuple[Any, Any, Any]:
        """``(fn(y), ∇_y Σ fn(y), H)`` by the framework's own autodiff, detached.

        ``fn`` maps ``y (*batch, m)`` to per-sample values; with independent samples the
        gradient of the sum holds each sample's gradient, and the ``m`` Hessian-vector
        products with the unit vectors (broadcast over the batch) hold each sample's
        ``m × m`` Hessian, returned as ``H (*batch, m, m)`` when ``hessian`` (else
        ``None``). Used by :func:`dopt_core.newton.newton_loss`; raises
        ``NotImplementedError`` for libraries without autodiff.
        """
        raise NotImplementedError(f"{self.name} has no automatic differentiation")

    #: Optional plugin kernels, ``None`` where the core's array-API reference serves:
    #: ``one_hot_sum(index, n, weights, like)`` (a scatter-add histogram, see
    #: ``dopt_core._lib._scatter``), ``first_argmax(x)`` (the lowest-index arg-max along
    #: the last axis) and ``categorical_counts(rng, prob, num_samples, like)``
    #: (multinomial counts from the framework's generator, for the Rao-Blackwellised
    #: perturbed arg-max).
    one_hot_sum: Callable[..., Any] | None = None
    first_argmax: Callable[..., Any] | None = None
    categorical_counts: Callable[..., Any] | None = None

    def stop_gradient(self, x: Any) -> Any:
        """``x`` cut from the framework's autodiff graph (unchanged without autodiff)."""
        return x

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

    def draws_on_host(self, rng: Any) -> bool:
        return False  # NumPy is the host: its native draws are the reference

    def native_draw(self, rng: Any, kind: str, shape: tuple[int, ...], *, like: Any) -> Any:
        return _draw_numpy(numpy_generator(rng), kind, shape, _numpy_dtype(like.dtype))

    def native_gamma(
        self, rng: Any, concentration: float, shape: tuple[int, ...], *, like: Any
    ) -> Any:
        a = numpy_generator(rng).standard_gamma(concentration, shape)
        return a.astype(_numpy_dtype(like.dtype), copy=False)

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
# Registry (its lookup core is dopt_core._lib._registry, so that _lib never imports
# this module; backend_for and registered_backends are re-exported from there)
# ---------------------------------------------------------------------------------
def register_backend(backend: Backend) -> None:
    """Add (or replace) a plugin's adapter. Thread-safe; forgets the cached answers it
    may change: those of the adapter it replaces and of the generic fallback (types the
    new plugin may own). The others stay (lookup keeps registration order), so a
    plugin can warm the cache for its array types once (torch.compile cannot trace
    the locked lookup of an unseen type).

    Parameters
    ----------
    backend : Backend
        The adapter; it replaces any adapter registered under the same ``backend.name``.

    Examples
    --------
    >>> import dopt_core as dc
    >>> dc.register_backend("torch")
    Traceback (most recent call last):
    TypeError: backend must be a dopt_core.backend.Backend, got str
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a dopt_core.backend.Backend, got {type(backend).__name__}")
    _registry.add_backend(backend)


_NUMPY = NumPyBackend()
_registry.install_defaults(_NUMPY, ArrayAPIBackend)


def apply_op(op: OpLike, *inputs: Any) -> Any:
    """Run ``op`` on ``inputs`` through the adapter of ``inputs[0]``.

    This is where a core function hands its work to a plugin: under torch the op
    becomes a ``torch.autograd.Function``, under JAX a ``jax.custom_vjp`` function; with
    NumPy and other libraries without autodiff, the forward alone runs.

    Parameters
    ----------
    op : Op
        The operation (an immutable, hashable value).
    *inputs : array
        Its array inputs; the adapter of the first one runs the Op.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> from dopt_core.backend import apply_op
    >>> bound = dc.solvers.sort.bind(np.array([3.0, 1.0, 2.0]))
    >>> apply_op(bound.op, *bound.inputs)
    array([1., 2., 3.])
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

    Parameters
    ----------
    func : callable
        ``func(*numpy_arrays) -> numpy.ndarray``, pure, batched over leading axes.
    *inputs : array
        Its inputs, arrays of one backend; the result comes back like ``inputs[0]``.
    shape : tuple of int
        The exact shape of the result.
    dtype : dtype
        The dtype of the result (of ``inputs[0]``'s library).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.backend import host_call
    >>> x = np.array([[3.0, 1.0], [0.0, 2.0]])
    >>> host_call(lambda a: np.sort(a, axis=-1), x, shape=(2, 2), dtype=x.dtype)
    array([[1., 3.],
           [0., 2.]])
    """
    return backend_for(inputs[0]).host_call(func, *inputs, shape=tuple(shape), dtype=dtype)


# ---------------------------------------------------------------------------------
# NumPy random draws (used by the NumPy adapter and as the fallback for all others)
# ---------------------------------------------------------------------------------
_KINDS = ("normal", "uniform", "exponential")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(
            f"noise kind must be one of {_KINDS} (the basic draws; laws such as the Gumbel are "
            f"in dopt_core.noise: noise.GUMBEL.sample(backend, rng, shape, like=...)), got {kind!r}"
        )


def type_name(x: Any) -> str:
    """``x``'s type for error messages: ``torch.Generator``, ``numpy.random.Generator``, ``str``.

    Parameters
    ----------
    x : object
        Any object.

    Examples
    --------
    >>> import numpy as np
    >>> type_name(np.random.default_rng(0)), type_name("a")
    ('numpy.random.Generator', 'str')
    """
    t = type(x)
    root = (t.__module__ or "").split(".")[0]
    if root == "builtins":
        return t.__qualname__
    if root == "numpy" and isinstance(x, np.random.Generator):
        return "numpy.random.Generator"
    return f"{root}.{t.__qualname__}"


def int_seed(rng: Any, *, name: str = "rng") -> int | None:
    """``rng`` as an ``int`` if it is an integer seed (Python or NumPy integer, not a
    bool), else ``None``. The one seed rule of every adapter: a seed outside
    ``[0, 2**63)`` raises ``ValueError`` naming ``rng`` (NumPy refuses negative seeds,
    torch and JAX would accept them; torch and JAX overflow at 2**63 or 2**64).

    Parameters
    ----------
    rng : object
        The ``rng=`` argument of a stochastic op.
    name : str
        The argument's name in the error message.

    Examples
    --------
    >>> import numpy as np
    >>> int_seed(np.int64(3)), int_seed(None), int_seed(True)
    (3, None, None)
    """
    if type(rng) is not int and (isinstance(rng, bool | np.bool_) or not isinstance(rng, numbers.Integral)):
        return None
    seed = int(rng)
    if not 0 <= seed < 2**63:  # torch and JAX seeds are 64-bit signed integers
        raise ValueError(f"{name} must be an int seed in [0, 2**63), got {seed}")
    return seed


def numpy_generator(rng: Any) -> np.random.Generator:
    """The NumPy ``Generator`` for ``rng``: a ``Generator`` itself, an int seed, or ``None``.

    Other kinds raise ``TypeError`` naming ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
        The ``rng=`` argument of a stochastic op drawn on the host.

    Examples
    --------
    >>> numpy_generator(0).normal() == numpy_generator(0).normal()
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    seed = int_seed(rng)
    if seed is None:
        raise TypeError(
            f"rng must be a numpy.random.Generator, an int seed or None for NumPy arrays (and "
            f"for any array drawn on the host), got {type_name(rng)}"
        )
    return np.random.default_rng(seed)


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
    else:
        a = gen.random(shape, dtype=fdtype)
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
