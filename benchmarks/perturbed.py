"""Speed of dopt's perturbed optimizers against peers and against the floor (run by hand).

1. JAX: jitted value + VJP of a perturbed argmax (batch 128, dim 100, 100 Gumbel
   samples) — dopt, jaxopt's ``make_perturbed_argmax`` (vmapped over the batch),
   optax's ``make_perturbed_fun`` (vmapped), and the floor: drawing the noise plus one
   argmax over ``(M, batch, n)`` in the same jitted program.
2. PyTorch: one training step (forward + backward, batch 32, 10 samples, σ = 1) of the
   perturbed Fenchel-Young loss on the 5×5 shortest-path benchmark — dopt with its
   batched DP solver, against PyEPO's ``perturbedFenchelYoung`` with its own
   ``shortestPathModel`` (Gurobi), where installed.

Prints median times and ratios (peer / dopt; floor / dopt). Peers are optional:
``pip install -c constraints.txt -e '.[bench]'``.

    python benchmarks/perturbed.py
"""

from __future__ import annotations

import functools
import importlib.util
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import dopt_core as dc


def timeit(fn: Callable[[], Any], *, repeat: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def row(name: str, seconds: float, reference: float | None) -> None:
    ratio = "" if reference is None else f"{seconds / reference:8.2f}x dopt"
    print(f"  {name:<42} {seconds * 1e3:9.3f} ms  {ratio}")


def bench_jax(batch: int = 128, dim: int = 100, samples: int = 100, sigma: float = 0.5) -> None:
    import jax
    import jax.numpy as jnp

    import dopt_jax as dj

    print(f"JAX perturbed argmax, value + VJP: batch {batch}, dim {dim}, {samples} samples (jit, CPU)")
    theta = jax.random.normal(jax.random.key(0), (batch, dim))
    g = jax.random.normal(jax.random.key(1), (batch, dim))
    key = jax.random.key(2)

    f = dj.perturbed(dj.solvers.argmax, sigma=sigma, num_samples=samples, noise="gumbel")

    @jax.jit
    def dopt_step(t: Any, k: Any) -> Any:
        y, pull = jax.vjp(lambda u: f(u, rng=k), t)
        return y, pull(g)[0]

    ours = timeit(lambda: jax.block_until_ready(dopt_step(theta, key)))
    row("dopt", ours, None)

    @jax.jit
    def floor(t: Any, k: Any) -> Any:  # the least any estimator must do: draw, perturb, argmax
        z = -jnp.log(jax.random.exponential(k, (samples, *t.shape), t.dtype))  # dopt's Gumbel draw
        return jnp.argmax(t + sigma * z, axis=-1)

    row("floor: noise + one argmax over (M, B, n)", timeit(lambda: jax.block_until_ready(floor(theta, key))), ours)

    def one_hot_argmax(t: Any) -> Any:
        return jax.nn.one_hot(jnp.argmax(t), t.shape[-1])

    if importlib.util.find_spec("jaxopt") is not None:
        from jaxopt import perturbations as jp

        pert = jp.make_perturbed_argmax(one_hot_argmax, num_samples=samples, sigma=sigma, noise=jp.Gumbel())
        keys = jax.random.split(key, batch)

        @jax.jit
        def jaxopt_step(t: Any, ks: Any) -> Any:
            y, pull = jax.vjp(lambda u: jax.vmap(pert)(u, ks), t)
            return y, pull(g)[0]

        row("jaxopt make_perturbed_argmax (vmap)", timeit(lambda: jax.block_until_ready(jaxopt_step(theta, keys))), ours)
    else:
        print("  jaxopt: not installed")
    if importlib.util.find_spec("optax") is not None:
        try:
            from optax import perturbations as op
        except ImportError:
            op = None
        if op is not None and hasattr(op, "make_perturbed_fun"):
            pert2 = op.make_perturbed_fun(one_hot_argmax, num_samples=samples, sigma=sigma, noise=op.Gumbel())
            keys = jax.random.split(key, batch)

            @jax.jit
            def optax_step(t: Any, ks: Any) -> Any:
                y, pull = jax.vjp(lambda u: jax.vmap(pert2)(ks, u), t)
                return y, pull(g)[0]

            row("optax make_perturbed_fun (vmap)", timeit(lambda: jax.block_until_ready(optax_step(theta, keys))), ours)
    else:
        print("  optax: not installed")


def bench_torch_pyepo(batch: int = 32, samples: int = 10, sigma: float = 1.0) -> None:
    import torch

    import dopt_torch as dt

    grid = (5, 5)
    print(f"PyTorch FY training step, 5x5 shortest path: batch {batch}, {samples} samples, sigma {sigma}")
    x, c = dc.data.shortest_path(batch, 5, grid, deg=4, noise_width=0.5, seed=1)
    solver = functools.partial(dt.solvers.shortest_path_dag, grid=grid)
    y = torch.tensor(solver(-c))
    model = torch.nn.Linear(5, 40).double()
    X = torch.tensor(x)
    loss_fn = dt.nn.FenchelYoungLoss(solver, sigma=sigma, num_samples=samples, seed=0)

    def dopt_step() -> None:
        model.zero_grad()
        loss_fn(-model(X), y).backward()

    ours = timeit(dopt_step)
    row("dopt (batched DP solver)", ours, None)

    def floor() -> None:
        z = torch.randn(samples, batch, 40, dtype=torch.float64)
        solver(-model(X).detach() + sigma * z)

    row("floor: noise + one batched solve", timeit(floor), ours)
    if importlib.util.find_spec("pyepo") is None or importlib.util.find_spec("gurobipy") is None:
        print("  PyEPO / gurobipy: not installed")
        return
    import pyepo

    optmodel = pyepo.model.grb.shortestPathModel(grid)
    pfy = pyepo.func.perturbedFenchelYoung(optmodel, n_samples=samples, sigma=sigma, processes=1)
    w_true = []
    for ci in c:
        optmodel.setObj(ci)
        w, _ = optmodel.solve()
        w_true.append(w)
    W = torch.tensor(np.array(w_true), dtype=torch.float32)
    model32 = torch.nn.Linear(5, 40)
    X32 = X.float()

    def pyepo_step() -> None:
        model32.zero_grad()
        pfy(model32(X32), W).backward()

    row("PyEPO perturbedFenchelYoung (Gurobi)", timeit(pyepo_step, repeat=5, warmup=1), ours)


if __name__ == "__main__":
    if importlib.util.find_spec("jax") is not None:
        bench_jax()
    if importlib.util.find_spec("torch") is not None:
        bench_torch_pyepo()
