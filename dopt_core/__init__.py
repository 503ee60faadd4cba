"""dopt_core: the reference core of dopt, written once against the array API.

NumPy is the reference and the default; PyTorch, JAX and CuPy arrays work through
the plugins ``dopt_torch``, ``dopt_jax`` and ``dopt_cupy``, found lazily when such an
array is first seen. This module never imports a framework.
"""

from . import backend, relax, solvers, testing
from .backend import Backend, backend_for, register_backend
from .op import Bound, Op, OpFunction, op_function, value_and_vjp

__version__ = "0.1.0.dev0"

__all__ = [
    "Backend",
    "Bound",
    "Op",
    "OpFunction",
    "__version__",
    "backend",
    "backend_for",
    "op_function",
    "register_backend",
    "relax",
    "solvers",
    "testing",
    "value_and_vjp",
]
