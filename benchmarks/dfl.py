"""Per-step time of dopt's decision-focused-learning losses against PyEPO's (run by hand).

One training step — ``model.zero_grad()``, a linear model ``Linear(5, 40)`` on a batch
of 32 feature vectors, the loss, ``backward()`` — on PyEPO's 5×5 shortest-path
benchmark (``deg=4``, noise half-width 0.5), float64, **one CPU thread** on both
sides (``torch.set_num_threads(1)``; PyEPO with ``processes=1``: on a shared machine
a second OpenMP thread made every step several times slower and the timings
meaningless). Each row is the median of ``REPEAT`` steps.

What each side does per step
----------------------------
* **AI-MLE** (10 samples, sum-of-Gamma noise with κ = 5, PyEPO's default, σ = 1):
  dopt draws the 10×32×40 noise and solves all 320 perturbed instances in **one**
  call of its batched DP solver (``dopt_torch.solvers.shortest_path_dag``), and once
  more in the backward pass; PyEPO solves the same 320 + 320 instances with Gurobi,
  one by one (``shortestPathModel``).
* **PG back / central** (σ = 0.1): 1 (back) or 2 (central) batched solves of 32
  instances in the backward pass of the forward solve; PyEPO the same with Gurobi.
* **NCE, CMAP, LTR pointwise / pairwise / listwise**, solve ratio 5 %: PyEPO solves
  the **whole batch** with probability 0.05 per step and otherwise only scores the pool,
  so a median hides its solves. Both sides are therefore timed like for like on two
  kinds of step — *no solve* (score the current pool; PyEPO with ``solve_ratio=0``)
  and *solve* (solve the 32 instances, add the new solutions to the pool, score it;
  PyEPO with ``solve_ratio=1``) — and the row is the expected cost per step,
  ``0.95·t_no_solve + 0.05·t_solve``. The pools start from the same 1000 training
  solutions (70 distinct paths on the 5×5 grid) and stay the same size.
  ``dopt native`` is dopt's own schedule (``SolutionPool.update(solve_ratio=0.05)``:
  round(5 % × 32) = 2 instances solved every step), for reference.
* **RFY** (λ = 1, 10 Frank-Wolfe steps, tol 1e-4): one batched oracle call per
  Frank-Wolfe step (dopt: pairwise steps; PyEPO: away steps, Gurobi per instance).
* **CaVE-E / CaVE+**: the cone projection of the predicted cost onto the binding
  normals of each true path; dopt exactly by NNLS (CaVE-E, SciPy, per instance on the
  host, on the 32 one-sided rows ``-e_j`` in the 16-dimensional complement of the
  flow-conservation rows, which bind with both signs — one SVD for the batch) or by 20
  accelerated projected-gradient steps on the device (CaVE+); PyEPO by
  Clarabel per instance, to convergence (``max_iter=100``, CaVE-E) or truncated at its
  default 3 interior-point iterations (CaVE+). No solver call on either side.

Floor rows (same run): the plain torch step (the linear model and a ``sum`` loss), the
solver calls alone — dopt's batched DP on 32 and on 320 instances, PyEPO's Gurobi
solve of 32 instances — and AI-MLE's sum-of-Gamma noise draw (10×32×40 values, 10
Gamma(1/κ) terms each; dopt through NumPy's sampler, PyEPO through torch's), which
bound what any loss built on them can reach: AI-MLE costs at least one noise draw and
two solves of 320 instances, RFY 11 solves of 32, the pool losses a torch step.

Measured (2 cores shared with other jobs, runs without a load spike; dopt ms, ratio
to PyEPO): AI-MLE 5.4–5.7 ms (7–11×; its noise draw alone is 3.4–3.8 ms), PG 0.5–0.6
ms (7–10×), RFY 4.8–5.9 ms (6–7×), CaVE-E 2.7–3.3 ms (8–12×), CaVE+ 2.5–3.1 ms
(5–8×), the pool losses 0.2–0.45 ms (0.7–1.8×: PyEPO's no-solve step, 95 % of the
steps, is 0.12–0.25 ms, 3–5 torch steps); the DP solve of 32 instances 0.17–0.21 ms
against Gurobi's 1.8–2.0 ms. A load spike from other jobs can triple a whole run: compare
runs made under the same load.

PyEPO is optional and kept out of the project's install: run with a separate venv
holding ``pyepo`` and ``gurobipy`` (size-limited licence), e.g.
``PYTHONPATH=. /path/to/benchvenv/bin/python benchmarks/dfl.py``. Without it only the
dopt column is printed. Target (issue 18): ≥ 20× per step.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

if __name__ == "__main__":
    H.pin_threads()  # before NumPy loads (the runner pins before importing this module)

import numpy as np  # noqa: E402

import dopt_core as dc  # noqa: E402

GRID = (5, 5)
BATCH = 32
RATIO = 0.05
REPEAT = 25
POOLED = ("NCE", "CMAP", "LTR pointwise", "LTR pairwise", "LTR listwise")


def timeit(fn: Callable[[], Any], *, repeat: int = REPEAT, warmup: int = 3) -> float:
    """Median of ``repeat`` calls after ``warmup`` calls."""
    return H.timed([fn], stat="median", repeat=repeat, warmup=warmup)[0]


def _data() -> tuple[np.ndarray, np.ndarray]:
    return dc.data.shortest_path(1000, 5, GRID, deg=4, noise_width=0.5, seed=1)


def dopt_steps() -> dict[str, Callable[[], None]]:
    import torch

    import dopt_torch as dt

    solver = functools.partial(dt.solvers.shortest_path_dag, grid=GRID)
    x, c = _data()
    X = torch.tensor(x[:BATCH], dtype=torch.float64)
    C = torch.tensor(c[:BATCH], dtype=torch.float64)
    Y_all = solver(-torch.tensor(c))
    Y = Y_all[:BATCH]
    normals = dt.shortest_path_normals(Y, GRID)
    model = torch.nn.Linear(5, 40).double()
    pool = dt.SolutionPool(Y_all)
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    aimle = dt.aimle(solver, num_samples=10, kappa=5.0)
    pg = dt.perturbation_gradient_loss(solver, sigma=0.1)
    pgc = dt.perturbation_gradient_loss(solver, sigma=0.1, two_sided=True)
    rfy = dt.regularized_fenchel_young_loss(solver, lam=1.0, max_iter=10, tol=1e-4)
    pool_losses: dict[str, tuple[Callable[..., Any], Any, dict[str, Any]]] = {
        "NCE": (dt.nce_loss, Y, {}),
        "CMAP": (dt.cmap_loss, Y, {}),
        "LTR pointwise": (dt.ltr_loss, -C, {"kind": "pointwise"}),
        "LTR pairwise": (dt.ltr_loss, -C, {"kind": "pairwise"}),
        "LTR listwise": (dt.ltr_loss, -C, {"kind": "listwise"}),
    }

    def pooled(name: str, ratio: float | None) -> Callable[[Any], Any]:
        fn, target, kw = pool_losses[name]

        def loss(theta: Any) -> Any:
            if ratio is not None:
                pool.update(theta.detach(), solver, solve_ratio=ratio, rng=rng)
            return fn(theta, target, pool, **kw)

        return loss

    losses: dict[str, Callable[[Any], Any]] = {
        "AI-MLE": lambda t: ((aimle(t, rng=gen) - Y) ** 2).sum(),
        "PG back": lambda t: pg(t, -C),
        "PG central": lambda t: pgc(t, -C),
    }
    for name in POOLED:
        losses[f"{name}/no solve"] = pooled(name, None)
        losses[f"{name}/solve"] = pooled(name, 1.0)
    losses["NCE (dopt native)"] = pooled("NCE", RATIO)
    losses["RFY (10 FW steps)"] = lambda t: rfy(t, Y)
    losses["CaVE-E"] = lambda t: dt.cave_loss(t, normals)
    losses["CaVE+"] = lambda t: dt.cave_loss(t, normals, method="pgd")
    losses["floor: torch step"] = lambda t: t.sum()

    def step(loss: Callable[[Any], Any]) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad()
            loss(-model(X)).backward()

        return run

    out = {name: step(loss) for name, loss in losses.items()}
    theta32 = -torch.tensor(c[:BATCH])
    theta320 = -torch.tensor(c[: 10 * BATCH])
    out["floor: solver, 32"] = lambda: solver(theta32)
    out["floor: solver, 320"] = lambda: solver(theta320)
    sog, like = dc.noise.SumOfGamma(5.0, 10), torch.zeros(1, dtype=torch.float64)
    backend = dc.backend_for(like)
    out["floor: SoG noise 10x32x40"] = lambda: backend.sample(sog, gen, (10, BATCH, 40), like=like)
    return out


def pyepo_steps() -> dict[str, Callable[[], None]] | None:
    """PyEPO's modules on the same step (only where PyEPO and Gurobi are installed)."""
    if H.missing("pyepo", "gurobipy") is not None:
        return None
    import pyepo  # type: ignore[import-not-found]
    import torch
    from pyepo.data.dataset import collate_tight_constraints, optDatasetConstrs  # type: ignore[import-not-found]
    from pyepo.func.utils import sumGammaDistribution  # type: ignore[import-not-found]

    x, c = _data()
    optmodel = pyepo.model.grb.shortestPathModel(GRID)
    data = pyepo.data.dataset.optDataset(optmodel, x, c)
    constrs = optDatasetConstrs(optmodel, x[:BATCH], c[:BATCH])
    ctrs = collate_tight_constraints([constrs[i] for i in range(BATCH)])[-1].double()
    X = torch.tensor(x[:BATCH], dtype=torch.float64)
    C = torch.tensor(c[:BATCH], dtype=torch.float64)
    W = torch.tensor(np.asarray(data.sols[:BATCH]), dtype=torch.float64)
    model = torch.nn.Linear(5, 40).double()
    f = pyepo.func
    sog = sumGammaDistribution(kappa=5.0)
    mods: dict[str, tuple[Any, Callable[[Any, Any], Any]]] = {
        "AI-MLE": (f.adaptiveImplicitMLE(optmodel, n_samples=10, sigma=1.0, distribution=sog),
                   lambda m, cp: ((m(cp) - W) ** 2).sum()),
        "PG back": (f.perturbationGradient(optmodel, sigma=0.1), lambda m, cp: m(cp, C)),
        "PG central": (f.perturbationGradient(optmodel, sigma=0.1, two_sides=True), lambda m, cp: m(cp, C)),
    }
    pool_mods = {
        "NCE": (f.NCE, lambda m, cp: m(cp, W)),
        "CMAP": (f.contrastiveMAP, lambda m, cp: m(cp, W)),
        "LTR pointwise": (f.pointwiseLearningToRank, lambda m, cp: m(cp, C)),
        "LTR pairwise": (f.pairwiseLearningToRank, lambda m, cp: m(cp, C)),
        "LTR listwise": (f.listwiseLearningToRank, lambda m, cp: m(cp, C)),
    }
    for name, (cls, call) in pool_mods.items():
        mods[f"{name}/no solve"] = (cls(optmodel, solve_ratio=0.0, dataset=data), call)
        mods[f"{name}/solve"] = (cls(optmodel, solve_ratio=1.0, dataset=data), call)
    mods["RFY (10 FW steps)"] = (f.RFY(optmodel, lambd=1.0, max_iter=10, tol=1e-4), lambda m, cp: m(cp, W))
    mods["CaVE-E"] = (f.CaVE(optmodel, max_iter=100), lambda m, cp: m(cp, ctrs))
    mods["CaVE+"] = (f.CaVE(optmodel, max_iter=3), lambda m, cp: m(cp, ctrs))
    mods["floor: torch step"] = (None, lambda m, cp: cp.sum())
    out: dict[str, Callable[[], None]] = {}
    for name, (mod, call) in mods.items():
        def run(mod: Any = mod, call: Any = call) -> None:
            model.zero_grad()
            call(mod, model(X)).backward()

        out[name] = run
    solve = pyepo.func.utils._solve_batch
    out["floor: solver, 32"] = lambda: solve(C, optmodel, 1, None)
    out["floor: SoG noise 10x32x40"] = lambda: sog.sample(size=(BATCH, 10, 40), device=C.device,
                                                          dtype=C.dtype)
    return out


def _amortise(times: dict[str, float]) -> dict[str, float]:
    out = dict(times)
    for name in POOLED:
        if f"{name}/no solve" in times and f"{name}/solve" in times:
            out[name] = (1 - RATIO) * times[f"{name}/no solve"] + RATIO * times[f"{name}/solve"]
    return out


def rows(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """Every loss's training step: dopt and PyEPO alternating, the pool losses amortised."""
    if (why := H.missing("torch")) is not None:
        return [H.skipped("dfl", "-", "dopt", why, role="dopt")]
    ours = dopt_steps()
    peer_why = H.missing("pyepo", "gurobipy")
    peers = pyepo_steps() if peer_why is None else {}
    t_ours: dict[str, float] = {}
    t_peer: dict[str, float] = {}
    mem_ours: dict[str, float] = {}
    mem_peer: dict[str, float] = {}
    for name, fn in ours.items():
        fns = [fn] + ([peers[name]] if peers and name in peers else [])
        times = H.timed(fns, stat=stat, repeat=3 if quick else REPEAT, warmup=1 if quick else 3)
        t_ours[name] = times[0]
        mem_ours[name] = float(H.saved_bytes(fn))
        if len(times) > 1:
            t_peer[name] = times[1]
            mem_peer[name] = float(H.saved_bytes(peers[name]))
    for name in peers.keys() - ours.keys():  # peer-only floors (PyEPO's solver, its noise)
        t_peer[name] = H.timed([peers[name]], stat=stat, repeat=3 if quick else REPEAT, warmup=1)[0]
        mem_peer[name] = float(H.saved_bytes(peers[name]))
    t_ours, t_peer = _amortise(t_ours), _amortise(t_peer)
    for mem in (mem_ours, mem_peer):  # an amortised step's memory: the larger of its two kinds
        for name in POOLED:
            if f"{name}/solve" in mem:
                mem[name] = max(mem[f"{name}/no solve"], mem[f"{name}/solve"])
    order = []
    for name in t_ours:  # each amortised pool loss first, then its two kinds of step
        if name.endswith("/no solve"):
            order.append(name.split("/")[0])
        if name not in order:
            order.append(name)
    out = []
    for name in order:
        role = "floor" if name.startswith("floor") else "dopt"
        case = name.split("/")[0] if name.split("/")[0] in POOLED else name
        impl = "dopt" + (f" {name.split('/')[1]}" if "/" in name else "")
        out.append(H.Row("dfl", case, impl, role="dopt" if role == "dopt" else "floor", seconds=t_ours[name],
                         memory_bytes=mem_ours.get(name, float("nan")), memory_kind="saved",
                         ref=None if "/" not in name else "dopt"))
        if name in t_peer:
            impl = "PyEPO (Gurobi)" + (f" {name.split('/')[1]}" if "/" in name else "")
            out.append(H.Row("dfl", case, impl, role="peer" if role == "dopt" else "floor",
                             seconds=t_peer[name], memory_bytes=mem_peer.get(name, float("nan")),
                             memory_kind="saved", ref=None if role == "floor" else out[-1].impl))
        elif not name.startswith("floor") and "/" not in name and name != "NCE (dopt native)":
            out.append(H.skipped("dfl", case, "PyEPO (Gurobi)", peer_why or "no PyEPO counterpart"))
    return out


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print(f"one training step, 5x5 shortest path, batch {BATCH}, float64, 1 CPU thread "
          f"(median of {REPEAT}); pool losses: {1 - RATIO:.2f}·no-solve + {RATIO:.2f}·solve step")
    ours = _amortise({name: timeit(fn) for name, fn in dopt_steps().items()})
    peers = pyepo_steps()
    theirs = {} if peers is None else _amortise({name: timeit(fn) for name, fn in peers.items()})
    print(f"{'method':<24} {'dopt ms':>9} {'PyEPO ms':>9} {'ratio':>7}")
    order = [n for n in ours if "/" not in n and not n.startswith("floor")]
    order = order[:3] + list(POOLED) + [n for n in order[3:] if n not in POOLED]
    order += [n for n in ours if "/" in n] + [n for n in ours if n.startswith("floor")]
    for name in order:
        t, p = ours[name], theirs.get(name)
        extra = f"{p * 1e3:>9.2f} {p / t:>6.1f}x" if p is not None else f"{'—':>9} {'':>7}"
        print(f"{name:<24} {t * 1e3:>9.2f} {extra}")
    if peers is None:
        print("(PyEPO or gurobipy not installed: no peer column)")


if __name__ == "__main__":
    main()
