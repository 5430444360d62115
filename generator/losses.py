"""Prompt losses: squared spherical distance between CLIP embeddings, per prompt, times its weight."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from .clip import ClipModel, spherical_distance
from .config import GenerationConfig
from .prompts import parse_image_prompt, parse_noise_prompt, parse_text_prompts


@dataclass
class Target:
    """Embeddings [n, d] to pull towards (weight > 0) or push from (weight < 0)."""

    label: str
    embed: torch.Tensor
    weight: float
    stop: float

    def loss(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """|w| * mean(max(sign(w) * d, stop)): past the stop value the prompt's gradient is zero."""
        dists = spherical_distance(image_embeds, self.embed)
        sign = 1.0 if self.weight >= 0 else -1.0
        return abs(self.weight) * torch.clamp(dists * sign, min=self.stop).mean()


def build_prompts(config: GenerationConfig, clip: ClipModel, encode_image: Callable[[str], torch.Tensor]) -> list[Target]:
    """Text, image and noise prompts of `config`, embedded by `clip`."""
    targets = []
    if config.prompts.strip():
        texts = parse_text_prompts(config.prompts)
        embeds = clip.encode_text([p.text for p in texts])
        targets += [Target(p.text, e[None], p.weight, p.stop) for p, e in zip(texts, embeds)]
    for spec in config.image_prompts:
        p = parse_image_prompt(spec)
        targets.append(Target(f"image {p.path}", encode_image(p.path), p.weight, p.stop))
    for spec in config.noise_prompts:
        p = parse_noise_prompt(spec)
        gen = torch.Generator().manual_seed(p.seed)
        dim = clip.encode_text(["x"]).shape[-1]
        embed = torch.randn(1, dim, generator=gen).to(clip.mean.device)
        targets.append(Target(f"noise {p.seed}", embed, p.weight, float("-inf")))
    return targets


class ClipLoss:
    """The loss terms of one CLIP model of the ensemble: cutouts -> embeddings -> each target."""

    def __init__(self, clip: ClipModel, weight: float, targets: list[Target], cutouts, label_prefix: str = "",
                 autocast: Callable = contextlib.nullcontext, encode: Callable | None = None):
        self.clip, self.weight, self.targets, self.cutouts = clip, weight, targets, cutouts
        self.encode = encode or clip.encode_image  # the image tower, or a compiled version of it
        self.label_prefix = label_prefix  # names the CLIP model when several guide the image
        self.autocast = autocast  # the context the CLIP model runs in; the losses stay float32

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> list[tuple[str, torch.Tensor]]:
        return self.terms(self.embed(self.cutouts(image, generator)))

    # The three stages apart, so that a batch of generations can embed all their cutouts in one forward pass.
    def embed(self, cutouts: torch.Tensor, encode: Callable | None = None) -> torch.Tensor:
        """CLIP image embeddings of cutouts [n, 3, size, size] (of one image or of several), by `encode`
        (default: this loss's own, which may be compiled)."""
        if encode is None:
            encode = self.encode
        with self.autocast():
            return encode(cutouts)

    def terms(self, embeds: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """(label, weighted loss) of each target against one image's cutout embeddings."""
        return [(self.label_prefix + t.label, self.weight * t.loss(embeds)) for t in self.targets]
