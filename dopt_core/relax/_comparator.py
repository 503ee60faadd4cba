r"""The relaxed comparator, shared by the sorting networks and the relaxed control flow.

For two values ``a`` (the wire or argument called first) and ``b``, with
:math:`\Delta = b - a`, a CDF ``F`` of :mod:`dopt_core.relax.cdfs` and the steepness
(inverse temperature) :math:`\beta`,

.. math::

    \alpha = F(\beta\Delta) = \Pr[a + \varepsilon/\beta < b], \qquad \varepsilon \sim F,

the probability that ``a`` is the smaller one when ``a`` is perturbed by
:math:`\varepsilon/\beta` (equivalently: that :math:`\Delta` exceeds the random threshold
:math:`\varepsilon/\beta`). Replacing each branch of ``min``/``max`` by its expectation
under that perturbation gives

.. math::

    \min{}_\alpha(a, b) = \alpha a + (1 - \alpha) b = b - \alpha\Delta, \qquad
    \max{}_\alpha(a, b) = (1 - \alpha) a + \alpha b = a + \alpha\Delta .

This is the convention of the thesis (Petersen 2022, ch. 3: ``α = F(β(b − a))`` in the
sorting networks, ``F(β(a − b))`` for a relaxed ``a > b``), of diffsort and of GenDR
(coverage ``F(d/τ)``), and of the registry, whose entries are the relaxed steps
``1[x > 0] → F(x/s)``. For symmetric ``F`` it equals :math:`\Pr[\Delta + \varepsilon/\beta
> 0] = 1 - F(-\beta\Delta)`; for asymmetric ``F`` (``gumbel_*``, ``exponential``,
``gamma``, ``levy`` and their ``_rev``) the two differ, and ``1 - F(-βΔ)`` would turn
every GenDR family into its mirror (``exponential`` into ``exponential_rev``).

One helper per piece: :func:`comparator_alpha` (α and dα/dΔ), :func:`compare` (the two
outputs), :func:`compare_t` (their transpose for fixed α) and :func:`compare_vjp` (the
full VJP, through α). Plain array-API code on any axis layout.
"""

from __future__ import annotations

from typing import Any

from . import cdfs

__all__ = [
    "comparator_alpha",
    "comparator_cdf",
    "comparator_pdf",
    "compare",
    "compare_t",
    "compare_vjp",
]


def comparator_alpha(
    delta: Any, steepness: float, entry: cdfs.CDF, params: dict[str, Any], *, xp: Any
) -> tuple[Any, Any]:
    """``α = F(β Δ)`` and ``dα/dΔ = β f(β Δ)`` (``entry``: a registry CDF, β: steepness).

    ``βΔ`` is formed once, from Δ clipped to ``±cdfs.V_MAX/β`` (finite inputs would
    overflow it; the clip changes no value with ``|βΔ| < V_MAX``)."""
    if entry.raw:  # receives the unscaled Δ (logistic_phi)
        return (
            entry.cdf_steep(delta, steepness, params, xp=xp),
            entry.pdf_steep(delta, steepness, params, xp=xp),
        )
    v = cdfs.clip_standardised(delta, xp=xp, scale=steepness)
    return entry.F(v, params, xp), entry.f(v, params, xp) * steepness


def comparator_cdf(
    delta: Any, steepness: float, entry: cdfs.CDF, params: dict[str, Any], *, xp: Any
) -> Any:
    """``α = F(β Δ)`` alone, the first output of :func:`comparator_alpha` (same numbers):
    a network needs α layer by layer but ``dα/dΔ`` only for all layers at once."""
    if entry.raw:
        return entry.cdf_steep(delta, steepness, params, xp=xp)
    return entry.F(cdfs.clip_standardised(delta, xp=xp, scale=steepness), params, xp)


def comparator_pdf(
    delta: Any, steepness: float, entry: cdfs.CDF, params: dict[str, Any], *, xp: Any
) -> Any:
    """``dα/dΔ = β f(β Δ)`` alone, the second output of :func:`comparator_alpha`."""
    if entry.raw:
        return entry.pdf_steep(delta, steepness, params, xp=xp)
    return entry.f(cdfs.clip_standardised(delta, xp=xp, scale=steepness), params, xp) * steepness


def compare(a: Any, b: Any, alpha: Any, delta: Any = None) -> tuple[Any, Any]:
    """``(min, max) = (α a + (1-α) b, (1-α) a + α b)``, written as ``b - αΔ`` and
    ``a + αΔ`` with ``Δ = b - a`` (passed when already computed)."""
    ad = alpha * (b - a if delta is None else delta)
    return b - ad, a + ad


def compare_t(h_mn: Any, h_mx: Any, alpha: Any) -> tuple[Any, Any]:
    """The transpose of :func:`compare` for fixed ``α``: the cotangents of ``(a, b)``,
    ``(α h_min + (1-α) h_max, (1-α) h_min + α h_max)``."""
    t = alpha * (h_mn - h_mx)
    return h_mx + t, h_mn - t


def compare_vjp(
    g_mn: Any, g_mx: Any, alpha: Any, dalpha: Any, delta: Any, g_alpha_extra: Any = None
) -> tuple[Any, Any]:
    """Cotangents of ``(a, b)`` from those of ``(min, max)``, through ``α = F(βΔ)`` too.

    ``∂/∂α (⟨g_min, b - αΔ⟩ + ⟨g_max, a + αΔ⟩) = (g_max - g_min) Δ`` (plus
    ``g_alpha_extra``, a cotangent on α from elsewhere, e.g. a permutation matrix), and
    ``Δ = b - a`` carries it to ``a`` and ``b`` with weight ``dα/dΔ``.
    """
    d_alpha = (g_mx - g_mn) * delta
    g_alpha = d_alpha if g_alpha_extra is None else d_alpha + g_alpha_extra
    g_delta = g_alpha * dalpha
    g_a, g_b = compare_t(g_mn, g_mx, alpha)
    return g_a - g_delta, g_b + g_delta
