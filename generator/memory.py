"""How much memory a step needs, estimated before a job starts, so a job that cannot fit is refused.

The estimate is the step's working memory on top of the loaded models: decoder activations (kept for the
backward pass) grow with the image area times the decoder's channels per level, CLIP activations with
the cutouts times tokens x width x layers. The coefficients are fitted to peak memory measured by
`benchmarks/step.py` on the f16_16384 VQGAN and ViT-B/32 (see benchmarks/RESULTS.md, "Memory").
"""
from __future__ import annotations

import torch

from .errors import ConfigError

# Bytes per unit, a least-squares fit to the float32 CPU peaks measured at 256x256/32, 384x384/32 and
# 512x512/64 cutouts (benchmarks/RESULTS.md, "Memory"; the fit is within 3% of each).
DECODER_BYTES = 4.0 * 7.0  # per decoder unit: ~7 float32 values per block output stay alive
CLIP_BYTES = 4.0 * 16.8  # per CLIP unit: ~17 float32 values per token and layer (qkv, MLP, norms)
HALF_PRECISION = 0.6  # bf16/fp16 autocast (not measured here): half-size activations, norms kept in float32
CHECKPOINTED = 0.35  # decoder share with checkpoint_decoder (measured 0.32 at 512x512/64)
MARGIN = 1.15  # allocator fragmentation and what the fit misses
GIB = 2 ** 30


def decoder_units(vqgan, width: int, height: int) -> float:
    """Activation values per decoder block summed over levels: channels x pixels at that level."""
    cfg = vqgan.config  # level i of the decoder works at 1/2**i of the output size with ch * ch_mult[i]
    return sum(cfg.ch * mult * (cfg.num_res_blocks + 1) * width * height / 4 ** i
               for i, mult in enumerate(cfg.ch_mult))


def clip_units(clip, cutn: int) -> float:
    """Activation values of one CLIP tower over all cutouts: tokens x width x layers (a CNN counts pixels)."""
    visual = clip.model.visual
    width = getattr(getattr(visual, "conv1", None), "out_channels", 512)
    layers = len(getattr(getattr(visual, "transformer", None), "resblocks", ())) or 12
    patch = getattr(visual, "patch_size", (32, 32))
    patch = patch[0] if isinstance(patch, (tuple, list)) else int(patch)
    tokens = (clip.input_size // patch) ** 2 + 1
    return cutn * (tokens * width * layers + 3 * clip.input_size ** 2)


def estimate_memory(config, vqgan, clips, precision: str = "fp32") -> int:
    """Bytes a step of `config` needs beyond the loaded models (an estimate from measured figures)."""
    dec = decoder_units(vqgan, config.width, config.height) * DECODER_BYTES
    if config.checkpoint_decoder:
        dec *= CHECKPOINTED
    clip = sum(clip_units(clip, config.cutn) for clip, _ in clips) * CLIP_BYTES
    scale = HALF_PRECISION if precision in ("bf16", "fp16") else 1.0
    return int((dec + clip) * scale * MARGIN * config.starts)  # the starts step side by side at first


def free_memory(device: torch.device) -> int | None:
    """Free bytes on `device`: CUDA's free memory, or the RAM Linux reports available; None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # Memory PyTorch's allocator keeps cached from earlier steps and jobs is free to this process too.
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(config, vqgan, clips, device: torch.device, precision: str) -> None:
    """Raise ConfigError when the job's estimated memory exceeds what the device has free."""
    free = free_memory(device)
    need = estimate_memory(config, vqgan, clips, precision)
    if free is not None and need > free:
        hint = "" if config.checkpoint_decoder else ", or checkpoint_decoder (--checkpoint-decoder)"
        starts = f" and {config.starts} starts" if config.starts > 1 else ""
        fewer = ", fewer starts" if config.starts > 1 else ""
        raise ConfigError(
            f"this job needs about {need / GIB:.1f} GiB at {config.width}x{config.height} with {config.cutn} "
            f"cutouts{starts}; the device has {free / GIB:.1f} GiB free; try a smaller size{fewer} or fewer "
            f"cutouts{hint}")
