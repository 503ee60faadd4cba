"""``torch.nn.Module`` forms of dopt's layers and losses.

The modules hold the configuration and a ``torch.Generator`` per device (seeded by
``seed``, created on the input's device at first use), so that successive training
steps draw fresh noise reproducibly. ``forward`` also accepts ``rng=`` or pre-drawn
``noise=``, which take precedence. All math is the core's
(:func:`dopt_core.perturbed`, :func:`dopt_core.fenchel_young_loss`).

The generators are part of the module's state:

* ``state_dict()`` holds them (as the module's extra state: the seed and each
  generator's state), so ``load_state_dict`` makes a module continue the same stream
  of draws;
* the modules pickle (``pickle``, ``torch.save(model)``, ``copy.deepcopy``): they
  keep their constructor arguments and rebuild the dopt function on unpickling. The
  solver must be picklable: a dopt solver (or ``functools.partial`` of one) is pickled
  by name, your own function as pickle does it (a module-level function);
* under ``torch.utils.checkpoint`` (reentrant or not), the recomputation of a forward
  replays the draw of the original call, so the backward pass uses the samples the
  forward used. A forward that runs while autograd runs a backward pass is such a
  recomputation; it finds its original call by the input's shape, dtype, device and
  two checksums of its values (recomputation reproduces them bit for bit). Each
  module remembers the generator state of its last 256 calls; a recomputation with
  no matching call among them raises ``RuntimeError`` rather than use fresh noise.
"""

from __future__ import annotations

import collections
import functools
import importlib
import pickle
from collections.abc import Callable
from typing import Any

import torch

import dopt_core as dc
from dopt_core.backend import int_seed, type_name
from dopt_core.op import OpFunction

__all__ = ["FenchelYoungLoss", "PerturbedOptimizer"]

#: Calls whose generator state a module keeps for recomputation.
REPLAY_WINDOW = 256


def _resolve(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _solver_token(solver: Any, owner: str) -> Any:
    """A picklable stand-in for ``solver``: a dopt function by its module-level name."""
    if isinstance(solver, functools.partial):
        return ("partial", _solver_token(solver.func, owner), solver.args, dict(solver.keywords))
    if isinstance(solver, OpFunction):
        module, qualname = getattr(solver, "__module__", None), getattr(solver, "__qualname__", "")
        try:
            found = _resolve(module, qualname) if module else None
        except (ImportError, AttributeError):
            found = None
        if found is not solver:
            raise pickle.PicklingError(
                f"cannot pickle this {owner}: its solver {solver!r} is a dopt function without a "
                "module-level name (e.g. built by dopt_core.solvers.solver inside a function); "
                "define it at module level, or save the state_dict instead"
            )
        return ("dopt", module, qualname)
    return ("object", solver)


def _from_token(token: Any) -> Any:
    kind = token[0]
    if kind == "partial":
        return functools.partial(_from_token(token[1]), *token[2], **token[3])
    if kind == "dopt":
        return _resolve(token[1], token[2])
    return token[1]


def _fingerprint(theta: torch.Tensor) -> tuple[Any, ...]:
    """What identifies one call's input under recomputation: shape, dtype, device, and
    the sum and position-weighted sum of the values (device tensors, read only when a
    recomputation compares them)."""
    t = theta.detach().reshape(-1)
    sums = torch.stack((t.sum(), t.cumsum(0).sum())) if t.numel() else t.new_zeros(2)
    return tuple(theta.shape), theta.dtype, theta.device, sums


def _same_input(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a[:3] == b[:3] and torch.equal(a[3], b[3])


def _in_backward() -> bool:
    """Whether autograd is running a backward pass now (checkpoint recomputes in it)."""
    return torch._C._current_graph_task_id() != -1


class _Seeded(torch.nn.Module):
    """A dopt function with its own generators; ``_factory(solver, **kwargs)`` builds it."""

    _factory: Callable[..., OpFunction]

    def __init__(
        self, solver: Callable[..., Any], seed: int | None, kwargs: dict[str, Any]
    ) -> None:
        super().__init__()
        if seed is not None:
            value = int_seed(seed, name="seed")  # the one seed rule: a negative int raises ValueError
            if value is None:
                raise TypeError(f"seed must be an int or None, got {type_name(seed)}")
            seed = value
        self.seed = seed
        self._solver = solver
        self._kwargs = dict(kwargs)
        self.fn = type(self)._factory(solver, **kwargs)
        self._generators: dict[torch.device, torch.Generator] = {}
        self._calls: collections.deque[Any] = collections.deque(maxlen=REPLAY_WINDOW)

    # -- randomness -------------------------------------------------------------------
    def _generator(self, dev: torch.device) -> torch.Generator:
        g = self._generators.get(dev)
        if g is None:
            g = torch.Generator(device=dev)
            if self.seed is None:
                g.seed()
            else:
                g.manual_seed(self.seed)
            self._generators[dev] = g
        return g

    def _rng(self, theta: torch.Tensor, rng: Any, noise: Any) -> Any:
        if rng is not None or noise is not None:
            return rng
        if not isinstance(theta, torch.Tensor):  # let the dopt function name the error
            return self._generator(torch.device("cpu"))
        if theta.device.type == "meta":  # shapes only: meta draws need no generator
            return 0 if self.seed is None else self.seed
        g = self._generator(theta.device)
        key = _fingerprint(theta)
        if _in_backward():
            return self._replay(key, theta.device)
        self._calls.append([key, g.get_state(), 0])
        return g

    def _replay(self, key: tuple[Any, ...], dev: torch.device) -> torch.Generator:
        """A generator in the state the original call of this recomputation started
        from: the oldest matching call not replayed yet (recomputation follows the
        forward's order), else the latest matching one (a second backward pass)."""
        matches = [c for c in self._calls if _same_input(c[0], key)]
        if not matches:
            raise RuntimeError(
                f"{type(self).__name__} ran during a backward pass (a torch.utils.checkpoint "
                f"recomputation) on an input none of its last {REPLAY_WINDOW} calls had, so it "
                "cannot replay that call's noise; pass rng= or noise= explicitly inside "
                "checkpointed code that runs it more often"
            )
        fresh = [c for c in matches if c[2] == 0]
        call = fresh[0] if fresh else matches[-1]
        call[2] += 1
        g = torch.Generator(device=dev)
        g.set_state(call[1])
        return g

    # -- state ------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """The seed and every generator's state (``state_dict()["_extra_state"]``)."""
        return {
            "seed": self.seed,
            "generators": {str(d): g.get_state() for d, g in self._generators.items()},
        }

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict) or not {"seed", "generators"} <= state.keys():
            raise ValueError(
                f"{type(self).__name__} extra state must be the dict its get_extra_state "
                f"returns (seed, generators), got {type(state).__name__}"
            )
        self.seed = state["seed"]
        self._generators = {}
        for name, s in state["generators"].items():
            self._generator(torch.device(name)).set_state(s)
        self._calls.clear()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("fn", "_generators", "_calls"):
            state.pop(name)
        state["_solver"] = _solver_token(self._solver, type(self).__name__)
        state["_generator_states"] = self.get_extra_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        extra = state.pop("_generator_states")
        state["_solver"] = _from_token(state["_solver"])
        super().__setstate__(state)
        self.fn = type(self)._factory(self._solver, **self._kwargs)
        self._calls = collections.deque(maxlen=REPLAY_WINDOW)
        self._generators = {}
        self.set_extra_state(extra)


class PerturbedOptimizer(_Seeded):
    """``y_ε(θ)`` of ``solver`` as a layer (see :func:`dopt_core.perturbed` for the arguments).

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> layer = dt.nn.PerturbedOptimizer(dt.solvers.argmax, sigma=0.5, num_samples=100, seed=0)
    >>> layer(torch.tensor([[0.0, 1.0, 2.0]])).shape
    torch.Size([1, 3])
    """

    _factory = staticmethod(dc.perturbed)

    def __init__(self, solver: Callable[..., Any], *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(solver, seed, kwargs)

    def forward(self, theta: torch.Tensor, *, rng: Any = None, noise: Any = None) -> torch.Tensor:
        return self.fn(theta, rng=self._rng(theta, rng, noise), noise=noise)


class FenchelYoungLoss(_Seeded):
    """The perturbed Fenchel-Young loss as a module (see :func:`dopt_core.fenchel_young_loss`).

    ``loss(theta, y_true)``; for predicted costs pass ``theta = -cost_hat``.
    """

    _factory = staticmethod(dc.fenchel_young_loss)

    def __init__(self, solver: Callable[..., Any], *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(solver, seed, kwargs)

    def forward(self, theta: torch.Tensor, y_true: torch.Tensor, *, rng: Any = None, noise: Any = None) -> torch.Tensor:
        return self.fn(theta, y_true, rng=self._rng(theta, rng, noise), noise=noise)


class ExponentialCritic(torch.nn.Module):
    r"""A RELAX critic ``c(E)`` of the exponentials of a structured sample (an MLP).

    :math:`c(E) = w_2^\top \tanh(W_1 \log E + b_1) + b_2`, on the log-exponentials
    (scale-free inputs); ``in_features`` is the number of exponentials ``m`` of one
    instance. Feed it the reparametrised ``trace.exponentials`` and
    :func:`dopt_core.structured.conditional_sample`, and train it to minimise the
    variance of :func:`dopt_core.structured.estimators.relax` (Grathwohl et al. 2018;
    the critic of Struminsky et al. 2021 is such an MLP).

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> critic = dt.nn.ExponentialCritic(6, hidden=8)
    >>> critic(torch.rand(5, 6) + 0.1).shape
    torch.Size([5])
    """

    def __init__(self, in_features: int, *, hidden: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(in_features, hidden, dtype=torch.float64),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden, 1, dtype=torch.float64),
        )

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        x = torch.log(e.clamp_min(torch.finfo(e.dtype).tiny)).to(self.net[0].weight.dtype)
        return self.net(x).squeeze(-1).to(e.dtype)


__all__ += ["ExponentialCritic"]
