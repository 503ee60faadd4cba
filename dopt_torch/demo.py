"""The PyTorch trainer of ``dopt demo`` and ``examples/shortest_path.py``.

One optimiser step of :mod:`dopt_core.demo`'s shortest-path model in torch:
:class:`dopt_torch.nn.FenchelYoungLoss` over the DAG solver, ``loss.backward()``
(autograd through the core's explicit VJP) and :class:`torch.optim.Adam`. The loop,
the data and the model's initialisation are the core's (:func:`dopt_core.demo.train`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dopt_core.demo import GRID, Problem, init_params

from . import nn, solvers

__all__ = ["trainer"]


@contextlib.contextmanager
def trainer(problem: Problem, lr: float, seed: int, rng: np.random.Generator) -> Iterator[Any]:
    """The torch trainer: ``FenchelYoungLoss(seed=seed)``, autograd and ``torch.optim.Adam``.

    torch runs on one intra-op thread inside the ``with`` block (restored after): the
    tensors are tiny, and extra threads only contend (on a loaded 2-core machine an
    epoch took 15 times longer with the default thread count).

    Parameters
    ----------
    problem : dopt_core.demo.Problem
        The data.
    lr : float
        Adam's step size.
    seed : int
        Seed of the initial model and of the loss's perturbations.
    rng : numpy.random.Generator
        Unused (the loss draws from its own seeded generator); part of the trainer
        signature of :func:`dopt_core.demo.train`.

    Returns
    -------
    context manager
        Its ``with`` block yields ``(step, params)``: ``step(idx)`` takes one Adam step
        on the training rows ``idx``; ``params()`` returns ``(W, b)`` as NumPy arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from dopt_core.demo import make_problem, numpy_trainer, train
    >>> from dopt_torch.demo import trainer
    >>> p = make_problem(40, 20)
    >>> W, b, curve, _ = train(trainer, p, epochs=1, batch_size=20)
    >>> W.dtype, len(curve)
    (dtype('float64'), 2)
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        solver = functools.partial(solvers.shortest_path_dag, grid=GRID)
        loss_fn = nn.FenchelYoungLoss(solver, sigma=1.0, num_samples=10, noise="normal", seed=seed)
        W0, b0 = init_params(seed)
        W = torch.tensor(W0, requires_grad=True)
        b = torch.tensor(b0, requires_grad=True)
        opt = torch.optim.Adam([W, b], lr=lr)
        X, Y = torch.tensor(problem.x_train), torch.tensor(problem.y_train)

        def step(idx: np.ndarray) -> None:
            idx_t = torch.as_tensor(idx)
            opt.zero_grad()
            loss = loss_fn(-(X[idx_t] @ W + b), Y[idx_t])
            loss.backward()
            opt.step()

        def params() -> tuple[np.ndarray, np.ndarray]:
            return W.detach().numpy().copy(), b.detach().numpy().copy()

        yield step, params
    finally:
        torch.set_num_threads(threads)
