r"""Structured latent variables by the recursive Gumbel-max trick (DESIGN.md section 8).

Struminsky, Gadetsky, Rakitin, Karpushkin, Vetrov, "Leveraging recursive Gumbel-max
trick for approximate inference in combinatorial spaces", NeurIPS 2021.

Convention: scores θ, rates ``λ = exp θ``, exponentials ``E_i ~ Exp(λ_i)``
(``E = ε·exp(-θ)``, ``ε ~ Exp(1)``); ``argmin E`` is categorical with ``softmax(θ)``.
(The reference code draws ``E = exp(logit)·Exp(1)``: ``θ = -logit``.)

Every structure module offers ``sample(theta, ..., rng=, noise=, num_samples=) ->
(y, trace)`` (the comparison-based samplers run on ``log E = log ε − θ``, Edmonds on
``E`` rescaled per instance: the same structures, exact where ``e^{-θ}`` under- or
overflows; ``trace.exponentials`` is ``E`` itself), ``run(e, ...)`` (the algorithm
on given exponentials), and the
trace's law: :func:`log_prob` (an Op with a closed-form VJP), :func:`score`,
:func:`log_prob_exponentials`, :func:`conditional_sample`.

* :mod:`~dopt_core.structured.top_k` — top-k subsets and Plackett-Luce orderings;
* :mod:`~dopt_core.structured.spanning_tree` — Kruskal on exponential edge weights;
* :mod:`~dopt_core.structured.arborescence` — rooted arborescences by Chu-Liu/Edmonds;
* :mod:`~dopt_core.structured.matching` — perfect bipartite matchings by row/column removal;
* :mod:`~dopt_core.structured.binary_tree` — binary trees by recursive argmin partition;
* :mod:`~dopt_core.structured.estimators` — REINFORCE (with the leave-one-out "+"
  baseline) and RELAX gradient estimators, as plain functions of arrays.
"""

from . import arborescence, binary_tree, estimators, matching, spanning_tree, top_k
from ._trace import (
    EXPONENTIAL,
    Exponential,
    Trace,
    conditional_sample,
    exponentials,
    log_prob,
    log_prob_exponentials,
    score,
    score_exponentials,
)

__all__ = [
    "EXPONENTIAL",
    "Exponential",
    "Trace",
    "arborescence",
    "binary_tree",
    "conditional_sample",
    "estimators",
    "exponentials",
    "log_prob",
    "log_prob_exponentials",
    "matching",
    "score",
    "score_exponentials",
    "spanning_tree",
    "top_k",
]
