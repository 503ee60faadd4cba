"""Logic gate networks for JAX: init functions and pure apply functions.

Parameters are pytrees (``{"W": array}``, ``{"weights": [arrays]}``) that ``jax.grad``
and optax handle; the wiring is static NumPy data kept beside them (close over it
under ``jax.jit``). Every formula is the core's (:mod:`dopt_core.logic`); soft mode
for training (``train=True``), the arg-max gates for evaluation (``train=False``).

Example
-------
>>> import jax, jax.numpy as jnp
>>> from dopt_jax import logic
>>> params, wiring = logic.init_logic_layer(jax.random.key(0), 6, 8)
>>> y = logic.logic_layer_apply(params, wiring, jnp.full((2, 6), 0.5, dtype=jnp.float32))
>>> y.shape, logic.group_sum(y, 2, tau=1.0).shape
((2, 8), (2, 2))
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dopt_core.logic import *  # noqa: F403 - the core's logic functions work on JAX arrays
from dopt_core.logic import __all__ as _core_all
from dopt_core.logic import conv_tree_leaves, logic_connections, logic_conv2d, logic_layer

__all__ = [*_core_all, "init_logic_conv2d", "init_logic_layer", "logic_conv2d_apply", "logic_layer_apply"]


def _seed(key: Any) -> int:
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


def _logits(key: Any, rows: int, init: str, dtype: Any) -> Any:
    if init not in ("normal", "residual"):
        raise ValueError(f"init must be 'normal' or 'residual', got {init!r}")
    w = jax.random.normal(key, (rows, 16), dtype=dtype)
    return w.at[:, 3].add(5.0) if init == "residual" else w


def init_logic_layer(key: Any, in_dim: int, out_dim: int, *, connections: str = "random", init: str = "normal",
                     dtype: Any = jnp.float32) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(params, wiring)``: ``params = {"W": (out_dim, 16) logits ~ N(0, 1)}`` and the
    NumPy wiring ``{"idx_a", "idx_b"}`` of :func:`dopt_core.logic.logic_connections`."""
    k1, k2 = jax.random.split(key)
    a, b = logic_connections(in_dim, out_dim, kind=connections, rng=_seed(k1))
    return {"W": _logits(k2, out_dim, init, dtype)}, {"idx_a": a, "idx_b": b}


def logic_layer_apply(params: dict[str, Any], wiring: dict[str, np.ndarray], x: Any, *, train: bool = True,
                      grad_factor: float = 1.0) -> Any:
    """:func:`dopt_core.logic.logic_layer`, soft when ``train`` and hard otherwise."""
    return logic_layer(x, wiring["idx_a"], wiring["idx_b"], params["W"], mode="soft" if train else "hard",
                       grad_factor=grad_factor)


def init_logic_conv2d(key: Any, in_channels: int, out_channels: int, kernel_size: int = 3, *, depth: int = 3,
                      padding: int = 0, init: str = "normal", dtype: Any = jnp.float32,
                      channels: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params, config)``: ``params = {"weights": [one (rows, 16) array per tree level]}``,
    ``config`` the leaves (:func:`dopt_core.logic.conv_tree_leaves`; ``channels`` input
    channels per tree, None for all), kernel size and padding."""
    keys = jax.random.split(key, depth + 1)
    leaves = conv_tree_leaves(in_channels, out_channels, kernel_size=kernel_size, depth=depth, channels=channels,
                              rng=_seed(keys[0]))
    weights = [_logits(keys[lv], out_channels * 2 ** (depth - lv), init, dtype) for lv in range(1, depth + 1)]
    return {"weights": weights}, {"leaves": leaves, "kernel_size": kernel_size, "padding": padding}


def logic_conv2d_apply(params: dict[str, Any], config: dict[str, Any], x: Any, *, train: bool = True,
                       grad_factor: float = 1.0) -> Any:
    """:func:`dopt_core.logic.logic_conv2d`, soft when ``train`` and hard otherwise."""
    return logic_conv2d(x, config["leaves"], params["weights"], kernel_size=config["kernel_size"],
                        padding=config["padding"], mode="soft" if train else "hard", grad_factor=grad_factor)
