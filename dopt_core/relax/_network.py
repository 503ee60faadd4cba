"""Differentiable sorting networks (Petersen et al., ICML 2021 / ICLR 2022) and soft top-k.

A sorting network is a fixed sequence of layers; each layer is a set of disjoint
comparators ``(a, b)`` on wires ``a < b``. The relaxed comparator with
``α = F(β (x_b - x_a))`` (``F`` a CDF of :mod:`dopt_core.relax.cdfs`, ``β`` the
steepness) writes

.. math::

    \\min{}_\\alpha(x_a, x_b) = \\alpha x_a + (1 - \\alpha) x_b, \\qquad
    \\max{}_\\alpha(x_a, x_b) = (1 - \\alpha) x_a + \\alpha x_b

to the wire that receives the minimum (``a``, or ``b`` in a descending block of the
bitonic network) and to the other one (:mod:`dopt_core.relax._comparator`, shared with
``soft_min``/``soft_max``). This module holds the public functions and their
validation only: the comparator layouts are :mod:`dopt_core.relax._network_tables`
(pure NumPy, cached), the Ops and their VJPs :mod:`dopt_core.relax._network_ops`, the
bitonic merge matrices :mod:`dopt_core.relax._bitonic_merge`.
"""

from __future__ import annotations

from typing import Any

from .._lib._checks import (
    check_choice,
    check_flag,
    check_in_dtype_range,
    check_int,
    check_positive,
    check_real,
    check_scores,
)
from ..backend import backend_for
from ..op import Bound, op_function
from . import cdfs
from ._network_ops import NetworkPermutationOp, NetworkSortOp, SoftTopKOp, Spec
from ._network_tables import NETWORKS, comparators

__all__ = [
    "network_permutation",
    "network_sort",
    "soft_top_k",
    "sorting_network",
    "sorting_network_layers",
]


def sorting_network_layers(network: str, n: int) -> list[list[tuple[int, int, int, int]]]:
    """The comparators of a network, layer by layer: ``(a, b, wire_min, wire_max)``.

    ``a < b`` are the compared wires (``α = F(β (x_b - x_a))``); ``wire_min`` receives
    the relaxed minimum. Every layer's comparators touch disjoint wires; wires in no
    comparator pass through. Layers without comparators are omitted.

    Parameters
    ----------
    network : {"odd_even", "bitonic"}
        The comparator layout (see :func:`sorting_network`).
    n : int
        Number of wires (``>= 1``).

    Returns
    -------
    list of list of tuple
        One list per layer of ``(a, b, wire_min, wire_max)``.

    Examples
    --------
    >>> from dopt_core.relax import sorting_network_layers
    >>> sorting_network_layers("odd_even", 3)
    [[(0, 1, 0, 1)], [(1, 2, 1, 2)], [(0, 1, 0, 1)]]
    """
    check_choice(network, name="network", choices=NETWORKS)
    n = check_int(n, name="n", low=1)
    return comparators(network, n)


# ---------------------------------------------------------------------------------
# public functions
# ---------------------------------------------------------------------------------
def _spec(
    network: Any, steepness: Any, sigmoid: Any, art_lambda: Any, like: Any = None
) -> Spec:
    network = check_choice(network, name="network", choices=NETWORKS)
    steepness = check_positive(steepness, name="steepness")
    if like is not None:  # β and 1/β normal numbers of the arrays' dtype
        xp = backend_for(like).namespace(like)
        steepness = check_in_dtype_range(steepness, name="steepness", dtype=like.dtype, xp=xp)
    art_lambda = check_real(art_lambda, name="art_lambda")
    if not 0 <= art_lambda < 1:
        raise ValueError(f"art_lambda must be in [0, 1), got {art_lambda}")
    # a name, ("name", parameter) or a cdfs object: a hashable cdfs.Distribution
    sigmoid = cdfs.resolve(sigmoid, name="sigmoid", art_lambda=art_lambda)
    return Spec(network, steepness, sigmoid, art_lambda)


@op_function
def network_sort(
    x: Any,
    /,
    *,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    check_finite: bool = True,
) -> Bound:
    """Sorted values of a differentiable sorting network (ascending).

    The first output of :func:`sorting_network`, as its own op: O(n) work per layer,
    residuals ``α``, ``F'`` and ``Δ`` per comparator (O(n · layers) memory).

    Parameters
    ----------
    x : array, shape ``(..., n)``, float32 or float64
        Values to sort along the last axis (leading axes are batch axes); any ``n >= 1``.
        Integer arrays are promoted to the framework's default float dtype; bool raises.
    network : {"odd_even", "bitonic"}
        ``odd_even``: n layers of neighbour comparators; ``bitonic``:
        ⌈log₂n⌉(⌈log₂n⌉+1)/2 layers. For ``n`` a power of two the bitonic layout is
        diffsort's (ascending and descending blocks); for other ``n`` it is the
        all-ascending form with the surplus wires of the next power of two dropped,
        which sorts for every ``n`` (diffsort's layout does not there; see
        ``docs/relax.md``).
    steepness : float > 0
        Inverse temperature β (``α = F(β Δ)``, :mod:`dopt_core.relax._comparator`).
    sigmoid : str, ("name", parameter) or cdfs.Distribution
        Any name of :mod:`dopt_core.relax.cdfs` (default ``"cauchy"``, monotone);
        diffsort's six (``logistic``, ``logistic_phi``, ``gaussian``, ``reciprocal``,
        ``cauchy``, ``optimal``) use diffsort's formulas. GenDR entries use their
        default parameters (``shift=0``, ``shape=2``).
    art_lambda : float in [0, 1)
        Exponent λ of the activation replacement trick (``logistic_phi`` only).
    check_finite : bool
        Raise ``ValueError`` on NaN/inf in ``x`` (skipped when traced).

    Returns
    -------
    array ``(..., n)``
        The relaxed ascending sort of ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import network_sort
    >>> np.round(network_sort(np.array([3.0, 1.0, 2.0]), steepness=1e9), 6)
    array([1., 2., 3.])
    """
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite, promote_integers=True)
    return Bound(
        NetworkSortOp(_spec(network, steepness, sigmoid, art_lambda, x), int(x.shape[-1])),
        (x,),
        out_dtype,
    )


@op_function
def network_permutation(
    x: Any,
    /,
    *,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    check_finite: bool = True,
) -> Bound:
    """Relaxed permutation matrix of a differentiable sorting network.

    The second output of :func:`sorting_network`, as its own op: ``P[..., i, j]`` is the
    weight of input ``i`` in ascending slot ``j`` (``network_sort(x) = x @ P`` up to
    rounding; rows and columns sum to 1). The matrix is built transposed, one layer at a
    time: O(n²) work per layer for odd-even; for bitonic one merge matrix ``M_b`` per
    block and ``P_b = blockdiag(P_{b-1}) M_bᵀ`` as one batched matrix product
    (:mod:`dopt_core.relax._bitonic_merge`). The VJP keeps each block's input product
    (about n² entries), runs the blocks backwards rebuilding each merge from the
    comparator weights, and feeds ∂/∂α into the values network's VJP. Odd-even layers
    are runs of neighbour pairs, applied as views of the matrix as pairs of rows.

    Parameters
    ----------
    x : array, shape ``(..., n)``, float32 or float64
        Values to sort along the last axis (leading axes are batch axes); any ``n >= 1``.
        Integer arrays are promoted to the framework's default float dtype; bool raises.
    network : {"odd_even", "bitonic"}
        ``odd_even``: n layers of neighbour comparators; ``bitonic``:
        ⌈log₂n⌉(⌈log₂n⌉+1)/2 layers. For ``n`` a power of two the bitonic layout is
        diffsort's (ascending and descending blocks); for other ``n`` it is the
        all-ascending form with the surplus wires of the next power of two dropped,
        which sorts for every ``n`` (diffsort's layout does not there; see
        ``docs/relax.md``).
    steepness : float > 0
        Inverse temperature β (``α = F(β Δ)``, :mod:`dopt_core.relax._comparator`).
    sigmoid : str, ("name", parameter) or cdfs.Distribution
        Any name of :mod:`dopt_core.relax.cdfs` (default ``"cauchy"``, monotone);
        diffsort's six (``logistic``, ``logistic_phi``, ``gaussian``, ``reciprocal``,
        ``cauchy``, ``optimal``) use diffsort's formulas. GenDR entries use their
        default parameters (``shift=0``, ``shape=2``).
    art_lambda : float in [0, 1)
        Exponent λ of the activation replacement trick (``logistic_phi`` only).
    check_finite : bool
        Raise ``ValueError`` on NaN/inf in ``x`` (skipped when traced).

    Returns
    -------
    array ``(..., n, n)``
        Doubly-stochastic; ``x @ P`` is the relaxed sort.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import network_permutation
    >>> np.round(network_permutation(np.array([2.0, 1.0]), steepness=1e9), 6)
    array([[0., 1.],
           [1., 0.]])
    """
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite, promote_integers=True)
    return Bound(
        NetworkPermutationOp(
            _spec(network, steepness, sigmoid, art_lambda, x), int(x.shape[-1])
        ),
        (x,),
        out_dtype,
    )


def sorting_network(
    x: Any,
    /,
    *,
    network: str = "odd_even",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    return_permutation: bool = True,
    check_finite: bool = True,
) -> Any:
    r"""Differentiable sorting network: relaxed ascending sort and permutation matrix.

    Runs ``x`` through the layers of an odd-even transposition or bitonic network whose
    comparators are relaxed with a CDF ``F``: for compared wires ``a < b`` and
    :math:`\Delta = x_b - x_a`, :math:`\alpha = F(\beta\Delta)`, the minimum slot
    receives :math:`\alpha x_a + (1-\alpha) x_b` and the maximum slot
    :math:`(1-\alpha) x_a + \alpha x_b`. The relaxed permutation is the product of the
    layers' doubly-stochastic matrices, :math:`P = M_1 M_2 \cdots M_L`.

    Conventions: ascending; ``P[..., i, j]`` is the weight of input ``i`` in sorted slot
    ``j``, so ``sorted = x @ P`` — the convention of diffsort's code (its README calls
    this the transpose of the paper's P) and of :func:`dopt_core.solvers.permutation`.
    The numbers equal diffsort's ``DiffSortNet`` for the same network, steepness,
    sigmoid and ``art_lambda`` (bitonic: for ``n`` a power of two). As
    ``steepness → ∞`` the outputs tend to the exact sort and permutation matrix
    (distinct inputs; odd-even and bitonic networks sort). With ``sigmoid`` in
    ``{"cauchy", "reciprocal", "optimal"}`` the network is monotonic: every sorted
    output is non-decreasing in every input (ICLR 2022), ``logistic`` is not.

    Two outputs, one op: ``P`` comes from :func:`network_permutation` (its own explicit
    VJP, which also carries ``∂α/∂x``) and the sorted values are ``x @ P`` — equal to
    :func:`network_sort` up to rounding because each layer is linear in the values for
    fixed ``α`` — so one network pass and one VJP serve both outputs (the product is
    differentiated by the framework). With ``return_permutation=False`` the values come
    from :func:`network_sort` alone: O(n) work per layer, no n×n matrix.

    Parameters
    ----------
    x : array, shape ``(..., n)``, float32 or float64
        Values to sort along the last axis (leading axes are batch axes); any ``n >= 1``.
        Integer arrays are promoted to the framework's default float dtype; bool raises.
    network : {"odd_even", "bitonic"}
        ``odd_even``: n layers of neighbour comparators; ``bitonic``:
        ⌈log₂n⌉(⌈log₂n⌉+1)/2 layers. For ``n`` a power of two the bitonic layout is
        diffsort's (ascending and descending blocks); for other ``n`` it is the
        all-ascending form with the surplus wires of the next power of two dropped,
        which sorts for every ``n`` (diffsort's layout does not there; see
        ``docs/relax.md``).
    steepness : float > 0
        Inverse temperature β (``α = F(β Δ)``, :mod:`dopt_core.relax._comparator`).
    sigmoid : str, ("name", parameter) or cdfs.Distribution
        Any name of :mod:`dopt_core.relax.cdfs` (default ``"cauchy"``, monotone);
        diffsort's six (``logistic``, ``logistic_phi``, ``gaussian``, ``reciprocal``,
        ``cauchy``, ``optimal``) use diffsort's formulas. GenDR entries use their
        default parameters (``shift=0``, ``shape=2``).
    art_lambda : float in [0, 1)
        Exponent λ of the activation replacement trick (``logistic_phi`` only).
    check_finite : bool
        Raise ``ValueError`` on NaN/inf in ``x`` (skipped when traced).
    return_permutation : bool
        Return ``(sorted, P)`` (default) or only ``sorted``.

    Returns
    -------
    sorted : array ``(..., n)``
    P : array ``(..., n, n)``
        Only if ``return_permutation``.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import sorting_network
    >>> y, P = sorting_network(np.array([3.0, 1.0, 2.0]), steepness=1e9)
    >>> np.round(y, 6), np.round(P, 6)
    (array([1., 2., 3.]), array([[0., 0., 1.],
           [1., 0., 0.],
           [0., 1., 0.]]))

    References
    ----------
    Petersen, Borgelt, Kuehne, Deussen, "Differentiable sorting networks for scalable
    sorting and ranking supervision", ICML 2021 (arXiv:2105.04019); "Monotonic
    differentiable sorting networks", ICLR 2022 (arXiv:2203.09630).
    """
    kwargs = dict(
        network=network,
        steepness=steepness,
        sigmoid=sigmoid,
        art_lambda=art_lambda,
        check_finite=check_finite,
    )
    if not check_flag(return_permutation, name="return_permutation"):
        return network_sort(x, **kwargs)
    P = network_permutation(x, **kwargs)
    # sorted = x @ P: the values network is linear in x for fixed α, so this equals
    # network_sort(x) up to rounding, and one network pass (and one VJP, through P's)
    # serves both outputs; the framework differentiates the product natively
    xp = backend_for(P).namespace(P)
    xc = xp.astype(x, P.dtype) if x.dtype != P.dtype else x
    y = xp.matmul(xp.expand_dims(xc, axis=-2), P)[..., 0, :]
    return y, P


@op_function
def soft_top_k(
    x: Any,
    /,
    k: int,
    *,
    network: str = "bitonic",
    steepness: float = 10.0,
    sigmoid: str = "cauchy",
    art_lambda: float = 0.25,
    check_finite: bool = True,
) -> Bound:
    r"""Relaxed top-k matrix of a sorting network, without forming the n×n permutation.

    Returns the last ``k`` columns of the relaxed permutation
    :math:`P = M_1 \cdots M_L` of :func:`sorting_network`, computed as in difftopk by
    back-multiplying :math:`P_{:, n-k:} = M_1(M_2(\cdots(M_L E_k)))` from
    :math:`E_k = I_{:, n-k:}`: O(n k) work per layer and O(n k · layers) memory.
    ``out[..., i, j]`` is the weight of input ``i`` in the ``j``-th of the top ``k``
    ascending slots (``j = k - 1`` is the maximum); ``out.sum(-1)`` is a relaxed
    top-k indicator summing to ``k`` and tends to :func:`dopt_core.solvers.top_k` as
    ``steepness → ∞``.

    Parameters
    ----------
    x : array ``(..., n)``
        Integer arrays are promoted to the framework's default float dtype.
    k : int, ``1 <= k <= n``
    network, steepness, sigmoid, art_lambda
        As in :func:`sorting_network` (default network ``"bitonic"``).
    check_finite : bool
        Raise ``ValueError`` on NaN or infinite inputs (skipped under ``jax.jit``).

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.relax import soft_top_k
    >>> np.round(soft_top_k(np.array([0.5, 3.0, -1.0, 2.0]), 2, steepness=1e9).sum(-1), 6)
    array([0., 1., 0., 1.])

    References
    ----------
    Petersen, Kuehne, Borgelt, Deussen, "Differentiable top-k classification learning",
    ICML 2022 (arXiv:2206.07290).
    """
    x, _, out_dtype = check_scores(x, name="x", check_finite=check_finite, promote_integers=True)
    n = int(x.shape[-1])
    k = check_int(k, name="k", low=1, high=n)
    spec = _spec(network, steepness, sigmoid, art_lambda, x)
    return Bound(SoftTopKOp(spec, n, k), (x,), out_dtype)
