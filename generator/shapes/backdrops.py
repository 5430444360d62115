"""Backgrounds of any colour, so a guide reads a thing's own colour rather than its contrast.

The world's backgrounds are muted mid-tones, so a CLIP trained on it could read "red" as "redder than the
background"; the recipe's loop paints a cyan background with a grey patch for "a red square". This was a
guess, and the measurements did not bear it out: the guides score that wash far below the clean scene,
and guides trained with these options drew worse in the loop (RESULTS, "Seventeenth round"). The
options stay in the trainer for further tries. `new_backgrounds` repaints the flat background of some training
scenes in a random colour far from every thing in them (captions never name the background, so they stay
right), and `greyed_things` makes the matching negatives: the same scenes with their things in a grey,
which no caption's colour describes."""
from __future__ import annotations

import torch


def thing_mask(x: torch.Tensor) -> torch.Tensor:
    """[n, 1, H, W] bool: the pixels of scenes `x` ([n, 3, H, W] in [0, 1], flat backgrounds) that are not
    the background (the corner pixel's colour)."""
    return (x - x[:, :, :1, :1]).abs().amax(1, keepdim=True) > 1.5 / 255


def far_colours(x: torch.Tensor, mask: torch.Tensor, gen: torch.Generator, away: float = 0.4,
                tries: int = 16) -> torch.Tensor:
    """[n, 3, 1, 1]: for each scene a random colour at least `away` (RGB distance in [0, 1] units) from
    every thing pixel's colour, the farthest of `tries` draws where none is that far."""
    candidates = torch.rand(len(x), tries, 3, generator=gen)
    pixels = x.flatten(2).transpose(1, 2)  # [n, HW, 3]
    distance = torch.cdist(candidates, pixels)  # [n, tries, HW]
    distance = distance.masked_fill(~mask.flatten(1)[:, None, :], float("inf")).amin(2)  # to the nearest thing pixel
    ok = distance >= away
    pick = torch.where(ok.any(1), ok.float().argmax(1), distance.argmax(1))
    return candidates[torch.arange(len(x)), pick][:, :, None, None]


def new_backgrounds(x: torch.Tensor, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """The scenes `x` with the background of each, with probability `fraction`, repainted in a far colour."""
    mask = thing_mask(x)
    chosen = (torch.rand(len(x), generator=gen) < fraction)[:, None, None, None]
    return torch.where(chosen & ~mask, far_colours(x, mask, gen), x)


def greyed_things(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The scenes `x` with every thing pixel a random grey (one per scene): the outline without a colour."""
    grey = (0.35 + 0.3 * torch.rand(len(x), 1, 1, 1, generator=gen)).expand(-1, 3, -1, -1)
    return torch.where(thing_mask(x), grey, x)
