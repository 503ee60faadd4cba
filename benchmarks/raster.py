"""Speed and peak memory of ``relax.raster.soft_silhouette`` against the same formula in
plain torch autograd (run by hand; numbers from one run).

    python benchmarks/raster.py [--quick]

Forward + backward of the silhouette of 100 random triangles on a 64 × 64 image,
batch 16, float32, torch CPU, one thread; ``uniform`` + ``probabilistic`` (GenDR's
default) and ``logistic`` + squared + ``probabilistic`` (SoftRas). The reference
writes the same formula (signed distance to the closest edge, ``F(d/τ)``,
``1 - Π(1 - A)``) with torch operations and lets autograd store what it needs. Peak
memory: the growth of the peak resident set of a fresh subprocess during one step
(``VmHWM``, reset after building the inputs and a first step), so imports and the
allocator's baseline cancel (the harness's ``child_peak_kib``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import _harness as H  # noqa: E402

H.pin_threads()

import torch  # noqa: E402

from dopt_core.relax.raster import soft_silhouette  # noqa: E402


def reference_silhouette(V: torch.Tensor, S: int, dist: str, scale: float, squared: bool) -> torch.Tensor:
    """The GenDR silhouette in plain torch (autograd differentiates it)."""
    c = (torch.arange(S, dtype=V.dtype) + 0.5) / S
    py, px = torch.meshgrid(c, c, indexing="ij")
    px = px.reshape(1, -1, 1)
    py = py.reshape(1, -1, 1)
    X = [V[:, None, :, e, 0] for e in range(3)]
    Y = [V[:, None, :, e, 1] for e in range(3)]
    area2 = (X[1] - X[0]) * (Y[2] - Y[0]) - (Y[1] - Y[0]) * (X[2] - X[0])
    d2 = None
    inside = None
    for e in range(3):
        ex, ey = X[(e + 1) % 3] - X[e], Y[(e + 1) % 3] - Y[e]
        qx, qy = px - X[e], py - Y[e]
        ok = (ex * qy - ey * qx) * area2 >= 0
        inside = ok if inside is None else inside & ok
        t = ((qx * ex + qy * ey) / (ex * ex + ey * ey)).clamp(0, 1)
        de = (qx - t * ex) ** 2 + (qy - t * ey) ** 2
        d2 = de if d2 is None else torch.minimum(d2, de)
    sign = torch.where(inside, 1.0, -1.0)
    D = sign * (d2 if squared else torch.sqrt(d2))
    if dist == "uniform":
        A = (D / (2 * scale) + 0.5).clamp(0, 1)
    else:
        A = torch.sigmoid(D / scale)
    return (1 - torch.prod(1 - A, dim=-1)).reshape(V.shape[0], S, S)


def _inputs(B: int, T: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(B, T, 1, 2, generator=g) * 0.8 + 0.1
    return (centre + 0.08 * torch.randn(B, T, 3, 2, generator=g)).float()


def _step(impl: str, V: torch.Tensor, S: int, dist: str, squared: bool, chunk: int | None) -> None:
    scale = 1.0 / (S * S) if squared else 1.0 / S
    Vr = V.detach().requires_grad_(True)
    if impl == "dopt":
        a = soft_silhouette(Vr, S, distribution=dist, scale=scale, squared=squared, chunk_size=chunk)
    else:
        a = reference_silhouette(Vr, S, dist, scale, squared)
    (a * a).sum().backward()


def memory_step(impl: str, B: int, T: int, S: int, dist: str, squared: bool, chunk: int | None) -> Callable[[], None]:
    """One forward + backward on fresh inputs (the factory of the child's peak RSS)."""
    V = _inputs(B, T)
    return lambda: _step(impl, V, S, dist, squared, chunk)


def _peak_mb(impl: str, B: int, T: int, S: int, dist: str, squared: bool, chunk: int | None) -> float:
    return H.child_peak_kib("benchmarks.raster:memory_step", impl, B, T, S, dist, squared, chunk) / 1024.0


SETTINGS = (("uniform", False), ("logistic", True))


def rows(quick: bool = False, stat: str = "median") -> list[H.Row]:
    """soft_silhouette fwd+bwd: dopt (whole image and chunked) vs plain torch autograd."""
    if (why := H.missing("torch")) is not None:
        return [H.skipped("raster", "-", "dopt", why, role="dopt")]
    # the runner's batch is 8, not the script's 16 (the cost is linear in the batch)
    B, T, S = (4, 30, 32) if quick else (8, 100, 64)
    V = _inputs(B, T)
    out: list[H.Row] = []
    for dist, squared in SETTINGS:
        case = f"{dist}{'+sq' if squared else ''} B{B} T{T} {S}x{S}"
        impls = [("dopt", None, "dopt"), ("dopt", 128, "dopt chunk=128"), ("torch", None, "plain torch autograd")]
        fns = [lambda i=i, c=c: _step(i, V, S, dist, squared, c) for i, c, _ in impls]
        times = H.timed(fns, stat=stat, repeat=2 if quick else 3, warmup=1)
        for (impl, chunk, label), fn, t in zip(impls, fns, times, strict=True):
            if quick:  # a child process per row: not in a smoke run
                mem, kind = float(H.saved_bytes(fn)), "saved"
            else:
                mem, kind = 1024 * H.child_peak_kib("benchmarks.raster:memory_step", impl, B, T, S, dist,
                                                    squared, chunk), "rss"
            out.append(H.Row("raster", case, label, role="peer" if impl == "torch" else "dopt", seconds=t,
                             memory_bytes=mem, memory_kind=kind, ref="dopt"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    a = parser.parse_args()
    B, T, S = (4, 30, 32) if a.quick else (16, 100, 64)
    repeat = 2 if a.quick else 5
    V = _inputs(B, T)
    print(f"soft_silhouette forward+backward, B={B}, T={T}, {S}x{S}, float32, torch CPU, 1 thread")
    print(f"{'setting':34s} {'dopt ms':>8s} {'torch ms':>9s} {'speed-up':>8s} {'dopt MB':>8s} {'torch MB':>9s} {'ratio':>6s}")
    for dist, squared in (("uniform", False), ("logistic", True)):
        for chunk in (None, 128):
            t_d, t_r = H.timed([lambda: _step("dopt", V, S, dist, squared, chunk),
                                lambda: _step("torch", V, S, dist, squared, None)], stat="best", repeat=repeat)
            tag = f"{dist}{'+sq' if squared else ''}, chunk={chunk}"
            m_d = _peak_mb("dopt", B, T, S, dist, squared, chunk)
            m_r = _peak_mb("torch", B, T, S, dist, squared, None)
            print(
                f"{tag:34s} {1e3 * t_d:8.1f} {1e3 * t_r:9.1f} {t_r / t_d:7.2f}x "
                f"{m_d:8.1f} {m_r:9.1f} {m_d / max(m_r, 1e-9):6.2f}"
            )


if __name__ == "__main__":
    main()
