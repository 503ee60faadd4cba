"""Dicts, tuples and lists of score tensors for the perturbed estimators (issue 21).

The torch counterpart of :mod:`dopt_jax._pytree`: ``dopt_torch.perturbed``,
``perturbed_max`` and ``fenchel_young_loss`` are the core's factories; the functions
they return also accept, in place of one tensor θ, a pytree of tensors (nested dicts,
tuples, lists; ``torch.utils._pytree``) for a solver that takes one (a single instance:
every leaf is one piece of θ, and the solver receives the pytree with a leading sample
axis ``(M, *leaf.shape)`` on every leaf and returns a pytree or a tensor with that
leading axis).

The pytree runs as the flattened vector ``θ = cat(leaf.reshape(-1))`` through the very
same core Op (every estimator, autograd, forward mode and double backward carry over;
gradients reach the leaves through the concatenation), the solver being wrapped to
unravel and ravel around it. Noise is drawn per leaf, in leaf order, from one generator
(``rng=``: a ``torch.Generator``, an int seed, which seeds one generator for the whole
call, a NumPy ``Generator``, or ``None`` for torch's default generator), or given as a
pytree of ``(M, *leaf.shape)`` tensors; the result equals the flattened call with the
flattened noise, exactly. A torch generator cannot be split as a JAX key is: the leaves
take consecutive draws from it.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import torch
import torch.utils._pytree as pytree

import dopt_core as dc
from dopt_core.backend import check_leaf_shapes, int_seed
from dopt_core.op import OpFunction

__all__ = ["fenchel_young_loss", "perturbed", "perturbed_max"]


def _is_single_array(x: Any) -> bool:
    return isinstance(x, torch.Tensor) or (hasattr(x, "shape") and hasattr(x, "dtype"))


def _cat(leaves: list[Any], lead: int) -> Any:
    return torch.cat([torch.reshape(x, (*x.shape[:lead], -1)) for x in leaves], dim=-1)



class _Flat:
    """One pytree structure: ravel/unravel of θ and the solver wrapped on flat rows."""

    def __init__(self, solver: Any, theta: Any) -> None:
        leaves, self.spec = pytree.tree_flatten(theta)
        if not leaves or not all(isinstance(x, torch.Tensor) for x in leaves):
            raise TypeError(
                "theta must be a tensor or a pytree (dict, tuple, list) of tensors, got "
                f"{type(theta).__name__} with leaves {[type(x).__name__ for x in leaves]}"
            )
        self.shapes = [tuple(x.shape) for x in leaves]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.out: Any = None  # (spec, shapes, sizes) of the solver's output, once seen
        user = solver

        def flat_solver(eta: Any) -> Any:  # (..., n) -> (..., n_out)
            y = user(self.unravel(eta))
            out_leaves, out_spec = pytree.tree_flatten(y)
            lead = tuple(eta.shape[:-1])
            shapes = [tuple(x.shape[len(lead) :]) for x in out_leaves]
            self.out = (out_spec, shapes, [math.prod(s) for s in shapes])
            return _cat(out_leaves, len(lead))

        functools.update_wrapper(flat_solver, user, assigned=("__name__", "__qualname__", "__doc__"))
        self.solver = flat_solver

    def key(self) -> tuple[Any, ...]:
        return (str(self.spec), tuple(self.shapes))

    def ravel(self, tree: Any, lead: int = 0, name: str = "theta") -> Any:
        leaves, spec = pytree.tree_flatten(tree)
        if str(spec) != str(self.spec):
            raise ValueError(
                f"{name} must have the pytree structure of theta ({self.spec}), got {spec}"
            )
        got = [tuple(getattr(x, "shape", ())) for x in leaves]
        check_leaf_shapes(got, self.shapes, lead=lead, name=name)
        return _cat(leaves, lead)

    def unravel(self, flat: Any) -> Any:
        lead = tuple(flat.shape[:-1])
        parts = [
            torch.reshape(p, (*lead, *shape))
            for p, shape in zip(torch.split(flat, self.sizes, dim=-1), self.shapes, strict=True)
        ]
        return pytree.tree_unflatten(parts, self.spec)

    def unravel_out(self, flat: Any) -> Any:
        out_spec, shapes, sizes = self.out
        parts = [
            torch.reshape(p, shape)
            for p, shape in zip(torch.split(flat, sizes, dim=-1), shapes, strict=True)
        ]
        return pytree.tree_unflatten(parts, out_spec)


class _TreeFunction(OpFunction):
    """The core's OpFunction (same ``bind``, attributes and tensor path), taking pytrees too."""

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
                raise ValueError("pass either rng or noise, not both")
            return flat.ravel(noise, lead=1, name="noise")
        leaves = pytree.tree_leaves(theta)
        backend = dc.backend_for(leaves[0])
        if rng is not None and not isinstance(rng, torch.Generator):
            seed = int_seed(rng)  # None for a NumPy Generator: it is used as it is
            if seed is not None:  # one generator for the call: leaves draw consecutively
                rng = torch.Generator(device=leaves[0].device).manual_seed(seed)
        law = dc.noise.get_noise(self._options["noise"])
        anti = self._options["antithetic"]
        draws = []
        for leaf in leaves:
            z = law.sample(backend, rng, (m // 2 if anti else m, *leaf.shape), like=leaf)
            draws.append(torch.cat([z, -z], dim=0) if anti else z)
        return _cat(draws, 1)


def _wrap(factory: Any, kind: str, solver: Any, options: dict[str, Any]) -> OpFunction:
    core = factory(solver, **options)
    if torch.compiler.is_compiling():
        # dynamo cannot trace the __class__ swap below: built inside a compiled region,
        # the function takes tensors only (build it outside for pytrees under compile)
        return core
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
