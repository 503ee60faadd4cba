"""Speed and memory of the subset ops (run by hand; ratios from one run).

    python benchmarks/subsets.py [--quick]

1. ``relaxed_subset`` forward + backward, torch CPU float32, B = 128, n = 1000, k = 10:
   dopt (explicit VJP, keys as the only residual, rounds recomputed backward) vs the
   same formula in plain torch autograd (the reference code's form, which stores
   every round), and the floor: the formula's forward alone without autograd. Keeping
   only the keys means replaying the rounds backward (here: a checkpoint pass and a
   segment pass, ``s = ⌊√k⌋``), so dopt's step costs at least two forwards, while
   autograd's costs one forward and a backward about as long: the issue's 1.5× speed-up
   and its 1/4 memory bound cannot both hold for this recursion. Time ratio (best of interleaved runs) and peak extra memory, each
   measured in a fresh subprocess as the growth of the peak resident set during one
   forward + backward, plus the bytes autograd saves for backward.
2. ``k_subset_marginals`` on NumPy, float64, n = 1000, k = 50, a batch of 128: ms per
   call (forward, and forward + VJP through ``value_and_vjp``). The tilted, grouped
   computation of ``dopt_core/relax/_k_subsets.py``; the log-space recursion it
   replaced took 297-387 ms and 770-802 ms on the same machine (2026-12-02).

Threads are pinned to 1 so that the numbers do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

if __name__ == "__main__":
    H.pin_threads()  # before NumPy loads (the runner pins before importing this module)

import numpy as np  # noqa: E402


def _reference(theta, noise, k: int, tau: float):  # type: ignore[no-untyped-def]
    import torch

    alpha = theta + noise
    tiny = torch.finfo(theta.dtype).tiny
    out = torch.zeros_like(theta)
    for _ in range(k):
        a = torch.softmax(alpha / tau, dim=-1)
        out = out + a
        alpha = alpha + torch.log(torch.clamp(1 - a, min=tiny))
    return out


def _step(which: str, B: int, n: int, k: int, tau: float) -> Callable[[], None]:
    import torch

    import dopt_core as dc
    import dopt_torch  # noqa: F401 - registers the torch backend

    torch.manual_seed(0)
    theta = torch.randn(B, n)
    noise = -torch.log(torch.empty(B, n).exponential_())
    ct = torch.randn(B, n)

    def step() -> None:
        if which == "forward":  # the floor: the formula's forward alone, no autograd
            with torch.no_grad():
                _reference(theta, noise, k, tau)
            return
        t = theta.detach().requires_grad_(True)
        if which == "dopt":
            y = dc.relax.relaxed_subset(t, k, tau=tau, noise=noise)
        else:
            y = _reference(t, noise, k, tau)
        (y * ct).sum().backward()

    return step


def _saved(which: str, B: int, n: int, k: int, tau: float) -> int:
    """Bytes autograd saves for backward in one step (the harness's rule)."""
    return H.saved_bytes(_step(which, B, n, k, tau))


def _memory(which: str, B: int, n: int, k: int, tau: float) -> dict[str, float]:
    """Peak RSS growth of one forward + backward in a fresh process (a small call first
    initialises torch's lazy state without touching the peak), and the saved bytes."""
    kib = H.child_peak_kib("benchmarks.subsets:_step", which, B, n, k, tau, warm=[which, 2, 16, 2, tau])
    return {"peak_kib": kib, "saved": _saved(which, B, n, k, tau)}


def _time_pair(fns: list[Callable[[], None]], repeat: int) -> list[float]:
    return H.timed(fns, stat="best", repeat=repeat, warmup=1)


def _marginal_steps(Bm: int, nm: int, km: int) -> tuple[Callable[[], None], Callable[[], None]]:
    import dopt_core as dc

    rng = np.random.default_rng(0)
    theta = rng.normal(size=(Bm, nm))
    ct = rng.normal(size=(Bm, nm))
    f = dc.relax.k_subset_marginals

    def fwd() -> None:
        f(theta, km)

    def fwd_vjp() -> None:
        _, vjp = dc.value_and_vjp(f, theta, km)
        vjp(ct)

    return fwd, fwd_vjp


def rows(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """relaxed_subset (torch) vs plain autograd and the forward floor; k_subset_marginals (NumPy)."""
    out: list[H.Row] = []
    if (why := H.missing("torch")) is not None:
        out.append(H.skipped("subsets", "relaxed_subset", "dopt", why, role="dopt"))
    else:
        B, n, k, tau = (16, 200, 5, 0.5) if quick else (128, 1000, 10, 0.5)
        case = f"relaxed_subset B{B} n{n} k{k}"
        names = [("dopt", "dopt", "dopt"), ("ref", "plain torch autograd", "peer"),
                 ("forward", "floor: forward alone (no autograd)", "floor")]
        times = H.timed([_step(w, B, n, k, tau) for w, _, _ in names], stat=stat,
                        repeat=3 if quick else 10, warmup=1, min_time=0.01)
        for (w, label, role), t in zip(names, times, strict=True):
            params: dict[str, float] = {}
            if not quick and w != "forward":  # a child process per row: not in a smoke run
                params["peak_rss_kib"] = H.child_peak_kib(
                    "benchmarks.subsets:_step", w, B, n, k, tau, warm=[w, 2, 16, 2, tau])
            out.append(H.Row("subsets", case, label, role=role, seconds=t, params=params,
                             memory_bytes=float(_saved(w, B, n, k, tau)) if w != "forward" else 0.0,
                             memory_kind="saved"))
    Bm, nm, km = (16, 200, 10) if quick else (128, 1000, 50)
    case = f"k_subset_marginals B{Bm} n{nm} k{km}"
    fwd, fwd_vjp = _marginal_steps(Bm, nm, km)
    t_f, t_fv = H.timed([fwd, fwd_vjp], stat=stat, repeat=3 if quick else 5, warmup=1, min_time=0.01)
    out.append(H.Row("subsets", case, "dopt numpy forward", seconds=t_f,
                     memory_bytes=float(H.traced_peak(fwd)), memory_kind="tracemalloc"))
    out.append(H.Row("subsets", case, "dopt numpy forward + VJP", seconds=t_fv, ref="dopt numpy forward",
                     memory_bytes=float(H.traced_peak(fwd_vjp)), memory_kind="tracemalloc"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    H.pin_threads()
    B, n, k, tau = (16, 200, 5, 0.5) if args.quick else (128, 1000, 10, 0.5)
    repeat = 3 if args.quick else 10
    t_dopt, t_ref, t_fwd = _time_pair(
        [_step("dopt", B, n, k, tau), _step("ref", B, n, k, tau), _step("forward", B, n, k, tau)], repeat
    )
    m_dopt, m_ref = _memory("dopt", B, n, k, tau), _memory("ref", B, n, k, tau)
    print(f"relaxed_subset fwd+bwd  B={B} n={n} k={k} float32 torch-cpu (1 thread)")
    print(f"  dopt {t_dopt * 1e3:8.2f} ms   plain autograd {t_ref * 1e3:8.2f} ms   "
          f"speed-up x{t_ref / t_dopt:.2f}")
    print(f"  floor: the forward alone (no autograd) {t_fwd * 1e3:.2f} ms; a VJP that keeps only the "
          f"keys replays the k rounds, so dopt's step is at least two forwards: speed-up at most "
          f"x{t_ref / (2 * t_fwd):.2f}")
    print(f"  peak extra memory: dopt {m_dopt['peak_kib'] / 1024:.1f} MiB, autograd "
          f"{m_ref['peak_kib'] / 1024:.1f} MiB, ratio {m_dopt['peak_kib'] / max(m_ref['peak_kib'], 1):.3f}")
    print(f"  saved for backward: dopt {m_dopt['saved'] / 2**20:.2f} MiB, autograd "
          f"{m_ref['saved'] / 2**20:.2f} MiB, ratio {m_dopt['saved'] / max(m_ref['saved'], 1):.3f}")

    Bm, nm, km = (16, 200, 10) if args.quick else (128, 1000, 50)
    fwd, fwd_vjp = _marginal_steps(Bm, nm, km)
    t_f, t_fv = _time_pair([fwd, fwd_vjp], 3 if args.quick else 5)
    print(f"k_subset_marginals numpy float64 B={Bm} n={nm} k={km}")
    print(f"  forward {t_f * 1e3:.1f} ms per batch (target 5 ms: ratio {t_f / 5e-3:.1f}x);"
          f" forward + VJP {t_fv * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
