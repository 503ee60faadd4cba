"""Differentiable logic gate networks (Petersen et al., NeurIPS 2022; convolutional
form, NeurIPS 2024).

* the 16 gates: :data:`GATE_COEFFS` (their ``(1, a, b, ab)`` coefficients),
  :data:`GATE_NAMES`, :func:`gate_truth_table`;
* layers (Ops with explicit VJPs): :func:`logic_layer`, :func:`group_sum`,
  :func:`or_pool2d`, and :func:`logic_conv2d` built from :func:`logic_layer`;
* wiring: :func:`logic_connections` (difflogic's ``'random'`` and ``'unique'``),
  :func:`conv_tree_leaves`, :func:`conv_tree_wiring`;
* the discrete network on a CPU core: :func:`compile_logic_net` (bit-packed NumPy,
  64 samples per ``uint64`` word, optional C source);
* binarisation: :func:`thermometer`, :func:`quantile_thresholds`, :func:`one_hot_bits`.
"""

from ._compile import CompiledLogicNet, compile_logic_net, gate_layers_hard, pack_bits
from ._conv import conv_tree_leaves, conv_tree_wiring, logic_conv2d, or_pool2d
from ._encode import one_hot_bits, quantile_thresholds, thermometer
from ._gates import GATE_COEFFS, GATE_NAMES, NUM_GATES, gate_truth_table
from ._groupsum import group_sum
from ._layer import gate_coefficients, logic_layer
from ._wiring import logic_connections

__all__ = [
    "GATE_COEFFS",
    "GATE_NAMES",
    "NUM_GATES",
    "CompiledLogicNet",
    "compile_logic_net",
    "conv_tree_leaves",
    "conv_tree_wiring",
    "gate_coefficients",
    "gate_layers_hard",
    "gate_truth_table",
    "group_sum",
    "logic_connections",
    "logic_conv2d",
    "logic_layer",
    "one_hot_bits",
    "or_pool2d",
    "pack_bits",
    "quantile_thresholds",
    "thermometer",
]
