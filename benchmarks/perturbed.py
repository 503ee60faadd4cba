"""Speed of dopt's perturbed optimizers against peers and against the floor (run by hand).

1. JAX: jitted value + VJP of a perturbed argmax (batch 128, dim 100, 100 Gumbel
   samples, float32) — dopt, jaxopt's ``make_perturbed_argmax`` (vmapped over the
   batch), optax's ``make_perturbed_fun`` (vmapped), and the floor: drawing the noise
   plus one max-reduce over ``(M, batch, n)`` in the same jitted program.
2. PyTorch, same shape: dopt's value + VJP (eager torch) against jaxopt's jitted time
   measured in the same run (alternating), and the torch floor (noise + one argmax).
3. PyTorch: one training step (forward + backward, batch 32, 10 samples, σ = 1) of the
   perturbed Fenchel-Young loss on the 5×5 shortest-path benchmark — dopt with its
   batched DP solver, against PyEPO's ``perturbedFenchelYoung`` with its own
   ``shortestPathModel`` (Gurobi), where installed.
4. Scaling (the runner's curves): dopt torch, dopt JAX and jaxopt against the number
   of samples (batch 128) and against the batch (100 samples).

Prints median times and ratios (peer / dopt; floor / dopt). Peers are optional:
``pip install -c constraints.txt -e '.[bench]'``.

    python benchmarks/perturbed.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

SIGMA = 0.5
REPEAT = 20
WARMUP = 3


def _jax_steps(batch: int, dim: int, samples: int, sigma: float = SIGMA, names: tuple[str, ...] | None = None
               ) -> dict[str, Any]:
    """name -> (compiled program, its arguments): ``dopt``, ``floor``, and the peers installed
    (``jaxopt``, ``optax``); only ``names`` are compiled (default: all)."""
    import jax
    import jax.numpy as jnp

    import dopt_jax as dj

    theta = jax.random.normal(jax.random.key(0), (batch, dim))
    g = jax.random.normal(jax.random.key(1), (batch, dim))
    key = jax.random.key(2)
    f = dj.perturbed(dj.solvers.argmax, sigma=sigma, num_samples=samples, noise="gumbel")

    @jax.jit
    def dopt_step(t: Any, k: Any) -> Any:
        y, pull = jax.vjp(lambda u: f(u, rng=k), t)
        return y, pull(g)[0]

    @jax.jit
    def floor(t: Any, k: Any) -> Any:  # the least any estimator must do: draw, perturb, max
        z = -jnp.log(jax.random.exponential(k, (samples, *t.shape), t.dtype))  # dopt's Gumbel draw
        # a max-reduce, not jnp.argmax: XLA's CPU backend runs argmax's variadic (value, index)
        # reduce about 5x slower than a max (25 ms against 5 ms here), and every arg-max
        # has to find the maximum; the VJP's second pass over the noise is not counted
        return jnp.max(t + sigma * z, axis=-1)

    out: dict[str, Any] = {"dopt": (dopt_step, (theta, key)), "floor": (floor, (theta, key))}

    def one_hot_argmax(t: Any) -> Any:
        return jax.nn.one_hot(jnp.argmax(t), t.shape[-1])

    keys = jax.random.split(key, batch)
    if H.missing("jaxopt") is None:
        from jaxopt import perturbations as jp

        pert = jp.make_perturbed_argmax(one_hot_argmax, num_samples=samples, sigma=sigma, noise=jp.Gumbel())

        @jax.jit
        def jaxopt_step(t: Any, ks: Any) -> Any:
            y, pull = jax.vjp(lambda u: jax.vmap(pert)(u, ks), t)
            return y, pull(g)[0]

        out["jaxopt"] = (jaxopt_step, (theta, keys))
    op = None
    if H.missing("optax") is None:
        try:
            from optax import perturbations as op
        except ImportError:
            op = None
    if op is not None and hasattr(op, "make_perturbed_fun"):
        pert2 = op.make_perturbed_fun(one_hot_argmax, num_samples=samples, sigma=sigma, noise=op.Gumbel())

        @jax.jit
        def optax_step(t: Any, ks: Any) -> Any:
            y, pull = jax.vjp(lambda u: jax.vmap(pert2)(ks, u), t)
            return y, pull(g)[0]

        out["optax"] = (optax_step, (theta, keys))
    return {k: _compile(*v) for k, v in out.items() if names is None or k in names}


def _compile(fn: Any, args: Any) -> tuple[Any, Any]:
    """(compiled program, its arguments): compiled once, for the timing and XLA's memory count."""
    return H.compiled(fn, *args), args


def _ready(fn: Any, args: Any) -> Any:
    import jax

    return lambda: jax.block_until_ready(fn(*args))


def _torch_steps(batch: int, dim: int, samples: int, sigma: float = SIGMA) -> dict[str, Any]:
    """name -> step: dopt's value + VJP (torch, float32) and the floor."""
    import torch

    import dopt_torch as dt

    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(batch, dim, generator=gen)
    g = torch.randn(batch, dim, generator=gen)
    f = dt.perturbed(dt.solvers.argmax, sigma=sigma, num_samples=samples, noise="gumbel")

    def dopt_step() -> None:
        t = theta.detach().requires_grad_(True)
        f(t, rng=gen).backward(g)

    def floor() -> None:  # draw the Gumbel noise, perturb, one argmax over (M, B, n)
        z = -torch.log(torch.empty(samples, batch, dim).exponential_(generator=gen))
        torch.argmax(theta + sigma * z, dim=-1)

    return {"dopt": dopt_step, "floor": floor}


def rows_jax(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """JAX perturbed argmax, value + VJP, jitted: dopt, floor, jaxopt, optax."""
    if (why := H.missing("jax")) is not None:
        return [H.skipped("perturbed_jax", "-", "dopt jax", why, role="dopt")]
    batch, dim, samples = (32, 20, 10) if quick else (128, 100, 100)
    case = f"B{batch} d{dim} M{samples}"
    steps = _jax_steps(batch, dim, samples)
    names = list(steps)
    times = H.timed([_ready(*steps[n]) for n in names], stat=stat,
                    repeat=5 if quick else REPEAT, warmup=WARMUP, min_time=0.005)
    out = []
    for n, t in zip(names, times, strict=True):
        role = "dopt" if n == "dopt" else ("floor" if n == "floor" else "peer")
        label = {"dopt": "dopt jax (jit)", "floor": "floor: noise + one max-reduce",
                 "jaxopt": "jaxopt make_perturbed_argmax (vmap)",
                 "optax": "optax make_perturbed_fun (vmap)"}[n]
        out.append(H.Row("perturbed_jax", case, label, role=role, seconds=t,
                         memory_bytes=H.xla_bytes(steps[n][0]), memory_kind="xla"))
    for peer, label in (("jaxopt", "jaxopt make_perturbed_argmax (vmap)"),
                        ("optax", "optax make_perturbed_fun (vmap)")):
        if peer not in steps:
            out.append(H.skipped("perturbed_jax", case, label, H.missing(peer) or "no make_perturbed_fun"))
    return out


def rows_torch(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """torch perturbed argmax, value + VJP: dopt (eager) vs jaxopt's jitted time, alternating."""
    if (why := H.missing("torch")) is not None:
        return [H.skipped("perturbed_torch", "-", "dopt torch", why, role="dopt")]
    batch, dim, samples = (32, 20, 10) if quick else (128, 100, 100)
    case = f"B{batch} d{dim} M{samples}"
    ts = _torch_steps(batch, dim, samples)
    fns, names = [ts["dopt"], ts["floor"]], ["dopt torch", "floor: torch noise + one argmax"]
    peer_why = H.missing("jax", "jaxopt")
    if peer_why is None:
        js = _jax_steps(batch, dim, samples, names=("jaxopt",))
        fns.append(_ready(*js["jaxopt"]))
        names.append("jaxopt make_perturbed_argmax (jit)")
    times = H.timed(fns, stat=stat, repeat=5 if quick else REPEAT, warmup=WARMUP, min_time=0.005)
    out = [
        H.Row("perturbed_torch", case, names[0], seconds=times[0],
              memory_bytes=H.saved_bytes(ts["dopt"]), memory_kind="saved"),
        H.Row("perturbed_torch", case, names[1], role="floor", seconds=times[1],
              memory_bytes=0.0, memory_kind="saved"),
    ]
    if peer_why is None:
        out.append(H.Row("perturbed_torch", case, names[2], role="peer", seconds=times[2],
                         memory_bytes=H.xla_bytes(js["jaxopt"][0]), memory_kind="xla"))
    else:
        out.append(H.skipped("perturbed_torch", case, "jaxopt make_perturbed_argmax (jit)", peer_why))
    return out


def _pfyl_dopt(batch: int, samples: int, sigma: float) -> tuple[Any, Any]:
    import torch

    import dopt_core as dc
    import dopt_torch as dt

    grid = (5, 5)
    x, c = dc.data.shortest_path(batch, 5, grid, deg=4, noise_width=0.5, seed=1)
    solver = functools.partial(dt.solvers.shortest_path_dag, grid=grid)
    y = torch.tensor(solver(-c))
    model = torch.nn.Linear(5, 40).double()
    X = torch.tensor(x)
    loss_fn = dt.nn.FenchelYoungLoss(solver, sigma=sigma, num_samples=samples, seed=0)

    def dopt_step() -> None:
        model.zero_grad()
        loss_fn(-model(X), y).backward()

    def floor() -> None:
        z = torch.randn(samples, batch, 40, dtype=torch.float64)
        solver(-model(X).detach() + sigma * z)

    return dopt_step, floor


def _pfyl_pyepo(batch: int, samples: int, sigma: float) -> Any:
    import numpy as np
    import pyepo
    import torch

    import dopt_core as dc

    grid = (5, 5)
    x, c = dc.data.shortest_path(batch, 5, grid, deg=4, noise_width=0.5, seed=1)
    optmodel = pyepo.model.grb.shortestPathModel(grid)
    pfy = pyepo.func.perturbedFenchelYoung(optmodel, n_samples=samples, sigma=sigma, processes=1)
    w_true = []
    for ci in c:
        optmodel.setObj(ci)
        w, _ = optmodel.solve()
        w_true.append(w)
    W = torch.tensor(np.array(w_true), dtype=torch.float32)
    model32 = torch.nn.Linear(5, 40)
    X32 = torch.tensor(x).float()

    def pyepo_step() -> None:
        model32.zero_grad()
        pfy(model32(X32), W).backward()

    return pyepo_step


def rows_pfyl(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """torch PFYL training step on 5×5 shortest paths: dopt vs PyEPO + Gurobi, and the floor."""
    if (why := H.missing("torch")) is not None:
        return [H.skipped("pfyl", "-", "dopt torch", why, role="dopt")]
    batch, samples, sigma = (8, 4, 1.0) if quick else (32, 10, 1.0)
    case = f"5x5 B{batch} M{samples}"
    dopt_step, floor = _pfyl_dopt(batch, samples, sigma)
    fns = [dopt_step, floor]
    peer_why = H.missing("pyepo", "gurobipy")
    if peer_why is None:
        fns.append(_pfyl_pyepo(batch, samples, sigma))
    # PyEPO's step is ~100x dopt's: fewer rounds, all alternating
    times = H.timed(fns, stat=stat, repeat=3 if quick else 7, warmup=1)
    out = [
        H.Row("pfyl", case, "dopt (batched DP solver)", seconds=times[0],
              memory_bytes=H.saved_bytes(dopt_step), memory_kind="saved"),
        H.Row("pfyl", case, "floor: noise + one batched solve", role="floor", seconds=times[1],
              memory_bytes=0.0, memory_kind="saved"),
    ]
    if peer_why is None:
        out.append(H.Row("pfyl", case, "PyEPO perturbedFenchelYoung (Gurobi)", role="peer",
                         seconds=times[2], memory_bytes=H.saved_bytes(fns[2]), memory_kind="saved"))
    else:
        out.append(H.skipped("pfyl", case, "PyEPO perturbedFenchelYoung (Gurobi)", peer_why))
    return out


def rows_scaling(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """Time against the number of samples (batch 128) and against the batch (M = 100),
    dim 100: dopt torch, dopt JAX (jit), jaxopt (jit); one case per size."""
    dim = 20 if quick else 100
    Ms = [10, 30] if quick else [10, 30, 100, 300]
    Bs = [16, 32] if quick else [16, 64, 256, 1024]
    shapes = [("samples", 32 if quick else 128, m) for m in Ms]
    shapes += [("batch", b, 10 if quick else 100) for b in Bs]
    have_torch, have_jax = H.missing("torch") is None, H.missing("jax") is None
    have_jaxopt = have_jax and H.missing("jaxopt") is None and not quick  # quick: fewer compilations
    out = []
    for axis, batch, samples in shapes:
        case = f"{axis}: B{batch} M{samples}"
        fns, names, mems = [], [], []
        if have_torch:
            step = _torch_steps(batch, dim, samples)["dopt"]
            fns.append(step)
            names.append("dopt torch")
            mems.append((H.saved_bytes(step), "saved"))
        if have_jax:
            js = _jax_steps(batch, dim, samples, names=("dopt", "jaxopt") if have_jaxopt else ("dopt",))
            keep = ["dopt"] + (["jaxopt"] if have_jaxopt else [])
            for n in keep:
                fns.append(_ready(*js[n]))
                names.append("dopt jax (jit)" if n == "dopt" else "jaxopt (jit)")
                mems.append((H.xla_bytes(js[n][0]), "xla"))
        times = H.timed(fns, stat=stat, repeat=3, warmup=1)
        for n, t, (m, kind) in zip(names, times, mems, strict=True):
            out.append(H.Row("perturbed_scaling", case, n, role="peer" if n.startswith("jaxopt") else "dopt",
                             seconds=t, memory_bytes=m, memory_kind=kind, ref="dopt jax (jit)" if n.startswith("jaxopt") else None,
                             params={"axis": axis, "batch": batch, "num_samples": samples, "dim": dim}))
        if not have_jaxopt:
            why = H.missing("jax", "jaxopt") or "not run with --quick (compilation time)"
            out.append(H.skipped("perturbed_scaling", case, "jaxopt (jit)", why))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    args = ap.parse_args()
    print(f"threads: {H.pin_threads()}")
    rows = rows_jax(args.quick) + rows_torch(args.quick) + rows_pfyl(args.quick)
    H.print_rows(H.fill_ratios(rows))


if __name__ == "__main__":
    main()
