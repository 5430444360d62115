"""What fraction of the device's matrix-unit peak a step rate reaches: the step's floating-point work
(torch's FlopCounterMode over one plain, eager notebook step: matrix products and convolutions, forward and
backward) at the measured rate of a large bf16 matrix product on the same device, in the same run.

    peak = matmul_peak(device)             # FLOP/s of a bf16 8192^3 product on a GPU (median of 10)
    work = step_flops(notebook_step.step)  # FLOPs of one step
    print(describe(steps_per_second, work, peak))
"""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_peak(device: torch.device, n: int | None = None, repeats: int = 10) -> float:
    """FLOP per second of an n^3 matrix product on `device` (random operands; median of `repeats`): bf16 at
    n = 8192 on a GPU, float32 at n = 2048 on the CPU."""
    n = n or (8192 if device.type == "cuda" else 2048)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times)


def step_flops(step) -> int:
    """Floating-point operations of one call of `step` (an eager step: forward, backward, update)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def describe(steps_per_second: float, work: int, peak: float) -> str:
    achieved = steps_per_second * work
    return (f"{steps_per_second:.1f} it/s x {work / 1e9:.1f} GFLOP = {achieved / 1e12:.2f} TFLOP/s, "
            f"{achieved / peak:.1%} of the measured matrix-product peak ({peak / 1e12:.2f} TFLOP/s)")
