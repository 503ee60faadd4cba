"""dopt_core: the reference core of dopt, written once against the array API.

NumPy is the reference and the default; PyTorch, JAX and CuPy arrays work through
the plugins ``dopt_torch``, ``dopt_jax`` and ``dopt_cupy``, found lazily when such an
array is first seen. This module never imports a framework.
"""

from . import backend, data, metrics, noise, projections, relax, solvers, testing
from . import logic
from .backend import Backend, backend_for, register_backend
from .losses import fenchel_young_loss, spo_plus_loss
from .metrics import normalized_regret, regret
from .op import Bound, Op, OpFunction, op_function, value_and_vjp
from .perturbed import perturbed, perturbed_max
from .replacements import identity, imle, interpolation, straight_through
from . import structured

__version__ = "0.1.0.dev0"

__all__ = [
    "Backend",
    "Bound",
    "Op",
    "OpFunction",
    "__version__",
    "backend",
    "backend_for",
    "data",
    "fenchel_young_loss",
    "identity",
    "imle",
    "interpolation",
    "logic",
    "metrics",
    "noise",
    "normalized_regret",
    "op_function",
    "perturbed",
    "perturbed_max",
    "projections",
    "register_backend",
    "regret",
    "relax",
    "solvers",
    "spo_plus_loss",
    "straight_through",
    "structured",
    "testing",
    "value_and_vjp",
]

# decision-focused learning: PyEPO's methods (issue 18)
from . import pool  # noqa: E402
from .adaptive import aimle  # noqa: E402
from .perturbation_gradient import perturbation_gradient_loss  # noqa: E402
from .pool import SolutionPool, cmap_loss, ltr_loss, nce_loss  # noqa: E402

__all__ += ["SolutionPool", "aimle", "cmap_loss", "ltr_loss", "nce_loss", "perturbation_gradient_loss", "pool"]
from .regularized import regularized_fenchel_young_loss, regularized_optimizer  # noqa: E402

__all__ += ["regularized_fenchel_young_loss", "regularized_optimizer"]
from .cave import binding_normals, cave_loss, shortest_path_normals  # noqa: E402

__all__ += ["binding_normals", "cave_loss", "shortest_path_normals"]
from .knn import knn_targets  # noqa: E402

__all__ += ["knn_targets"]

# Newton losses (issue 16): also dopt_core.losses.newton_loss
from . import losses  # noqa: E402
from .newton import newton_loss, newton_precondition  # noqa: E402

__all__ += ["losses", "newton_loss", "newton_precondition"]
