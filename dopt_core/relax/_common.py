"""Array helpers shared by the relaxations (private; validation: ``dopt_core._lib._checks``)."""

from __future__ import annotations

__all__: list[str] = []
