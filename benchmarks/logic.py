"""Speed of dopt.logic (run by hand; ratios from one run, one thread).

    python benchmarks/logic.py [--quick]

1. Soft logic layer, forward + backward (gradients for the input and the logits),
   torch, CPU, float32, B = 256, 8 000 → 8 000: dopt's coefficient form (four
   per-neuron coefficients, explicit VJP) against the 16-gate weighted sum of
   difflogic's python path (16 ``(B, out)`` tensors, torch autograd), same run,
   interleaved repeats, medians.
2. Inference of a digits-sized hard network (192 input bits, 4 layers of 4 000 gates,
   GroupSum over 10 classes) on 16 384 samples: the bit-packed NumPy evaluator
   (:func:`dopt_core.logic.compile_logic_net`) against the same hard net as float32
   torch tensors (dopt's ``LogicLayer`` in eval mode), samples/s on one core.

Times are CPU time of this process (``time.process_time``; one thread), so that a
busy shared machine does not distort them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

H.pin_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

import dopt_core as dc  # noqa: E402
import dopt_torch as dt  # noqa: E402
L = dc.logic


def _sixteen_gates(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    # difflogic's python path: every gate materialised, weighted by softmax(W)
    ab = a * b
    gates = [
        torch.zeros_like(a), ab, a - ab, a, b - ab, b, a + b - 2 * ab, a + b - ab,
        1 - (a + b - ab), 1 - (a + b - 2 * ab), 1 - b, 1 - b + ab, 1 - a, 1 - a + ab, 1 - ab, torch.ones_like(a),
    ]
    return sum(p[..., i] * g for i, g in enumerate(gates))


def _median_times(fns: list[Callable[[], None]], repeat: int) -> list[float]:
    """Interleaved medians of this process's CPU time (``time.process_time``)."""
    return H.timed(fns, stat="median", repeat=repeat, warmup=1, clock=time.process_time)


def _soft_layer_steps(B: int, n: int) -> tuple[Callable[[], None], Callable[[], None], float]:
    g = torch.Generator().manual_seed(0)
    ia, ib = L.logic_connections(n, n, rng=0)
    ia_t, ib_t = torch.from_numpy(ia), torch.from_numpy(ib)
    x0 = torch.rand(B, n, generator=g)
    W0 = torch.randn(n, 16, generator=g)
    cot = torch.randn(B, n, generator=g)

    def dopt_step() -> None:
        x, W = x0.clone().requires_grad_(True), W0.clone().requires_grad_(True)
        y = L.logic_layer(x, ia_t, ib_t, W)
        y.backward(cot)

    def ref_step() -> None:
        x, W = x0.clone().requires_grad_(True), W0.clone().requires_grad_(True)
        y = _sixteen_gates(x[:, ia_t], x[:, ib_t], torch.softmax(W, -1))
        y.backward(cot)

    # same numbers first
    x, W = x0.clone().requires_grad_(True), W0.clone().requires_grad_(True)
    L.logic_layer(x, ia_t, ib_t, W).backward(cot)
    x2, W2 = x0.clone().requires_grad_(True), W0.clone().requires_grad_(True)
    _sixteen_gates(x2[:, ia_t], x2[:, ib_t], torch.softmax(W2, -1)).backward(cot)
    err = max((x.grad - x2.grad).abs().max().item(), (W.grad - W2.grad).abs().max().item())
    return dopt_step, ref_step, err


def _inference_steps(N: int, width: int, depth: int) -> tuple[Callable[[], None], Callable[[], None], Any, bool]:
    torch.manual_seed(0)
    mods: list[torch.nn.Module] = []
    d = 192
    for i in range(depth):
        mods.append(dt.nn.LogicLayer(d, width, seed=i))
        d = width
    net = torch.nn.Sequential(*mods, dt.nn.GroupSum(10, tau=1.0)).eval()
    X = (torch.rand(N, 192) > 0.5).float()
    layers, in_dim, k = dt.nn.logic_gate_layers(net, (192,))
    compiled = L.compile_logic_net(layers, in_dim=in_dim, k=k)
    Xb = X.numpy().astype(bool)
    with torch.no_grad():
        same = np.array_equal(compiled(Xb), net(X).round().long().numpy())

    def torch_run() -> None:
        with torch.no_grad():
            net(X)

    def packed_run() -> None:
        compiled(Xb)

    return torch_run, packed_run, compiled, same


def rows(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """Soft logic layer fwd+bwd vs the 16-gate sum; bit-packed inference vs float32 torch."""
    B, n = (32, 512) if quick else (256, 4000)  # the runner's: half the script's width
    dopt_step, ref_step, _ = _soft_layer_steps(B, n)
    case = f"soft layer B{B} {n}->{n}"
    t_d, t_r = H.timed([dopt_step, ref_step], stat=stat, repeat=3 if quick else 5, warmup=1, min_time=0.01)
    out = [H.Row("logic", case, "dopt logic_layer", seconds=t_d, memory_bytes=float(H.saved_bytes(dopt_step)),
                 memory_kind="saved"),
           H.Row("logic", case, "16-gate sum (difflogic python path)", role="peer", seconds=t_r,
                 memory_bytes=float(H.saved_bytes(ref_step)), memory_kind="saved")]
    N, width, depth = (512, 250, 2) if quick else (8192, 4000, 4)
    torch_run, packed_run, _, _ = _inference_steps(N, width, depth)
    case = f"hard net N{N} {depth}x{width}"
    t_t, t_p = H.timed([packed_run, torch_run], stat=stat, repeat=3 if quick else 5, warmup=1, min_time=0.01)
    out += [H.Row("logic", case, "dopt bit-packed NumPy", seconds=t_t, memory_bytes=float(H.traced_peak(packed_run)),
                  memory_kind="tracemalloc", params={"samples_per_s": N / t_t}),
            H.Row("logic", case, "dopt LogicLayer, float32 torch (eval)", seconds=t_p, ref="dopt bit-packed NumPy",
                  memory_bytes=0.0, memory_kind="saved (no_grad)", params={"samples_per_s": N / t_p})]
    return out


def bench_soft_layer(B: int, n: int, repeat: int) -> None:
    dopt_step, ref_step, err = _soft_layer_steps(B, n)
    t_dopt, t_ref = _median_times([dopt_step, ref_step], repeat)
    print(f"soft layer fwd+bwd B={B} {n}->{n} float32: dopt {t_dopt * 1e3:.1f} ms, 16-gate sum "
          f"{t_ref * 1e3:.1f} ms, ratio {t_ref / t_dopt:.1f}x (max grad difference {err:.1e})")


def bench_inference(N: int, width: int, depth: int, repeat: int) -> None:
    torch_run, packed_run, compiled, same = _inference_steps(N, width, depth)
    t_torch, t_packed = _median_times([torch_run, packed_run], repeat)
    print(f"hard net 192->{depth}x{width}->10 ({compiled.num_gates} gates), N={N}: bit-packed NumPy "
          f"{N / t_packed:,.0f} samples/s, float32 torch {N / t_torch:,.0f} samples/s, ratio "
          f"{t_torch / t_packed:.1f}x (counts equal: {same})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        bench_soft_layer(32, 512, 3)
        bench_inference(512, 250, 2, 3)
    else:
        bench_soft_layer(256, 8000, 7)
        bench_inference(16384, 4000, 4, 5)


if __name__ == "__main__":
    main()
