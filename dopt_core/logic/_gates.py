"""The 16 two-input logic gates and their real-valued relaxations.

Read ``a, b ∈ [0, 1]`` as the probabilities of two independent Bernoulli bits; the
expected output of every gate is then affine in the basis ``(1, a, b, ab)``
(Petersen et al., "Deep differentiable logic gate networks", NeurIPS 2022, Table 1).
Row ``i`` of :data:`GATE_COEFFS` holds the coefficients of gate ``i``.
"""

from __future__ import annotations

import numpy as np

from .._lib._checks import check_int

__all__ = ["GATE_COEFFS", "GATE_NAMES", "NUM_GATES", "gate_truth_table"]

#: number of distinct two-input Boolean functions
NUM_GATES = 16

#: gate names in difflogic's order (gate ``i`` has truth table bits ``i`` read as
#: (a, b) = (1,1), (1,0), (0,1), (0,0) from the least significant bit: see
#: :func:`gate_truth_table`)
GATE_NAMES: tuple[str, ...] = (
    "false", "and", "a_and_not_b", "a", "not_a_and_b", "b", "xor", "or",
    "nor", "xnor", "not_b", "b_implies_a", "not_a", "a_implies_b", "nand", "true",
)

_C = np.array(
    [
        [0, 0, 0, 0],  # 0  false
        [0, 0, 0, 1],  # 1  a ∧ b
        [0, 1, 0, -1],  # 2  ¬(a ⇒ b) = a ∧ ¬b
        [0, 1, 0, 0],  # 3  a
        [0, 0, 1, -1],  # 4  ¬(b ⇒ a) = ¬a ∧ b
        [0, 0, 1, 0],  # 5  b
        [0, 1, 1, -2],  # 6  a ⊕ b
        [0, 1, 1, -1],  # 7  a ∨ b
        [1, -1, -1, 1],  # 8  ¬(a ∨ b)
        [1, -1, -1, 2],  # 9  ¬(a ⊕ b)
        [1, 0, -1, 0],  # 10 ¬b
        [1, 0, -1, 1],  # 11 b ⇒ a
        [1, -1, 0, 0],  # 12 ¬a
        [1, -1, 0, 1],  # 13 a ⇒ b
        [1, 0, 0, -1],  # 14 ¬(a ∧ b)
        [1, 0, 0, 0],  # 15 true
    ],
    dtype=np.float64,
)
_C.setflags(write=False)

#: ``(16, 4)`` read-only float64 array: gate ``i`` relaxes to
#: ``C[i,0] + C[i,1]·a + C[i,2]·b + C[i,3]·a·b``
GATE_COEFFS: np.ndarray = _C


def gate_truth_table(gate: int) -> np.ndarray:
    r"""The truth table of gate ``gate``: ``T[a, b]`` for ``a, b ∈ {0, 1}``.

    Evaluates :data:`GATE_COEFFS` at the four corners of :math:`[0,1]^2`; on binary
    inputs the relaxation :math:`c_0 + c_1 a + c_2 b + c_3 ab` is the Boolean gate
    (Petersen et al., NeurIPS 2022, Table 1).

    Parameters
    ----------
    gate : int in ``[0, 16)``

    Returns
    -------
    numpy.ndarray, shape ``(2, 2)``, dtype bool

    Examples
    --------
    >>> from dopt_core.logic import gate_truth_table, GATE_NAMES
    >>> GATE_NAMES[6], gate_truth_table(6).astype(int).tolist()
    ('xor', [[0, 1], [1, 0]])
    """
    gate = check_int(gate, name="gate", low=0, high=NUM_GATES - 1)
    c = _C[gate]
    a = np.array([[0.0, 0.0], [1.0, 1.0]])
    b = a.T
    return (c[0] + c[1] * a + c[2] * b + c[3] * a * b) > 0.5
