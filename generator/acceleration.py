"""Device-specific speed-ups that do not change what a step computes (beyond float rounding).

- `torch.compile` of a step's decode, cutouts and CLIP passes as one function (`SCOPE`; config ``compile``).
  Compiling costs time once per process and shape: 70-90 s before the first step on an H100 at 256x256
  (measured, benchmarks/RESULTS.md "GPU"), after which a step takes 12 ms (41 ms for the compiled parts in
  inductor's default mode, 54 ms for the notebook's eager loop). So ``auto`` compiles on a GPU only when
  the process expects at least `COMPILE_PAYS_AFTER` steps at these shapes: a worker (the service runs job
  after job) or a long run or batch; a single `vqclip generate` of a few hundred steps starts at once,
  eagerly. On the CPU, where the step is bound by float32 convolutions and matrix products that
  oneDNN/MKL already run near peak, ``auto`` never compiles. A compile that fails (no C++ compiler, an
  unsupported op, a backend bug) must not fail the job: `Generation` runs its first compiled step with a
  fallback, and on an error it warns once and continues eagerly.
- channels_last for the decoder on CUDA, the layout cuDNN's tensor-core convolutions want. On the CPU it
  measured no faster (benchmarks/RESULTS.md), so the CPU keeps NCHW.
- cuDNN's autotuner on CUDA (`torch.backends.cudnn.benchmark`): a run's convolutions keep one shape for
  all its steps, so timing the candidate algorithms once pays back at once. The algorithm it picks can
  differ between processes, which moves results by float rounding only (as GPU backward passes do anyway).
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch


# Steps after which compiling pays back on a GPU: ~80 s of compiling over the 27 ms a step saves against
# inductor's default mode (benchmarks/RESULTS.md, "GPU"; the engine's eager step was not measured there).
COMPILE_PAYS_AFTER = 3000


def resolve_compile(mode: str, device: torch.device, expected_steps: float = float("inf")) -> bool:
    """``auto`` -> on for CUDA devices when `expected_steps` (steps the process will run at these shapes)
    reach COMPILE_PAYS_AFTER, else off; ``on``/``off`` as given."""
    if mode == "auto":
        return device.type == "cuda" and expected_steps >= COMPILE_PAYS_AFTER
    return mode == "on"


def configure(device: torch.device) -> None:
    """Process-wide settings for steps on `device` (see the module docstring)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def channels_last(device: torch.device) -> bool:
    """Whether the decoder runs in channels_last memory format on `device`."""
    return device.type == "cuda"


BACKEND = "inductor"  # torch.compile's default; the tests use "aot_eager" (same tracing, no code generation)
# torch.compile's mode on CUDA with the inductor backend: "reduce-overhead" records CUDA graphs, so that a
# compiled forward or backward is one launch instead of hundreds (3x the steps per second of the default
# mode at 256x256 on an H100: benchmarks/RESULTS.md, "GPU"). None is inductor's default mode; the
# benchmarks' --compile-mode sets this.
MODE: str | None = "reduce-overhead"
# What is compiled on the fast path: "step", a one-start step's quantise, decode, cutouts and CLIP passes as
# one function (one graph forward, one backward; the loss terms, a job's own, stay outside it), or "parts",
# the decoder, the CLIP image tower and the cutouts each alone (what batches of generations and several
# starts always use). The benchmarks' --compile-scope sets this.
SCOPE = "step"
# Compiled functions see one shape per batch size (1 to the worker's --batch) and grad mode (a preview
# decode runs without grad): more variants than dynamo's default limit of 8, past which it runs eagerly.
RECOMPILE_LIMIT = 64


def compiled(fn: Callable, device: torch.device | None = None) -> Callable:
    """`fn` compiled by torch.compile (lazily: on its first call, and its backward on the first backward);
    in `MODE` when `device` is a CUDA device."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    if getattr(config, name, RECOMPILE_LIMIT) < RECOMPILE_LIMIT:
        setattr(config, name, RECOMPILE_LIMIT)
    if BACKEND == "inductor" and MODE and device is not None and device.type == "cuda":
        return torch.compile(fn, backend=BACKEND, mode=MODE, dynamic=False)
    return torch.compile(fn, backend=BACKEND, dynamic=False)


def mark_step_begin(compiled_models: bool, device: torch.device) -> None:
    """Tell CUDA-graph replays that a new step begins: the last step's graph outputs are no longer read, so
    their memory may be reused (without it, reduce-overhead mode cannot tell training steps apart)."""
    if compiled_models and device.type == "cuda":
        torch.compiler.cudagraph_mark_step_begin()


def is_fallback_error(exc: BaseException) -> bool:
    """Errors a failed compile may raise, as opposed to ones eager mode would raise too (out of memory)."""
    return isinstance(exc, Exception) and not isinstance(exc, torch.OutOfMemoryError)


def warn_fallback(exc: BaseException) -> None:
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    warnings.warn(f"torch.compile failed ({type(exc).__name__}: {first_line}); running without compiling",
                  RuntimeWarning, stacklevel=3)
