"""Speed of dopt.relax against diffsort and torchsort (run by hand; ratios from one run).

    python benchmarks/relax.py [--quick]

Sorting networks: forward + backward through the sorted values and the relaxed
permutation matrix (torch, CPU, float32, batch 128), dopt vs ``diffsort.DiffSortNet``
(dense n×n layer products). Soft sort / rank: forward + backward, dopt vs
``torchsort`` (compiled C++ PAV). Peers missing: their rows are skipped. Threads are
pinned to 1 so that ratios do not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from collections.abc import Callable

import numpy as np
import torch

import dopt_core as dc

torch.set_num_threads(1)


def _network_step(
    make: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor, with_p: bool
) -> Callable[[], None]:
    def step() -> None:
        xr = x.detach().requires_grad_(True)
        y, P = make(xr)
        loss = y.sum() * 0.1 + ((P * P).sum() if with_p else 0)
        loss.backward()

    return step


def _time_pair(fns: list[Callable[[], None]], repeat: int, min_time: float = 0.02) -> list[float]:
    """Best-of-``repeat`` seconds per call of each ``fn``, measured interleaved.

    Each measurement loops a function long enough (>= ``min_time``) for sub-millisecond
    calls to be timed reliably, and the functions alternate, so that a change in the
    machine's load hits all of them alike.
    """
    loops = []
    for fn in fns:
        fn()  # warm-up
        t0 = time.perf_counter()
        fn()
        loops.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-6))))
    best = [np.inf] * len(fns)
    for _ in range(repeat):
        for i, (fn, k) in enumerate(zip(fns, loops, strict=True)):
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / k)
    return best


def bench_networks(sizes: list[int], batch: int, repeat: int) -> None:
    have = importlib.util.find_spec("diffsort") is not None
    print(
        f"sorting networks, batch {batch}, float32, forward+backward, sigmoid cauchy, "
        f"steepness 10 (best of {repeat}, dopt and diffsort alternating; "
        f"load average {os.getloadavg()[0]:.2f})"
    )
    print(
        f"{'network':9s} {'n':>5s} {'with P':>6s} {'dopt ms':>9s} {'diffsort ms':>12s} "
        f"{'speed-up':>9s}"
    )
    for network in ("bitonic", "odd_even"):
        # odd-even has n layers: diffsort's dense O(n^3)-per-layer products take minutes at n = 256
        for n in sizes if network == "bitonic" else [m for m in sizes if m <= 64]:
            x = torch.randn(batch, n)
            for with_p in (True, False):

                def ours(t: torch.Tensor, network: str = network, with_p: bool = with_p) -> tuple:
                    if with_p:
                        return dc.relax.sorting_network(t, network=network)
                    return dc.relax.sorting_network(
                        t, network=network, return_permutation=False
                    ), None

                fns = [_network_step(ours, x, with_p)]
                if have:
                    import diffsort

                    net = diffsort.DiffSortNet(network, n, steepness=10.0, distribution="cauchy")
                    fns.append(_network_step(lambda t, net=net: net(t), x, with_p))
                times = _time_pair(fns, repeat)
                t_ours, t_ref = times[0], times[1] if have else np.nan
                cols = f"{network:9s} {n:5d} {str(with_p):>6s} {1e3 * t_ours:9.2f}"
                print(f"{cols} {1e3 * t_ref:12.2f} {t_ref / t_ours:9.1f}")


def bench_softsort(sizes: list[int], batch: int, repeat: int, regularization: str = "l2") -> None:
    have = importlib.util.find_spec("torchsort") is not None
    print(
        f"\nsoft sort / rank ({regularization}), batch {batch}, float32, forward+backward "
        f"(best of {repeat}, interleaved)"
    )
    print(f"{'op':9s} {'n':>5s} {'dopt ms':>9s} {'torchsort ms':>13s} {'dopt/torchsort':>15s}")
    kw = dict(regularization_strength=0.1, regularization=regularization)
    for name in ("soft_sort", "soft_rank"):
        ours = getattr(dc.relax, name)
        for n in sizes:
            x, w = torch.randn(batch, n), torch.linspace(-1, 1, n)

            def step(
                f: Callable[..., torch.Tensor], x: torch.Tensor = x, w: torch.Tensor = w
            ) -> Callable[[], None]:
                def run() -> None:
                    xr = x.detach().requires_grad_(True)
                    (f(xr, **kw) * w).sum().backward()

                return run

            fns = [step(ours)]
            if have:
                import torchsort

                fns.append(step(getattr(torchsort, name)))
            t_ours, t_ref = (*_time_pair(fns, repeat), np.nan)[:2]
            print(
                f"{name:9s} {n:5d} {1e3 * t_ours:9.2f} {1e3 * t_ref:13.2f} {t_ours / t_ref:15.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = ap.parse_args()
    repeat = 2 if args.quick else 3
    bench_networks([16, 64] if args.quick else [16, 64, 256], 128, repeat)
    bench_softsort([32, 256] if args.quick else [32, 256, 1024, 4096], 128, repeat)


if __name__ == "__main__":
    main()
