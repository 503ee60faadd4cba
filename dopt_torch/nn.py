"""``torch.nn.Module`` forms of dopt's layers and losses.

The modules hold the configuration and a ``torch.Generator`` (seeded by ``seed``,
created on the input's device at first use), so that successive training steps draw
fresh noise reproducibly. ``forward`` also accepts ``rng=`` or pre-drawn ``noise=``,
which take precedence. All math is the core's (:func:`dopt_core.perturbed`,
:func:`dopt_core.fenchel_young_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

import dopt_core as dc

__all__ = ["FenchelYoungLoss", "PerturbedOptimizer"]


class _Seeded(torch.nn.Module):
    def __init__(self, seed: int | None) -> None:
        super().__init__()
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _rng(self, theta: torch.Tensor, rng: Any, noise: Any) -> Any:
        if rng is not None or noise is not None:
            return rng
        dev = theta.device
        if dev not in self._generators:
            g = torch.Generator(device=dev)
            if self.seed is None:
                g.seed()
            else:
                g.manual_seed(self.seed)
            self._generators[dev] = g
        return self._generators[dev]


class PerturbedOptimizer(_Seeded):
    """``y_ε(θ)`` of ``solver`` as a layer (see :func:`dopt_core.perturbed` for the arguments).

    Example
    -------
    >>> import torch, dopt_torch as dt
    >>> layer = dt.nn.PerturbedOptimizer(dt.solvers.argmax, sigma=0.5, num_samples=100, seed=0)
    >>> layer(torch.tensor([[0.0, 1.0, 2.0]])).shape
    torch.Size([1, 3])
    """

    def __init__(self, solver: Callable[..., Any], *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed)
        self.fn = dc.perturbed(solver, **kwargs)

    def forward(self, theta: torch.Tensor, *, rng: Any = None, noise: Any = None) -> torch.Tensor:
        return self.fn(theta, rng=self._rng(theta, rng, noise), noise=noise)


class FenchelYoungLoss(_Seeded):
    """The perturbed Fenchel-Young loss as a module (see :func:`dopt_core.fenchel_young_loss`).

    ``loss(theta, y_true)``; for predicted costs pass ``theta = -cost_hat``.
    """

    def __init__(self, solver: Callable[..., Any], *, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(seed)
        self.fn = dc.fenchel_young_loss(solver, **kwargs)

    def forward(self, theta: torch.Tensor, y_true: torch.Tensor, *, rng: Any = None, noise: Any = None) -> torch.Tensor:
        return self.fn(theta, y_true, rng=self._rng(theta, rng, noise), noise=noise)
