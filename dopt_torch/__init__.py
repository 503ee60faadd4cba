"""dopt for PyTorch: the core's public names, with torch autograd wired to the core's VJPs.

Importing this module registers the torch adapter with :mod:`dopt_core`; the core
also imports it by itself the first time it sees a ``torch.Tensor``. Functions take
and return tensors on the input's device; gradients come from the core's explicit
vector-Jacobian products through one generic ``torch.autograd.Function``.
"""

import torch

from dopt_core import *  # noqa: F403 - the plugin exports the core's public names
from dopt_core import __all__ as _core_all
from dopt_core import (  # noqa: F401
    __version__,
    backend_for,
    register_backend,
    solvers,
    testing,
    value_and_vjp,
)
from dopt_core.backend import on_static_table

from . import nn
from ._autograd import AutogradOp
from ._autograd import apply_op
from ._backend import TorchBackend
from ._pytree import fenchel_young_loss, perturbed, perturbed_max  # noqa: E402, F401, F811 - pytree-aware (names in the core's __all__)

register_backend(TorchBackend())
# The core's static index tables (sorting networks) are constants to torch.compile: it
# calls them once while tracing instead of tracing their NumPy code and caches.
on_static_table(torch.compiler.assume_constant_result)
# Resolve the tensor types once now: torch.compile traces backend_for, and cannot
# trace its locked lookup of a type seen for the first time.
for _t in (torch.empty(0), torch.nn.Parameter(torch.empty(0))):
    backend_for(_t)
del _t

__all__ = [*_core_all, "AutogradOp", "TorchBackend", "apply_op", "nn"]
