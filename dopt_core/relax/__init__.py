"""Smooth relaxations of discrete decisions (DESIGN.md section 7).

* simplex: :func:`softmax`, :func:`sparsemax`, :func:`gumbel_softmax`;
* :mod:`dopt_core.relax.cdfs`: the registry of perturbation CDFs and their densities,
  shared by the sorting networks and the relaxed comparisons.

Every function acts on the last axis (leading axes are batch axes), keeps the
input's dtype and device, and carries an explicit array-API VJP.
"""

from . import cdfs
from ._simplex import gumbel_softmax, softmax, sparsemax

__all__ = ["cdfs", "gumbel_softmax", "softmax", "sparsemax"]
