"""Speed of dopt.relax against diffsort and torchsort (run by hand; ratios from one run).

    python benchmarks/relax.py [--quick]

Sorting networks: forward + backward through the sorted values and the relaxed
permutation matrix (torch, CPU, float32, batch 128), dopt vs ``diffsort.DiffSortNet``
(dense n×n layer products). diffsort's cost is linear in the batch (measured: 29 vs
31 s per batch-128 step at n = 256 from batch 8 and 32), and a batch-128 step takes
over 30 s at n = 256: from n = 128 it is timed on a batch of 8 and scaled by 16 (row
note ``x16``). Floor (with P): writing a dense (B, n, n) matrix and back-propagating
the same loss through it. Soft sort / rank: forward + backward, dopt vs
``torchsort`` (compiled C++ PAV); floor: the hard ``torch.sort`` forward + backward.
Memory: the bytes autograd saves for backward, and for the bitonic network with P in
units of n² floats per instance (the issue's target: ≤ 1.5). Peers missing: their
rows are skipped. Threads are pinned to 1 so that ratios do not depend on how busy the
machine is. This script prints the best of the interleaved repeats; the runner
(``python -m benchmarks``) their medians.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

BATCH = 128
PEER_BATCH = 8  # diffsort's batch from n = SCALE_FROM (scaled to BATCH)
SCALE_FROM = 128


def _network_step(make: Callable[[Any], tuple[Any, Any]], x: Any, with_p: bool) -> Callable[[], None]:
    def step() -> None:
        xr = x.detach().requires_grad_(True)
        y, P = make(xr)
        loss = y.sum() * 0.1 + ((P * P).sum() if with_p else 0)
        loss.backward()

    return step


def _dense_floor(x: Any) -> tuple[Any, Any]:
    """The least a dense-P method does: write (B, n, n) values that depend on x."""
    n = x.shape[-1]
    return x, x[:, None, :].expand(x.shape[0], n, n) * 1.0


def network_sizes(quick: bool) -> dict[str, list[int]]:
    if quick:
        return {"bitonic": [16, 32], "odd_even": [16, 32]}
    return {"bitonic": [16, 32, 64, 128, 256], "odd_even": [16, 32, 64, 128]}


def rows_networks(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """Bitonic and odd-even networks, with and without P: dopt, diffsort, the floor."""
    if (why := H.missing("torch")) is not None:
        return [H.skipped("networks", "-", "dopt", why, role="dopt")]
    import torch

    import dopt_core as dc

    peer_why = H.missing("diffsort")
    repeat = 3 if quick else 5
    out: list[H.Row] = []
    for network, sizes in network_sizes(quick).items():
        for n in sizes:
            x = torch.randn(BATCH, n, generator=torch.Generator().manual_seed(n))
            for with_p in (True, False) if n <= 64 else (True,):
                case = f"{network} n={n}{' P' if with_p else ''}"

                def ours(t: Any, network: str = network, with_p: bool = with_p) -> tuple:
                    if with_p:
                        return dc.relax.sorting_network(t, network=network)
                    return dc.relax.sorting_network(t, network=network, return_permutation=False), None

                params = {"network": network, "n": n, "with_p": with_p, "batch": BATCH}
                fns = [_network_step(ours, x, with_p)]
                if with_p:
                    fns.append(_network_step(_dense_floor, x, True))
                scale = 1
                if peer_why is None:
                    import diffsort

                    scale = BATCH // PEER_BATCH if n >= SCALE_FROM else 1
                    net = diffsort.DiffSortNet(network, n, steepness=10.0, distribution="cauchy")
                    fns.append(_network_step(lambda t, net=net: net(t), x[: BATCH // scale], with_p))
                times = H.timed(fns, stat=stat, repeat=repeat, min_time=0.02)
                # the op's residuals: what its forward alone saves (the loss's own excluded)
                res = H.saved_bytes(lambda ours=ours: ours(x.detach().requires_grad_(True)))
                per_n2 = res / (BATCH * n * n * x.element_size())
                out.append(H.Row("networks", case, "dopt", seconds=times[0],
                                 params={**params, "residual_n2_floats": per_n2},
                                 memory_bytes=res, memory_kind="saved (op)"))
                if with_p:
                    out.append(H.Row("networks", case, "floor: dense P write + backward", role="floor",
                                     seconds=times[1], memory_bytes=0.0,
                                     memory_kind="saved (op)", params=params))
                label = "diffsort DiffSortNet"
                if peer_why is None:
                    note = {} if scale == 1 else {"peer_batch": BATCH // scale, "scaled": scale}
                    xs = x[: BATCH // scale]
                    res = H.saved_bytes(lambda net=net, xs=xs: net(xs.detach().requires_grad_(True))) * scale
                    out.append(H.Row("networks", case, label, role="peer", seconds=times[-1] * scale,
                                     memory_bytes=res, memory_kind="saved (op)",
                                     params={**params, **note,
                                             "residual_n2_floats": res / (BATCH * n * n * x.element_size())}))
                else:
                    out.append(H.skipped("networks", case, label, peer_why))
    return out


def softsort_sizes(quick: bool) -> list[int]:
    return [32, 64] if quick else [32, 64, 256, 1024, 4096]


def rows_softsort(quick: bool = False, stat: str = "median", regularization: str = "l2") -> list[H.Row]:
    """Soft sort and soft rank, forward + backward: dopt, torchsort, the hard sort floor."""
    work = f"softsort_{regularization}"
    if (why := H.missing("torch")) is not None:
        return [H.skipped(work, "-", "dopt", why, role="dopt")]
    import torch

    import dopt_core as dc

    peer_why = H.missing("torchsort")
    kw = dict(regularization_strength=0.1, regularization=regularization)
    out: list[H.Row] = []
    for name in ("soft_sort", "soft_rank"):
        for n in softsort_sizes(quick):
            x, w = torch.randn(BATCH, n, generator=torch.Generator().manual_seed(n)), torch.linspace(-1, 1, n)

            def step(f: Callable[..., Any], x: Any = x, w: Any = w, **kw: Any) -> Callable[[], None]:
                def run() -> None:
                    xr = x.detach().requires_grad_(True)
                    (f(xr, **kw) * w).sum().backward()

                return run

            fns = [step(getattr(dc.relax, name), **kw), step(lambda t: torch.sort(t, dim=-1).values)]
            if peer_why is None:
                import torchsort

                fns.append(step(getattr(torchsort, name), **kw))
            times = H.timed(fns, stat=stat, repeat=3 if quick else 5, min_time=0.02)
            case = f"{name} n={n}"
            params = {"op": name, "n": n, "batch": BATCH, "regularization": regularization}
            out.append(H.Row(work, case, "dopt", seconds=times[0], params=params,
                             memory_bytes=H.saved_bytes(fns[0]), memory_kind="saved"))
            out.append(H.Row(work, case, "floor: hard torch.sort", role="floor", seconds=times[1],
                             memory_bytes=H.saved_bytes(fns[1]), memory_kind="saved", params=params))
            if peer_why is None:
                out.append(H.Row(work, case, "torchsort", role="peer", seconds=times[2], params=params,
                                 memory_bytes=H.saved_bytes(fns[2]), memory_kind="saved"))
            else:
                out.append(H.skipped(work, case, "torchsort", peer_why))
    return out


def rows_softsort_kl(quick: bool = False, stat: str = "median") -> list[H.Row]:
    return rows_softsort(quick, stat, regularization="kl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    args = ap.parse_args()
    print(f"threads: {H.pin_threads()}")
    rows = rows_networks(args.quick, "best") + rows_softsort(args.quick, "best")
    H.print_rows(H.fill_ratios(rows))


if __name__ == "__main__":
    main()
