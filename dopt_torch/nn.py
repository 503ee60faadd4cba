"""``torch.nn.Module`` forms of dopt's layers and losses.

The modules hold the configuration and a ``torch.Generator`` per device (seeded by
``seed``, or without one by a draw from torch's default generator, so that
``torch.manual_seed`` makes a run reproducible; created on the input's device at
first use), so that successive training
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
            if self.seed is None:  # from torch's default generator: torch.manual_seed rules
                g.manual_seed(int(torch.randint(0, 2**62, (1,))))
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



# --- logic gate networks (dopt_core.logic) ------------------------------------------------
def _logic_init(gen: Any, rows: int, init: str) -> torch.Tensor:
    # difflogic draws the gate logits from N(0, 1); "residual" (Petersen et al., NeurIPS
    # 2024) makes the pass-through gate A (id 3) dominant at initialisation
    if init not in ("normal", "residual"):
        raise ValueError(f"init must be 'normal' or 'residual', got {init!r}")
    w = gen.standard_normal((rows, dc.logic.NUM_GATES))
    if init == "residual":
        w[:, 3] += 5.0
    return torch.tensor(w, dtype=torch.get_default_dtype())


def _logic_mode(module: torch.nn.Module) -> str:
    return "soft" if module.training else "hard"


class LogicLayer(torch.nn.Module):
    """A layer of differentiable logic gates (:func:`dopt_core.logic.logic_layer`).

    Soft (the expected gate under ``softmax(weight)``) in training mode, the arg-max
    gate in eval mode — difflogic's semantics: ``model.train()`` / ``model.eval()``.
    The wiring (buffers ``idx_a``, ``idx_b``) is drawn once by
    :func:`dopt_core.logic.logic_connections` from ``seed``.

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> layer = dt.nn.LogicLayer(6, 4, seed=0)
    >>> layer(torch.rand(2, 6)).shape, layer.weight.shape
    (torch.Size([2, 4]), torch.Size([4, 16]))
    >>> bool(((layer.eval()(torch.rand(2, 6).round()) % 1) == 0).all())
    True
    """

    def __init__(self, in_dim: int, out_dim: int, *, connections: str = "random", grad_factor: float = 1.0,
                 init: str = "normal", seed: int | None = None) -> None:
        super().__init__()
        import numpy as np  # lazy: nn.py has no other use for NumPy

        gen = np.random.default_rng(seed)
        a, b = dc.logic.logic_connections(in_dim, out_dim, kind=connections, rng=gen)
        self.in_dim, self.out_dim, self.grad_factor = in_dim, out_dim, grad_factor
        self.register_buffer("idx_a", torch.from_numpy(a))
        self.register_buffer("idx_b", torch.from_numpy(b))
        self.weight = torch.nn.Parameter(_logic_init(gen, out_dim, init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dc.logic.logic_layer(x, self.idx_a, self.idx_b, self.weight, mode=_logic_mode(self),
                                    grad_factor=self.grad_factor)

    def gate_layers(self, in_shape: tuple[int, ...]) -> tuple[list[Any], tuple[int, ...]]:
        """``([(idx_a, idx_b, gates)], (out_dim,))``: the hard layer for :func:`compile_logic_net`."""
        if tuple(in_shape) != (self.in_dim,):
            raise ValueError(f"in_shape must be ({self.in_dim},) for this LogicLayer (flatten "
                             f"images first: torch.nn.Flatten), got {tuple(in_shape)}")
        gates = dc.logic.gate_layers_hard(self.weight.detach())
        return [(self.idx_a.cpu().numpy(), self.idx_b.cpu().numpy(), gates)], (self.out_dim,)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, grad_factor={self.grad_factor}"


class GroupSum(torch.nn.Module):
    """Class scores from output bits (:func:`dopt_core.logic.group_sum`).

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> dt.nn.GroupSum(2, tau=2.0)(torch.tensor([[1.0, 1.0, 0.0, 1.0]]))
    tensor([[1.0000, 0.5000]])
    """

    def __init__(self, k: int, tau: float = 1.0) -> None:
        super().__init__()
        self.k, self.tau = k, tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dc.logic.group_sum(x, self.k, tau=self.tau)

    def extra_repr(self) -> str:
        return f"k={self.k}, tau={self.tau}"


class LogicConv2d(torch.nn.Module):
    """Logic-tree convolution (:func:`dopt_core.logic.logic_conv2d`), soft in training
    mode and hard in eval mode. ``weights[l]`` holds the gate logits of tree level
    ``l+1``; the leaves (buffer ``leaves``) come from
    :func:`dopt_core.logic.conv_tree_leaves` (``channels``: input channels per tree,
    e.g. 2 as in Petersen et al., NeurIPS 2024; None reads the whole receptive field).

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> conv = dt.nn.LogicConv2d(2, 4, kernel_size=3, depth=2, padding=1, seed=0)
    >>> conv(torch.rand(5, 2, 8, 8)).shape
    torch.Size([5, 4, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, depth: int = 3,
                 padding: int = 0, grad_factor: float = 1.0, init: str = "normal", seed: int | None = None,
                 channels: int | None = None) -> None:
        super().__init__()
        import numpy as np  # lazy: nn.py has no other use for NumPy

        gen = np.random.default_rng(seed)
        leaves = dc.logic.conv_tree_leaves(in_channels, out_channels, kernel_size=kernel_size, depth=depth,
                                           channels=channels, rng=gen)
        self.register_buffer("leaves", torch.from_numpy(leaves))
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(_logic_init(gen, out_channels * 2 ** (depth - lv), init)) for lv in range(1, depth + 1)]
        )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.depth, self.padding, self.grad_factor = kernel_size, depth, padding, grad_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dc.logic.logic_conv2d(x, self.leaves.cpu().numpy(), list(self.weights), kernel_size=self.kernel_size,
                                     padding=self.padding, mode=_logic_mode(self), grad_factor=self.grad_factor)

    def gate_layers(self, in_shape: tuple[int, ...]) -> tuple[list[Any], tuple[int, ...]]:
        """The hard layer as gate layers (a pass-through/zero layer for the padding, then one
        layer per tree level) and the output shape ``(out_channels, H', W')``."""
        import numpy as np  # lazy: nn.py has no other use for NumPy

        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"in_shape must be ({self.in_channels}, H, W) for this LogicConv2d, "
                             f"got {tuple(in_shape)}")
        C, H, W = in_shape
        p = self.padding
        layers = []
        if p:
            Hp, Wp = H + 2 * p, W + 2 * p
            c, y, x = np.meshgrid(np.arange(C), np.arange(Hp), np.arange(Wp), indexing="ij")
            inside = (y >= p) & (y < H + p) & (x >= p) & (x < W + p)
            src = np.where(inside, (c * H + (y - p).clip(0, H - 1)) * W + (x - p).clip(0, W - 1), 0).reshape(-1)
            layers.append((src, src, np.where(inside.reshape(-1), 3, 0)))
        levels, out_shape = dc.logic.conv_tree_wiring(self.leaves.cpu().numpy(), (C, H, W),
                                                      kernel_size=self.kernel_size, padding=p)
        P = out_shape[1] * out_shape[2]
        for (ia, ib), w in zip(levels, self.weights):
            layers.append((ia, ib, np.repeat(dc.logic.gate_layers_hard(w.detach()), P)))
        return layers, out_shape


class OrPool2d(torch.nn.Module):
    """OR pooling over ``size × size`` windows, relaxed as the max
    (:func:`dopt_core.logic.or_pool2d`); the same in training and eval mode.

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> dt.nn.OrPool2d()(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]))
    tensor([[[1.]]])
    """

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dc.logic.or_pool2d(x, size=self.size)

    def gate_layers(self, in_shape: tuple[int, ...]) -> tuple[list[Any], tuple[int, ...]]:
        """The pooling as layers of OR gates (id 7) and the output shape."""
        import numpy as np  # lazy: nn.py has no other use for NumPy

        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (channels, H, W) for OrPool2d, "
                             f"got {tuple(in_shape)}")
        C, H, W = in_shape
        s = self.size
        Ho, Wo = H // s, W // s
        c, y, x, u, v = np.meshgrid(np.arange(C), np.arange(Ho), np.arange(Wo), np.arange(s), np.arange(s),
                                    indexing="ij")
        flat = ((c * H + y * s + u) * W + x * s + v).reshape(C * Ho * Wo, s * s).T  # (window entry, output)
        layers = []
        rows = [flat[i] for i in range(s * s)]
        n = C * Ho * Wo
        while len(rows) > 1 or not layers:
            if len(rows) % 2:
                rows.append(rows[-1])  # OR(x, x) = x
            half = len(rows) // 2
            ia = np.concatenate(rows[0::2])
            ib = np.concatenate(rows[1::2])
            layers.append((ia, ib, np.full(ia.shape, 7)))
            rows = [np.arange(i * n, (i + 1) * n) for i in range(half)]
        return layers, (C, Ho, Wo)


def logic_gate_layers(model: torch.nn.Module, in_shape: tuple[int, ...]) -> tuple[list[Any], int, int | None]:
    """The hard form of a sequential logic network, for :func:`dopt_core.logic.compile_logic_net`.

    ``model`` is a :class:`LogicLayer`, :class:`LogicConv2d`, :class:`OrPool2d` or a
    ``torch.nn.Sequential`` of them with ``torch.nn.Flatten`` and a final
    :class:`GroupSum`. Returns ``(layers, in_dim, k)`` (``k`` is ``None`` without
    GroupSum).

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> net = torch.nn.Sequential(dt.nn.LogicLayer(8, 8, seed=0), dt.nn.GroupSum(2))
    >>> layers, in_dim, k = dt.nn.logic_gate_layers(net, (8,))
    >>> len(layers), in_dim, k
    (1, 8, 2)
    """
    import math  # lazy: only this helper needs it

    mods = list(model) if isinstance(model, torch.nn.Sequential) else [model]
    shape = tuple(in_shape)
    in_dim = math.prod(shape)
    layers: list[Any] = []
    k = None
    for i, m in enumerate(mods):
        if k is not None:
            raise ValueError("GroupSum must be the last module")
        if isinstance(m, torch.nn.Flatten):
            shape = (math.prod(shape),)
        elif isinstance(m, GroupSum):
            k = m.k
        elif hasattr(m, "gate_layers"):
            new, shape = m.gate_layers(shape)
            layers += new
        else:
            raise TypeError(f"module {i} ({type(m).__name__}) is not a logic module")
    return layers, in_dim, k


__all__ += ["GroupSum", "LogicConv2d", "LogicLayer", "OrPool2d", "logic_gate_layers"]
