"""Batched combinatorial oracles ``y*(θ) = argmax_{y ∈ Y} <θ, y>``.

Every solver maximises a score; solvers users think of as minimising take
``θ = -cost``. Leading axes of ``theta`` are batch axes.
"""

from ._basic import argmax, permutation, rank, sort, top_k

__all__ = ["argmax", "permutation", "rank", "sort", "top_k"]
