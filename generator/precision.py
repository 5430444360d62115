"""Numeric precision of the step: which dtype autocast runs the models in, per device.

``auto`` picks bf16 on a CUDA GPU that supports it (else fp16), bf16 on a CPU with native bf16 arithmetic
(avx512_bf16 or AMX), and fp32 elsewhere: on a CPU without those, bf16 is emulated and slower than fp32.
The loss is always computed in float32 and the latent and optimiser stay float32.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises avx512_bf16 or AMX (Linux /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> a concrete precision for `device`; a concrete one is checked and returned."""
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision not in ("fp32", *_DTYPES):
        raise ConfigError(f"unknown precision {precision!r}; known: auto, fp32, bf16, fp16")
    return precision


def autocast(precision: str, device: torch.device):
    """The context the models run in: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])
