"""Smooth relaxations of discrete decisions (DESIGN.md section 7).

* simplex: :func:`softmax`, :func:`sparsemax`, :func:`gumbel_softmax`;
* :mod:`dopt_core.relax.cdfs`: the registry of perturbation CDFs and their densities,
  shared by the sorting networks and the relaxed comparisons;
* sorting networks: :func:`sorting_network` (values :func:`network_sort` and relaxed
  permutation :func:`network_permutation`), :func:`soft_top_k`;
* permutahedron projections: :func:`soft_sort`, :func:`soft_rank` (L2 and KL);
* relaxed control flow: :func:`soft_compare`, :func:`soft_if`, :func:`soft_min`,
  :func:`soft_max`, :func:`soft_argmin`, :func:`soft_argmax`;
* ranking supervision: :func:`permutation_loss`.
* subsets: :func:`gumbel_top_k`, :func:`relaxed_subset` (Xie & Ermon 2019),
  :func:`k_subset_marginals`, :func:`k_subset_sample` (SIMPLE); relaxed sort :func:`neural_sort`.

Every function acts on the last axis (leading axes are batch axes), keeps the
input's dtype and device, and carries an explicit array-API VJP.
"""

from . import cdfs
from ._control import soft_argmax, soft_argmin, soft_compare, soft_if, soft_max, soft_min
from ._k_subsets import k_subset_marginals, k_subset_sample
from ._losses import permutation_loss
from ._network import (
    network_permutation,
    network_sort,
    soft_top_k,
    sorting_network,
    sorting_network_layers,
)
from ._neural_sort import neural_sort
from ._simplex import gumbel_softmax, softmax, sparsemax
from ._softsort import soft_rank, soft_sort
from ._subsets import gumbel_top_k, relaxed_subset

__all__ = [
    "cdfs",
    "gumbel_softmax",
    "network_permutation",
    "network_sort",
    "permutation_loss",
    "soft_argmax",
    "soft_argmin",
    "soft_compare",
    "soft_if",
    "soft_max",
    "soft_min",
    "soft_rank",
    "soft_sort",
    "soft_top_k",
    "softmax",
    "sorting_network",
    "sorting_network_layers",
    "sparsemax",
    "gumbel_top_k",
    "k_subset_marginals",
    "k_subset_sample",
    "neural_sort",
    "relaxed_subset",
]

# relaxed control flow, part two (AlgoVision), the T-norm family and the 2-D rasteriser
from . import fuzzy  # noqa: E402
from ._flow import (  # noqa: E402
    soft_and,
    soft_assign,
    soft_eq,
    soft_index,
    soft_index_weights,
    soft_not,
    soft_or,
    soft_while,
)

__all__ += [
    "fuzzy",
    "soft_and",
    "soft_assign",
    "soft_eq",
    "soft_index",
    "soft_index_weights",
    "soft_not",
    "soft_or",
    "soft_while",
]
from . import raster  # noqa: E402

__all__ += ["raster"]
