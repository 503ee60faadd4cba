"""The JAX trainer of ``dopt demo`` and ``examples/shortest_path.py``.

One optimiser step of :mod:`dopt_core.demo`'s shortest-path model in JAX:
:func:`dopt_jax.fenchel_young_loss` over the DAG solver under
``jax.jit(jax.value_and_grad(...))`` (the core's explicit VJP as a ``custom_vjp``) and
the core's :class:`dopt_core.demo.Adam` on ``jax.numpy`` arrays. The loop, the data and
the model's initialisation are the core's (:func:`dopt_core.demo.train`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dopt_core.demo import GRID, Adam, Problem, init_params

from . import fenchel_young_loss, solvers

__all__ = ["trainer"]


@contextlib.contextmanager
def trainer(problem: Problem, lr: float, seed: int, rng: np.random.Generator) -> Iterator[Any]:
    """The JAX trainer: a jitted ``value_and_grad`` of the loss and the core's Adam.

    Parameters
    ----------
    problem : dopt_core.demo.Problem
        The data.
    lr : float
        Adam's step size.
    seed : int
        Seed of the initial model and of the perturbations' key (split once per step).
    rng : numpy.random.Generator
        Unused (the perturbations come from the key); part of the trainer signature of
        :func:`dopt_core.demo.train`.

    Returns
    -------
    context manager
        Its ``with`` block yields ``(step, params)``: ``step(idx)`` takes one Adam step
        on the training rows ``idx`` (one compilation per batch size); ``params()``
        returns ``(W, b)`` as NumPy arrays.

    Examples
    --------
    >>> from dopt_core.demo import make_problem, train
    >>> from dopt_jax.demo import trainer
    >>> p = make_problem(40, 20)
    >>> W, b, curve, _ = train(trainer, p, epochs=1, batch_size=20)
    >>> W.shape, len(curve)
    ((5, 40), 2)
    """
    solver = functools.partial(solvers.shortest_path_dag, grid=GRID)
    loss_fn = fenchel_young_loss(solver, sigma=1.0, num_samples=10, noise="normal")

    @jax.jit
    def value_and_grad(p: tuple[Any, Any], x: Any, y: Any, key: Any) -> Any:
        def objective(p: tuple[Any, Any]) -> Any:
            return loss_fn(-(x @ p[0] + p[1]), y, rng=key)

        return jax.value_and_grad(objective)(p)

    W0, b0 = init_params(seed)
    state = {"params": [jnp.asarray(W0), jnp.asarray(b0)], "key": jax.random.key(seed)}
    adam = Adam(state["params"], lr, xp=jnp)
    X, Y = jnp.asarray(problem.x_train), jnp.asarray(problem.y_train)

    def step(idx: np.ndarray) -> None:
        state["key"], sub = jax.random.split(state["key"])
        _, grads = value_and_grad(tuple(state["params"]), X[idx], Y[idx], sub)
        state["params"] = adam.step(list(grads))

    def params() -> tuple[np.ndarray, np.ndarray]:
        W, b = state["params"]
        return np.asarray(W), np.asarray(b)

    yield step, params
