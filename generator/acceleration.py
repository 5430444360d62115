"""Device-specific speed-ups that do not change what a step computes (beyond float rounding).

- `torch.compile` of the decoder and of CLIP's image tower (config ``compile``: auto = on a GPU only).
  Compiling costs time once per process and shape, so on the CPU, where the step is bound by float32
  convolutions and matrix products that oneDNN/MKL already run near peak, ``auto`` leaves it off. A compile
  that fails (no C++ compiler, an unsupported op, a backend bug) must not fail the job: `Generation` runs
  its first compiled step under `first_compiled_step`, and on an error it warns once and continues eagerly.
- channels_last for the decoder on CUDA, the layout cuDNN's tensor-core convolutions want. On the CPU it
  measured no faster (benchmarks/RESULTS.md), so the CPU keeps NCHW.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch


def resolve_compile(mode: str, device: torch.device) -> bool:
    """``auto`` -> on for CUDA devices, off elsewhere; ``on``/``off`` as given."""
    return device.type == "cuda" if mode == "auto" else mode == "on"


def channels_last(device: torch.device) -> bool:
    """Whether the decoder runs in channels_last memory format on `device`."""
    return device.type == "cuda"


BACKEND = "inductor"  # torch.compile's default; the tests use "aot_eager" (same tracing, no code generation)


def compiled(fn: Callable) -> Callable:
    """`fn` compiled by torch.compile (lazily: on its first call, and its backward on the first backward)."""
    return torch.compile(fn, backend=BACKEND, dynamic=False)


def is_fallback_error(exc: BaseException) -> bool:
    """Errors a failed compile may raise, as opposed to ones eager mode would raise too (out of memory)."""
    return isinstance(exc, Exception) and not isinstance(exc, torch.OutOfMemoryError)


def warn_fallback(exc: BaseException) -> None:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    warnings.warn(f"torch.compile failed ({type(exc).__name__}: {first_line}); running without compiling",
                  RuntimeWarning, stacklevel=3)
