"""The backend registry: which adapter owns an array (the lookup core of :mod:`dopt_core.backend`).

This module sits in :mod:`dopt_core._lib` so that the validators of
:mod:`dopt_core._lib._checks` can find an array's adapter without importing anything
above ``_lib``. It knows adapters only through two methods, ``name`` and
``owns(x)``: the adapter classes themselves (``Backend``, ``NumPyBackend``,
``ArrayAPIBackend``) live in :mod:`dopt_core.backend`, which installs the NumPy
adapter and the generic fallback here when it is imported (always, before any
lookup: the package ``dopt_core`` imports it first). The public names
(:func:`backend_for`, :func:`registered_backends`, ``register_backend``) are
re-exported by :mod:`dopt_core.backend`.

The lookup imports a framework's plugin lazily (only when an array of that framework
is seen, so the framework is already imported) and caches the answer per array type.
The registry is guarded by a lock: lookups may come from many threads.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any

from ._compat import array_namespace, is_array_api_obj

__all__ = [
    "PLUGINS",
    "add_backend",
    "backend_for",
    "clear_cache",
    "install_defaults",
    "registered_backends",
]

#: Root module of an array type -> (plugin module, pip extra).
PLUGINS: dict[str, tuple[str, str]] = {
    "torch": ("dopt_torch", "torch"),
    "jax": ("dopt_jax", "jax"),
    "jaxlib": ("dopt_jax", "jax"),
    "cupy": ("dopt_cupy", "cupy"),
}

_LOCK = threading.RLock()
_BACKENDS: dict[str, Any] = {}
_BY_TYPE: dict[type, Any] = {}
_DEFAULTS: dict[str, Any] = {}  # "numpy": the NumPy adapter, "generic": xp -> adapter


def install_defaults(numpy: Any, generic: Callable[[Any], Any]) -> None:
    """Set the NumPy adapter (tried first) and the factory of the fallback adapter for
    array-API libraries without a plugin (called with the array's namespace)."""
    with _LOCK:
        _DEFAULTS["numpy"] = numpy
        _DEFAULTS["generic"] = generic
        _BY_TYPE.clear()


def add_backend(backend: Any) -> None:
    """Add (or replace) an adapter under ``backend.name``.

    Forgets only the cached answers the new adapter may change: those of the adapter
    it replaces and those of the generic fallback (types the new plugin may own). The
    others stay, so a plugin can warm the cache for its array types once
    (``torch.compile`` cannot trace the locked lookup of an unseen type). The caller
    has checked that ``backend`` is an adapter
    (:func:`dopt_core.backend.register_backend` does).
    """
    with _LOCK:
        _BACKENDS[backend.name] = backend
        generic = _DEFAULTS.get("generic")
        for t, b in list(_BY_TYPE.items()):
            if b.name == backend.name or (isinstance(generic, type) and isinstance(b, generic)):
                del _BY_TYPE[t]


def clear_cache() -> None:
    """Forget the per-type answers (the next lookup of every type searches again)."""
    with _LOCK:
        _BY_TYPE.clear()


def registered_backends() -> dict[str, Any]:
    """Snapshot of the registered adapters by name (NumPy always included).

    Examples
    --------
    >>> from dopt_core.backend import registered_backends
    >>> registered_backends()["numpy"]
    <dopt backend 'numpy'>
    """
    with _LOCK:
        return {"numpy": _DEFAULTS["numpy"], **_BACKENDS}


def _lookup(x: Any) -> Any:
    numpy = _DEFAULTS.get("numpy")
    if numpy is None:
        raise RuntimeError("dopt_core.backend has not installed the NumPy adapter yet")
    if numpy.owns(x):
        return numpy
    for b in _BACKENDS.values():
        if b.owns(x):
            return b
    return None


def backend_for(x: Any, *, name: str = "theta") -> Any:
    """The adapter (a :class:`dopt_core.backend.Backend`) of array ``x``.

    Looks through the registry; failing that, imports the plugin for ``x``'s framework
    (which registers itself); failing that, falls back to
    :class:`dopt_core.backend.ArrayAPIBackend` for any array-API object. Raises
    ``TypeError`` naming ``name`` for non-arrays, and naming the extra to install when
    a framework's plugin cannot be imported.

    Parameters
    ----------
    x : array
        An array of any supported library.
    name : str
        The argument's name, used in the error message.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> dc.backend_for(np.zeros(3))
    <dopt backend 'numpy'>
    >>> dc.backend_for([1.0, 2.0], name="scores")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: scores must be an array (NumPy, PyTorch, ...), got builtins.list
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
            generic = _DEFAULTS["generic"](array_namespace(x))
            found = _BACKENDS.setdefault(generic.name, generic)
        if found is None:
            raise TypeError(
                f"{name} must be an array (NumPy, PyTorch, JAX, CuPy or any array-API "
                f"library), got {t.__module__}.{t.__qualname__}"
            )
        _BY_TYPE[t] = found
        return found
