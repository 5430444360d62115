"""Full-size architectures with random weights, for benchmarks only (weights do not change the timing).

    cache = fullsize_cache("cpu")      # a ModelCache that knows FULL_VQGAN and FULL_CLIP
    Generation(config.replace(vqgan=FULL_VQGAN, clip=FULL_CLIP), models=cache)

Nothing here is in the user-facing registry: the names exist only in the cache this returns.
"""
from __future__ import annotations

import torch

from generator.clip import build_clip
from generator.models import ModelCache
from generator.vqgan import VQGAN, VQGANConfig

FULL_VQGAN = "bench-f16-16384"
FULL_CLIP = "bench-ViT-B-32"

# taming's vqgan_imagenet_f16_16384 first stage, as in its published model.yaml.
F16_16384_YAML = """
model:
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 256
    n_embed: 16384
    ddconfig:
      double_z: false
      z_channels: 256
      resolution: 256
      in_channels: 3
      out_ch: 3
      ch: 128
      ch_mult: [1, 1, 2, 2, 4]
      num_res_blocks: 2
      attn_resolutions: [16]
      dropout: 0.0
"""


def random_vqgan(seed: int = 0) -> VQGAN:
    """The f16_16384 VQGAN with seeded random weights and a unit-normal codebook."""
    from generator.clip import quiet

    with torch.random.fork_rng(devices=[]), quiet():
        torch.manual_seed(seed)
        model = VQGAN(VQGANConfig.from_yaml(F16_16384_YAML, "f16_16384"))
        torch.nn.init.normal_(model.codebook)
    return model.eval().requires_grad_(False)


def random_clip(seed: int = 0):
    """open_clip ViT-B-32 (quick_gelu, as OpenAI's weights use) with seeded random weights."""
    return build_clip("ViT-B-32", None, quick_gelu=True, seed=seed, name=FULL_CLIP)


def fullsize_cache(device: str = "cpu") -> ModelCache:
    cache = ModelCache(device)
    cache.add_vqgan(FULL_VQGAN, random_vqgan())
    cache.add_clip(FULL_CLIP, random_clip())
    return cache
