"""The loop's way in: a guide should score each scene higher the more of it has formed out of flat grey.

The loop starts from a flat grey image and climbs its guides' similarity to the prompt. If, along the way
from grey to the prompt's scene, the guide's similarity does not rise, the climb is led elsewhere: the
recipe's guides pulled "a red circle" towards a cyan wash from the grey start (RESULTS, "Seventeenth
round"). `path_views` draws the way as a chain of images, flat grey, then the scene faded in from grey and
blurred, each level less faded and sharper, to the scene itself; `path_loss` asks each scene's caption to
score every level above the one before, and `path_order` measures how often it does."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .backdrops import thing_mask

GREY = 128 / 255  # the loop's recommended start (init_colour #808080)
# (how much of the scene shows through the grey, the blur's box size in pixels): flat grey first
LEVELS = ((0.0, 1), (0.15, 16), (0.3, 8), (0.5, 4), (0.75, 2), (1.0, 1))


def blurred(x: torch.Tensor, box: int) -> torch.Tensor:
    """`x` averaged over box x box blocks and smoothly scaled back up: where things are, not their outline."""
    if box == 1:
        return x
    return F.interpolate(F.avg_pool2d(x, box), size=x.shape[-2:], mode="bilinear", align_corners=False)


def on_grey(x: torch.Tensor) -> torch.Tensor:
    """The scenes `x` with their flat backgrounds made the loop's grey."""
    return torch.where(thing_mask(x), x, torch.full_like(x, GREY))


def path_views(x: torch.Tensor, things_only: bool = False) -> torch.Tensor:
    """[len(LEVELS), n, 3, H, W]: the scenes `x` ([n, 3, H, W] in [0, 1]) at each level of the way in;
    with `things_only`, the way in to the scenes' things on grey, so only the things fade in."""
    x = on_grey(x) if things_only else x
    return torch.stack([GREY + alpha * (blurred(x, box) - GREY) for alpha, box in LEVELS])


def path_similarities(image_emb: torch.Tensor, caption_emb: torch.Tensor) -> torch.Tensor:
    """[levels, n] cosine similarities of each level's image embedding ([levels * n, d]) to its caption's."""
    c = F.normalize(caption_emb, dim=-1)
    return (F.normalize(image_emb, dim=-1).view(-1, *c.shape) * c).sum(-1)


def ranked_loss(s: torch.Tensor, scale) -> torch.Tensor:
    """Logistic ranking of each level's similarity ([levels, n]) above the one before it."""
    return F.softplus(-scale * (s[1:] - s[:-1])).mean()


def in_order(s: torch.Tensor) -> float:
    """How often a level's similarity ([levels, n]) is above the one before it (chance 50%)."""
    return (s[1:] > s[:-1]).float().mean().item()


def path_loss(image_emb: torch.Tensor, caption_emb: torch.Tensor, scale) -> torch.Tensor:
    """Each scene's way in (`path_views`), every level ranked above the one before, for its own caption."""
    return ranked_loss(path_similarities(image_emb, caption_emb), scale)


def tint_views(x: torch.Tensor) -> torch.Tensor:
    """[2, n, 3, H, W]: the way in's first faint level of each scene, and the same fade with its colours
    turned the other way through grey (a red thing becomes a faint cyan one). A guide whose pixel gradient
    at grey points away from the named colour scores the second higher (RESULTS, "Nineteenth round")."""
    alpha, box = LEVELS[1]
    faint = alpha * (blurred(x, box) - GREY)
    return torch.stack([GREY + faint, GREY - faint])


def tint_loss(image_emb: torch.Tensor, caption_emb: torch.Tensor, scale) -> torch.Tensor:
    """Each scene's faint fade ranked above its turned-round one (`tint_views`), for the scene's caption."""
    return ranked_loss(path_similarities(image_emb, caption_emb).flip(0), scale)


@torch.no_grad()
def tint_order(encode_image, encode_text, images: torch.Tensor, tokens: torch.Tensor) -> float:
    """How often a caption scores its scene's faint fade above the turned-round fade (chance 50%)."""
    return in_order(path_similarities(encode_image(tint_views(images).flatten(0, 1)), encode_text(tokens)).flip(0))


@torch.no_grad()
def path_order(encode_image, encode_text, images: torch.Tensor, tokens: torch.Tensor) -> float:
    """How often a caption scores a level of its scene's way in above the level before it (chance 50%)."""
    return in_order(path_similarities(encode_image(path_views(images).flatten(0, 1)), encode_text(tokens)))
