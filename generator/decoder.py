"""The VQGAN decoder's forward pass, written out so it can be made cheaper without changing its result.

Same layers and weights as taming's `Decoder.forward`; differences: swish is `F.silu` (one fused op that
keeps one tensor for backward instead of two), attention goes through `scaled_dot_product_attention` (on
CUDA, heads wider than its fused kernels take are plain matrix products), and
with `checkpoint=True` the residual blocks at the two finest resolutions are recomputed in the backward
pass instead of keeping their activations (measured at 512x512 with 64 cutouts on the CPU: 40% less
step memory, 24% more step time).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as _checkpoint

_CHECKPOINTED_LEVELS = 2  # the finest levels hold most of the activations (4x more per level up)


def decode(decoder: nn.Module, z: torch.Tensor, checkpoint: bool = False) -> torch.Tensor:
    """taming `Decoder.forward(z)` (no timestep embedding, `give_pre_end`/`tanh_out` off)."""
    h = decoder.conv_in(z)
    h = _resnet(decoder.mid.block_1, h)
    h = _attention(decoder.mid.attn_1, h)
    h = _resnet(decoder.mid.block_2, h)
    for level in reversed(range(decoder.num_resolutions)):
        up = decoder.up[level]
        saved = checkpoint and level < _CHECKPOINTED_LEVELS
        for i, block in enumerate(up.block):
            h = _checkpoint(_resnet, block, h, use_reentrant=False) if saved else _resnet(block, h)
            if len(up.attn) > 0:
                h = _attention(up.attn[i], h)
        if level != 0:
            h = up.upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
    return decoder.conv_out(F.silu(decoder.norm_out(h)))


def supported(decoder: nn.Module) -> bool:
    """Whether `decode` reproduces this decoder: taming's layout, without the options it does not handle."""
    return (type(decoder).__name__ == "Decoder" and getattr(decoder, "temb_ch", 0) == 0
            and not getattr(decoder, "give_pre_end", False) and not getattr(decoder, "tanh_out", False)
            and all(up.upsample.with_conv for up in list(decoder.up)[1:]))


def _resnet(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """taming ResnetBlock without timestep embedding; dropout is off in eval mode."""
    h = block.conv1(F.silu(block.norm1(x)))
    h = block.conv2(F.silu(block.norm2(h)))
    if block.in_channels != block.out_channels:
        x = block.conv_shortcut(x) if block.use_conv_shortcut else block.nin_shortcut(x)
    return x + h


def _attention(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """taming AttnBlock: single-head self-attention over positions, 1x1 convolutions for q, k, v."""
    b, c, height, width = x.shape
    h = block.norm(x)
    q, k, v = (conv(h).reshape(b, 1, c, height * width).transpose(2, 3) for conv in (block.q, block.k, block.v))
    out = _sdpa(q, k, v)  # scale 1/sqrt(c), as taming's
    return x + block.proj_out(out.transpose(2, 3).reshape(b, c, height, width))


# CUDA's fused attention kernels (flash, cuDNN) take heads of up to 256 channels. taming's single head is as
# wide as its block, 512 in the f16 models, so CUDA falls back to its memory-efficient kernel, whose backward
# took 13% of an H100's step at 256x256 (four calls of 0.29 ms over 256 positions; benchmarks/RESULTS.md,
# "GPU"). Over the few hundred or thousand positions of a latent grid, the plain products are small.
FUSED_HEAD_MAX = 256


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if q.is_cuda and q.shape[-1] > FUSED_HEAD_MAX:
        return plain_attention(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, as matrix products (what `scaled_dot_product_attention` computes)."""
    weights = torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)
    return weights.to(v.dtype) @ v
