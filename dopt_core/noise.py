r"""Perturbation noise: the distributions of Berthet et al. (2020), as small objects.

A noise ``Z`` has density :math:`\mu(z) \propto e^{-\nu(z)}`, i.i.d. over the
entries of θ. What the estimators need of it:

* how to draw it — :meth:`Noise.draw_with` builds the law on the adapters' basic
  draws (:meth:`dopt_core.backend.Backend.draw`: normal, uniform, exponential;
  :meth:`~dopt_core.backend.Backend.standard_gamma`), so that every framework samples
  from its own generator and the law's math is written once, here;
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

import math
from dataclasses import KW_ONLY, dataclass
from typing import Any

from ._lib._checks import check_int, check_positive

__all__ = [
    "GUMBEL",
    "NOISES",
    "STANDARD_EXPONENTIAL",
    "Gumbel",
    "Noise",
    "Normal",
    "SumOfGamma",
    "get_noise",
    "sum_of_gamma_law",
    "gumbel_from_exponential",
]

EULER_GAMMA = 0.5772156649015329


def gumbel_from_exponential(e: Any, *, backend: Any) -> Any:
    r"""Standard Gumbel draws :math:`G = -\log E` from :math:`E \sim \mathrm{Exp}(1)`.

    :math:`P(-\log E \le g) = P(E \ge e^{-g}) = \exp(-e^{-g})`, the Gumbel CDF. In
    float32 an exponential draw rounds to 0 about once in :math:`10^7`; clamping
    :math:`E` at the smallest normal number keeps every :math:`G` finite
    (:math:`G \le -\log(1.18 \cdot 10^{-38}) \approx 87.3`). ``backend`` is ``e``'s
    adapter (:meth:`~dopt_core.backend.Backend.clamp_min`).

    Parameters
    ----------
    e : array
        Standard exponential draws.
    backend : Backend
        ``e``'s adapter.

    Examples
    --------
    >>> import numpy as np, dopt_core as dc
    >>> e = np.array([0.0, 1.0], dtype=np.float32)
    >>> gumbel_from_exponential(e, backend=dc.backend_for(e))
    array([87.33655, -0.     ], dtype=float32)
    """
    xp = backend.namespace(e)
    return -xp.log(backend.clamp_min(e, float(xp.finfo(e.dtype).smallest_normal)))


@dataclass(frozen=True)
class Noise:
    """Base class; see the module docstring."""

    _: KW_ONLY
    name: str = "noise"
    kind: str = "normal"
    mean: float = 0.0
    symmetric: bool = False
    has_score: bool = True

    def sample(self, backend: Any, rng: Any, shape: tuple[int, ...], *, like: Any) -> Any:
        """Standard draws of this law, shaped ``shape``, with ``like``'s dtype and device
        (through :meth:`dopt_core.backend.Backend.sample`: a NumPy ``Generator`` samples
        the law on the host, the backend's own generator natively)."""
        return backend.sample(self, rng, tuple(shape), like=like)

    def draw_with(self, backend: Any, rng: Any, shape: tuple[int, ...], *, like: Any) -> Any:
        """The law built on ``backend``'s basic draws (default: the basic draw ``kind``)."""
        return backend.draw(rng, self.kind, shape, like=like)

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        raise NotImplementedError

    def log_prob(self, z: Any, *, xp: Any) -> Any:
        """Log density of each entry (normalised)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Normal(Noise):
    """Standard normal noise, :math:`\\nu(z) = z^2/2`, :math:`\\nabla\\nu(z) = z`."""

    _: KW_ONLY
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

    _: KW_ONLY
    name: str = "gumbel"
    kind: str = "gumbel"
    mean: float = EULER_GAMMA
    symmetric: bool = False

    def draw_with(self, backend: Any, rng: Any, shape: tuple[int, ...], *, like: Any) -> Any:
        e = backend.draw(rng, "exponential", shape, like=like)
        return gumbel_from_exponential(e, backend=backend)

    def grad_nu(self, z: Any, *, xp: Any) -> Any:
        return 1.0 - xp.exp(-z)

    def log_prob(self, z: Any, *, xp: Any) -> Any:
        return -z - xp.exp(-z)


@dataclass(frozen=True)
class SumOfGamma(Noise):
    r"""Sum-of-Gamma noise of I-MLE (Niepert, Minervini, Franceschi, 2021).

    .. math::

        \operatorname{SoG}(\kappa, s) = \frac1\kappa\Bigl(\sum_{i=1}^{s}
            \mathrm{Gamma}\bigl(\tfrac1\kappa, \text{scale}=\tfrac{\kappa}{i}\bigr)
            - \log s\Bigr).

    The sum of κ independent copies is :math:`\sum_{i=1}^s E_i/i - \log s` with
    :math:`E_i \sim \mathrm{Exp}(1)` (κ Gamma(1/κ) variables add up to one
    exponential), which tends to a standard Gumbel as ``num_terms`` :math:`s \to
    \infty`: mean :math:`H_s - \log s \to \gamma`, variance :math:`\sum_{i \le s}
    1/i^2 \to \pi^2/6`. So with κ = k, the total perturbation of any k-subset's
    score (the sum of its k entries' noise) is nearly a standard Gumbel, which is
    I-MLE's motivation for k-subset problems. The perturbed k-subset MAP is still not
    an exact sample of :math:`p(y) \propto e^{\langle\theta, y\rangle}` (the subsets'
    totals share entries, so they are dependent), nor does it follow the Gumbel top-k
    law (that is per-entry standard Gumbel noise). Its density has no closed form: it
    serves I-MLE and identity noise, not the score-function estimator.
    """

    kappa: float = 5.0
    num_terms: int = 10
    _: KW_ONLY
    name: str = "sum_of_gamma"
    kind: str = "sum_of_gamma"
    mean: float = float("nan")  # (H_s - log s) / κ; see expected_mean
    symmetric: bool = False
    has_score: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kappa", check_positive(self.kappa, name="kappa"))
        object.__setattr__(self, "num_terms", check_int(self.num_terms, name="num_terms", low=1))

    def expected_mean(self) -> float:
        s = self.num_terms
        return (sum(1.0 / i for i in range(1, s + 1)) - math.log(s)) / self.kappa

    def draw_with(self, backend: Any, rng: Any, shape: tuple[int, ...], *, like: Any) -> Any:
        s, k = self.num_terms, float(self.kappa)
        xp = backend.namespace(like)
        g = backend.standard_gamma(rng, 1.0 / k, (s, *shape), like=like)
        scale = xp.asarray([k / i for i in range(1, s + 1)], dtype=like.dtype, device=backend.device(like))
        scale = xp.reshape(scale, (s, *([1] * len(shape))))
        return (xp.sum(g * scale, axis=0) - math.log(s)) / k


GUMBEL = Gumbel()
#: the standard exponential draws ``E`` that :class:`Gumbel` noise ``Z = -log E`` is
#: built on (not a perturbation law of its own: a perturbed op given ``E`` takes its
#: score ``1 - e^{-Z}`` as ``1 - E``)
STANDARD_EXPONENTIAL = Noise(name="exponential", kind="exponential", mean=1.0, has_score=False)
NOISES: dict[str, Noise] = {"normal": Normal(), "gumbel": GUMBEL, "sum_of_gamma": SumOfGamma()}


def get_noise(noise: str | Noise) -> Noise:
    """The :class:`Noise` named ``noise`` (or ``noise`` itself); ``ValueError`` otherwise.

    Parameters
    ----------
    noise : str or Noise
        A name of :data:`NOISES` (``"normal"``, ``"gumbel"``, ``"sum_of_gamma"``) or a law.

    Examples
    --------
    >>> from dopt_core.noise import get_noise
    >>> round(get_noise("gumbel").mean, 4)   # Euler's constant
    0.5772
    """
    if isinstance(noise, Noise):
        return noise
    if isinstance(noise, str) and noise in NOISES:
        return NOISES[noise]
    raise ValueError(f"noise must be one of {sorted(NOISES)} (or a dopt_core.noise.Noise), got {noise!r}")


def sum_of_gamma_law(noise: str | Noise, *, kappa: float = 5.0, num_terms: int = 10) -> Noise:
    """The perturbation law of the I-MLE family (:func:`dopt_core.imle`,
    :func:`dopt_core.aimle`).

    Parameters
    ----------
    noise : str or Noise
        ``"sum_of_gamma"`` gives ``SumOfGamma(kappa, num_terms)``; any other name or law
        is :func:`get_noise`'s.
    kappa, num_terms : float, int
        Validated whatever the law. With a law other than ``"sum_of_gamma"`` they must
        keep their defaults (5 and 10): another value would be silently ignored (a
        :class:`SumOfGamma` instance carries its own), so it raises ``ValueError``.

    Examples
    --------
    >>> from dopt_core.noise import sum_of_gamma_law
    >>> sum_of_gamma_law("sum_of_gamma", kappa=3.0).kappa
    3.0
    """
    sog = SumOfGamma(kappa, num_terms)  # validates both whatever the law
    if isinstance(noise, str) and noise == "sum_of_gamma":
        return sog
    law = get_noise(noise)
    pairs = (("kappa", sog.kappa, 5.0), ("num_terms", sog.num_terms, 10))
    changed = [name for name, value, default in pairs if value != default]
    if changed:
        raise ValueError(
            f"{' and '.join(changed)} apply only to noise='sum_of_gamma', got noise={noise!r}: "
            "pass SumOfGamma(kappa, num_terms) as noise instead"
        )
    return law
