"""dopt for CuPy: the core's public names on CUDA arrays.

CuPy has no autodiff: functions return values, and :func:`value_and_vjp` returns the
value with the core's explicit VJP, computed on the GPU. Requires a CUDA device.
"""

from dopt_core import *  # noqa: F403 - the plugin exports the core's public names
from dopt_core import __all__ as _core_all
from dopt_core import __version__, register_backend, solvers, testing, value_and_vjp  # noqa: F401

from ._backend import CupyBackend

register_backend(CupyBackend())

__all__ = [*_core_all, "CupyBackend"]
