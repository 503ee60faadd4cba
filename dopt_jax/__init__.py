"""dopt for JAX: the core's public names as pure functions with ``jax.custom_vjp``.

Importing this module registers the JAX adapter with :mod:`dopt_core`; the core also
imports it by itself the first time it sees a JAX array. Everything composes with
``jax.jit``, ``jax.vmap`` and ``jax.grad``; host code runs through
``jax.pure_callback``. Randomness takes explicit keys (``rng=jax.random.key(0)``).
Ops with a forward-mode derivative are ``jax.custom_jvp`` functions (``jax.jvp``,
``jacfwd``, ``hessian`` work; docs/frameworks.md lists them). ``perturbed``,
``perturbed_max`` and ``fenchel_young_loss`` also take a pytree of scores
(:mod:`dopt_jax._pytree`).
"""

from dopt_core import *  # noqa: F403 - the plugin exports the core's public names
from dopt_core import __all__ as _core_all
from dopt_core import __version__, register_backend, solvers, testing, value_and_vjp  # noqa: F401

from ._backend import JaxBackend
from ._callback import host_call
from ._pytree import fenchel_young_loss, perturbed, perturbed_max  # noqa: F401, F811 - pytree-aware (names in the core's __all__)
from ._vjp import apply_op

register_backend(JaxBackend())

__all__ = [*_core_all, "JaxBackend", "apply_op", "host_call"]
from .logic import init_logic_layer as _init_logic_layer  # noqa: E402,F401 - binds dopt_jax.logic (logic nets as pure functions) over the core's
