r"""Perturbation noise: the distributions of Berthet et al. (2020), as small objects.

A noise ``Z`` has density :math:`\mu(z) \propto e^{-\nu(z)}`, i.i.d. over the
entries of θ. What the estimators need of it:

* ``kind`` — which standard draw the backend adapters make
  (:meth:`dopt_core.backend.Backend.draw`), so that every framework samples from its
  own generator;
* ``mean`` — :math:`\mathbb E[Z]` (used by the Fenchel-Young loss value);
* ``grad_nu(z)`` — :math:`\nabla\nu(z)`, the score that turns a Monte-Carlo average
  into a Jacobian estimate (:math:`\mathbb E[\nabla\nu(Z)] = 0`);
* ``symmetric`` — whether ``-Z`` has the law of ``Z`` (antithetic pairs need it).

=========  =========================  ====================  ===========  =========
noise      :math:`\nu(z)`              :math:`\nabla\nu(z)`  mean         symmetric
=========  =========================  ====================  ===========  =========
normal     :math:`z^2/2`               :math:`z`             0            yes
gumbel     :math:`z + e^{-z}`          :math:`1 - e^{-z}`    γ ≈ 0.5772   no
=========  =========================  ====================  ===========  =========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["NOISES", "Gumbel", "Noise", "Normal", "get_noise"]

EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class Noise:
    """Base class; see the module docstring."""

    name: str = "noise"
    kind: str = "normal"
    mean: float = 0.0
    symmetric: bool = False

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        raise NotImplementedError

    def log_prob(self, z: Any, *, xp: Any) -> Any:
        """Log density of each entry (normalised)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Normal(Noise):
    """Standard normal noise, :math:`\\nu(z) = z^2/2`, :math:`\\nabla\\nu(z) = z`."""

    name: str = "normal"
    kind: str = "normal"
    mean: float = 0.0
    symmetric: bool = True

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        return z

    def log_prob(self, z: Any, *, xp: Any) -> Any:
        return -0.5 * z * z - 0.9189385332046727  # log sqrt(2π)


@dataclass(frozen=True)
class Gumbel(Noise):
    """Standard Gumbel noise, :math:`\\nu(z) = z + e^{-z}`, :math:`\\nabla\\nu(z) = 1 - e^{-z}`."""

    name: str = "gumbel"
    kind: str = "gumbel"
    mean: float = EULER_GAMMA
    symmetric: bool = False

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        return 1.0 - xp.exp(-z)

    def log_prob(self, z: Any, *, xp: Any) -> Any:
        return -z - xp.exp(-z)


NOISES: dict[str, Noise] = {"normal": Normal(), "gumbel": Gumbel()}


def get_noise(noise: str | Noise) -> Noise:
    """The :class:`Noise` named ``noise`` (or ``noise`` itself); ``ValueError`` otherwise."""
    if isinstance(noise, Noise):
        return noise
    if isinstance(noise, str) and noise in NOISES:
        return NOISES[noise]
    raise ValueError(f"noise must be one of {sorted(NOISES)} (or a dopt_core.noise.Noise), got {noise!r}")
