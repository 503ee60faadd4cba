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
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


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


def _saved_bytes(which: str, B: int, n: int, k: int, tau: float) -> int:
    import torch

    import dopt_core as dc

    theta = torch.randn(B, n, requires_grad=True)
    noise = -torch.log(torch.empty(B, n).exponential_())
    total = [0]
    seen: set[int] = set()

    def pack(x):  # type: ignore[no-untyped-def]
        key = x.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total[0] += x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        if which == "dopt":
            dc.relax.relaxed_subset(theta, k, tau=tau, noise=noise)
        else:
            _reference(theta, noise, k, tau)
    return total[0]


def _child(which: str, B: int, n: int, k: int, tau: float) -> None:
    """Peak RSS growth of one forward + backward (fresh process: nothing cached)."""
    import torch

    torch.set_num_threads(1)
    step = _step(which, B, n, k, tau)
    # a small call first initialises torch's lazy state without touching the peak
    _step(which, 2, 16, 2, tau)()
    # writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one;
    # the parent sets a low mmap threshold so that freed arrays leave the resident set
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_kib": peak - base, "saved": _saved_bytes(which, B, n, k, tau)}))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def _time_pair(fns: list[Callable[[], None]], repeat: int) -> list[float]:
    best = [np.inf] * len(fns)
    for fn in fns:
        fn()
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def _memory(which: str, B: int, n: int, k: int, tau: float) -> dict[str, int]:
    cmd = [sys.executable, __file__, "--child", which, str(B), str(n), str(k), str(tau)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=5)
    args = parser.parse_args()
    if args.child:
        w, B, n, k, tau = args.child
        _child(w, int(B), int(n), int(k), float(tau))
        return

    import torch

    import dopt_core as dc

    torch.set_num_threads(1)
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
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(Bm, nm))
    ct = rng.normal(size=(Bm, nm))
    f = dc.relax.k_subset_marginals

    def fwd() -> None:
        f(theta, km)

    def fwd_vjp() -> None:
        _, vjp = dc.value_and_vjp(f, theta, km)
        vjp(ct)

    t_f, t_fv = _time_pair([fwd, fwd_vjp], 3 if args.quick else 5)
    print(f"k_subset_marginals numpy float64 B={Bm} n={nm} k={km}")
    print(f"  forward {t_f * 1e3:.1f} ms per batch (target 5 ms: ratio {t_f / 5e-3:.1f}x);"
          f" forward + VJP {t_fv * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
