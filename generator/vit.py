"""A faster forward pass for open_clip's plain ViT image tower, computing the same embedding.

open_clip runs attention through `nn.MultiheadAttention`, which on the training path transposes to
sequence-first and multiplies by an expanded weight (a batched matmul per token) plus several copies per
layer; its patch embedding is a strided convolution whose CPU backward is slow. Here: the patch embedding
is one matmul with the input normalisation folded into its weight and bias, q/k/v one matmul batch-first into `scaled_dot_product_attention`, and the last block works
on the class token only (the pooled output is token 0, so the other tokens' last MLP is never used).
Architectures this does not recognise keep open_clip's own forward.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


def fast_image_encoder(visual: nn.Module) -> Callable[..., torch.Tensor] | None:
    """`encode(images, mean, std) -> features` equal to `visual((images - mean) / std)`, or None where the
    model is not a plain ViT. mean and std are [1, C, 1, 1]."""
    if not _is_plain_vit(visual):
        return None
    blocks = list(visual.transformer.resblocks)
    width = visual.conv1.out_channels
    patch = visual.conv1.kernel_size[0]

    def encode(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        gh, gw = h // patch, w // patch
        # Patch embedding of (x - mean) / std: W/std applied to x, minus (W/std).mean as a bias.
        weight = visual.conv1.weight / std.view(1, c, 1, 1)
        bias = -(weight * mean.view(1, c, 1, 1)).sum((1, 2, 3))
        # Non-overlapping patches flattened as (c, py, px), the conv weight's order.
        patches = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, -1)
        tokens = F.linear(patches, weight.reshape(width, -1), bias)
        cls = visual.class_embedding.to(tokens.dtype).expand(n, 1, width)
        x = torch.cat([cls, tokens], dim=1) + visual.positional_embedding.to(tokens.dtype)
        x = visual.ln_pre(x)
        for block in blocks[:-1]:
            x = _block(block, x, cls_only=False)
        x = _block(blocks[-1], x, cls_only=True)
        return visual.ln_post(x[:, 0]) @ visual.proj

    return encode


def _block(block: nn.Module, x: torch.Tensor, cls_only: bool, causal: bool = False) -> torch.Tensor:
    """open_clip's ResidualAttentionBlock (pre-norm attention then MLP), batch-first; `causal` masks
    later tokens (the text tower)."""
    attn = block.attn
    n, length, width = x.shape
    heads = attn.num_heads
    h = block.ln_1(x)
    if cls_only:  # queries of the class token only; keys and values of every token
        q = F.linear(h[:, :1], attn.in_proj_weight[:width], attn.in_proj_bias[:width])
        kv = F.linear(h, attn.in_proj_weight[width:], attn.in_proj_bias[width:])
        q = q.view(n, 1, heads, -1).transpose(1, 2)
        k, v = kv.view(n, length, 2, heads, -1).permute(2, 0, 3, 1, 4)
        x = x[:, :1]
    else:
        qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, heads, -1).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = out.transpose(1, 2).reshape(n, q.shape[2], width)
    x = x + attn.out_proj(out)
    return x + block.mlp(block.ln_2(x))


def _is_plain_vit(visual: nn.Module) -> bool:
    """The CLIP ViT layout: class token, pre-norm blocks with nn.MultiheadAttention, token-0 pooling."""
    if type(visual).__name__ != "VisionTransformer":
        return False
    conv = getattr(visual, "conv1", None)
    if not isinstance(conv, nn.Conv2d) or conv.bias is not None or conv.kernel_size != conv.stride \
            or conv.padding != (0, 0) or conv.kernel_size[0] != conv.kernel_size[1]:
        return False
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "final_ln_after_pool", False) \
            or getattr(visual, "pool_type", None) != "tok" or getattr(visual, "output_tokens", False) \
            or getattr(visual, "proj", None) is None:
        return False
    dropout = getattr(visual, "patch_dropout", None)
    if not isinstance(dropout, nn.Identity) and getattr(dropout, "prob", 0.0) > 0 and visual.training:
        return False
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if not blocks:
        return False
    for block in blocks:
        attn = getattr(block, "attn", None)
        if type(block).__name__ != "ResidualAttentionBlock" or not isinstance(attn, nn.MultiheadAttention) \
                or hasattr(block, "ln_1_kv") or not isinstance(block.ls_1, nn.Identity) \
                or not isinstance(block.ls_2, nn.Identity) or attn.in_proj_weight is None \
                or attn.in_proj_bias is None or attn.bias_k is not None or attn.add_zero_attn:
            return False
    return True
