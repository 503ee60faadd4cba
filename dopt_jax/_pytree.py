"""Pytrees of scores for the perturbed estimators (as in optax's perturbations).

``dopt_jax.perturbed``, ``perturbed_max`` and ``fenchel_young_loss`` are the core's
factories; the functions they return also accept, in place of one array θ, a pytree of
scores for a solver that takes one (a single instance: every leaf is one piece of θ,
and the solver receives the pytree with a leading sample axis ``(M, *leaf.shape)`` on
every leaf and returns a pytree or an array with that leading axis).

The pytree runs as the flattened vector ``θ = ravel(tree)`` through the very same core
Op (so every estimator, forward mode, Hessians, ``jit`` and ``vmap`` carry over), the
solver being wrapped to unravel and ravel around it. Noise is drawn per leaf with split
keys (``jax.random.split(rng, num_leaves)``, optax's semantics), or given as a pytree of
``(M, *leaf.shape)`` arrays; the result equals the flattened call with the flattened
noise, exactly.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import dopt_core as dc
from dopt_core.backend import check_leaf_shapes
from dopt_core.op import OpFunction

from ._backend import as_key

__all__ = ["fenchel_young_loss", "perturbed", "perturbed_max"]


def _is_single_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


class _Flat:
    """One pytree structure: ravel/unravel of θ and the solver wrapped on flat rows."""

    def __init__(self, solver: Any, theta: Any) -> None:
        leaves, self.treedef = jax.tree_util.tree_flatten(theta)
        self.shapes = [tuple(jnp.shape(x)) for x in leaves]
        self.sizes = [int(jnp.size(x)) for x in leaves]
        self.out: Any = None  # (treedef, shapes, sizes) of the solver's output, once seen
        user = solver

        def flat_solver(eta: Any) -> Any:  # (..., n) -> (..., n_out)
            y = user(self.unravel(eta))
            out_leaves, out_def = jax.tree_util.tree_flatten(y)
            lead = eta.shape[:-1]
            shapes = [tuple(x.shape[len(lead):]) for x in out_leaves]
            self.out = (out_def, shapes, [int(jnp.size(x)) // max(1, _prod(lead)) for x in out_leaves])
            return jnp.concatenate([jnp.reshape(x, (*lead, -1)) for x in out_leaves], axis=-1)

        functools.update_wrapper(flat_solver, user, assigned=("__name__", "__qualname__", "__doc__"))
        self.solver = flat_solver

    def key(self) -> tuple[Any, ...]:
        return (self.treedef, tuple(self.shapes))

    def ravel(self, tree: Any, lead: int = 0, name: str | None = None) -> Any:
        leaves = jax.tree_util.tree_leaves(tree)
        if name is not None:  # a user's pytree: theta's structure and leaf shapes
            treedef = jax.tree_util.tree_structure(tree)
            if treedef != self.treedef:
                raise ValueError(
                    f"{name} must have the pytree structure of theta ({self.treedef}), "
                    f"got {treedef}"
                )
            got = [tuple(jnp.shape(x)) for x in leaves]
            check_leaf_shapes(got, self.shapes, lead=lead, name=name)
        return jnp.concatenate(
            [jnp.reshape(x, (*jnp.shape(x)[:lead], -1)) for x in leaves], axis=-1
        )

    def unravel(self, flat: Any) -> Any:
        lead = flat.shape[:-1]
        parts, start = [], 0
        for shape, size in zip(self.shapes, self.sizes, strict=True):
            parts.append(jnp.reshape(flat[..., start : start + size], (*lead, *shape)))
            start += size
        return jax.tree_util.tree_unflatten(self.treedef, parts)

    def unravel_out(self, flat: Any) -> Any:
        out_def, shapes, sizes = self.out
        parts, start = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            parts.append(jnp.reshape(flat[..., start : start + size], shape))
            start += size
        return jax.tree_util.tree_unflatten(out_def, parts)


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= int(s)
    return out


class _TreeFunction(OpFunction):
    """The core's OpFunction (same ``bind``, attributes and arrays path), taking pytrees too."""

    _factory: Any
    _options: dict[str, Any]
    _kind: str

    def __call__(self, theta: Any, *args: Any, rng: Any = None, noise: Any = None, **kwargs: Any) -> Any:
        if _is_single_array(theta):
            return OpFunction.__call__(self, theta, *args, rng=rng, noise=noise, **kwargs)
        cache = self.__dict__.setdefault("_flat_cache", {})
        flat = _Flat(self._options["solver"], theta)
        entry = cache.get(flat.key())
        if entry is None:
            options = {k: v for k, v in self._options.items() if k != "solver"}
            entry = cache[flat.key()] = (flat, self._factory(flat.solver, **options))
        flat, fn = entry
        z = self._noise(flat, theta, rng, noise)
        x = flat.ravel(theta)
        if self._kind == "loss":
            if not args:
                raise TypeError("fenchel_young_loss needs y_true after theta")
            (y_true, *rest) = args
            y_flat = y_true if _is_single_array(y_true) else flat.ravel(y_true, name="y_true")
            return fn(x, y_flat, *rest, noise=z, **kwargs)
        out = fn(x, *args, noise=z, **kwargs)
        return flat.unravel_out(out) if self._kind == "perturbed" else out

    def _noise(self, flat: _Flat, theta: Any, rng: Any, noise: Any) -> Any:
        m = self._options["num_samples"]
        if noise is not None:
            if rng is not None:
                raise ValueError("pass rng= or noise=, not both")
            return flat.ravel(noise, lead=1, name="noise")
        if rng is None:
            raise ValueError("a pytree of scores needs rng= (a jax.random key) or noise=")
        law = dc.noise.get_noise(self._options["noise"])
        leaves = jax.tree_util.tree_leaves(theta)
        if isinstance(rng, np.random.Generator):  # drawn on the host: consecutive draws
            keys = [rng] * len(leaves)
        else:  # an int seed is jax.random.key(seed), as for one array
            keys = jax.random.split(as_key(rng), len(leaves))
        backend = dc.backend_for(jnp.asarray(leaves[0]))
        anti = self._options["antithetic"]
        draws = []
        for k, leaf in zip(keys, leaves, strict=True):
            leaf = jnp.asarray(leaf)
            z = law.sample(backend, k, (m // 2 if anti else m, *leaf.shape), like=leaf)
            draws.append(jnp.concatenate([z, -z], axis=0) if anti else z)
        return flat.ravel(jax.tree_util.tree_unflatten(flat.treedef, draws), lead=1)


def _wrap(factory: Any, kind: str, solver: Any, options: dict[str, Any]) -> OpFunction:
    core = factory(solver, **options)
    out = copy.copy(core)
    out.__class__ = _TreeFunction
    out._factory, out._kind = factory, kind
    out._options = {"solver": solver, **options}
    out._options.setdefault("num_samples", 10)
    out._options.setdefault("noise", "normal")
    out._options.setdefault("antithetic", False)
    return out


@functools.wraps(dc.perturbed)
def perturbed(solver: Any, **options: Any) -> OpFunction:
    return _wrap(dc.perturbed, "perturbed", solver, options)


@functools.wraps(dc.perturbed_max)
def perturbed_max(solver: Any, **options: Any) -> OpFunction:
    return _wrap(dc.perturbed_max, "max", solver, options)


@functools.wraps(dc.fenchel_young_loss)
def fenchel_young_loss(solver: Any, **options: Any) -> OpFunction:
    return _wrap(dc.fenchel_young_loss, "loss", solver, options)
