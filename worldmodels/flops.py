"""Arithmetic cost of networks and the matmul throughput of a device: the two halves of a
compute floor (``floor seconds = FLOPs / peak FLOP/s``).

FLOPs here are matmul FLOPs, two per multiply-add, the convention of
``torch.utils.flop_counter.FlopCounterMode``: bias additions, nonlinearities and other
elementwise work are not counted (they grow with a layer's width, the matmuls with its square).
"""

from __future__ import annotations

import time

import torch
from torch import nn


def linear_flops(module: nn.Module) -> int:
    """Matmul FLOPs of one input row through every ``nn.Linear`` in ``module`` (``2 * in * out``
    each), i.e. the cost per sample of an MLP whose linear layers each run once per sample."""
    return sum(2 * m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(m: int, k: int, n: int, *, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32, repeats: int = 5,
                       min_seconds: float = 0.02, seed: int = 0) -> float:
    """Measured throughput in GFLOP/s of ``C [m, n] = A [m, k] @ B [k, n]`` on ``device``.

    Each of ``repeats`` timings runs the product (into a reused output) enough times to last at
    least ``min_seconds``; the best timing is kept, so a transient load on a shared machine lowers
    the figure less. Uses the current torch thread count. One warm-up product is not timed.
    """
    if min(m, k, n) < 1 or repeats < 1:
        raise ValueError(f"m, k, n, repeats: expected >= 1, got {(m, k, n, repeats)}")
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn(m, k, generator=gen, device=device, dtype=dtype)
    b = torch.randn(k, n, generator=gen, device=device, dtype=dtype)
    out = torch.empty(m, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)
    _sync(device)
    t0 = time.perf_counter()
    torch.mm(a, b, out=out)
    _sync(device)
    inner = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-7)))
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        _sync(device)
        best = min(best, (time.perf_counter() - t0) / inner)
    return 2.0 * m * k * n / best / 1e9
