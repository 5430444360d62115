"""Backgrounds of any colour: the things stay as drawn, the new background is flat and far from them, and
the grey-thing negatives keep the outline without a colour."""
import numpy as np
import torch

from generator.shapes.backdrops import greyed_things, new_backgrounds, thing_mask
from generator.shapes.world import PALETTE, Thing, World, render, to_tensor


def scenes(n=16):
    images, _ = World("train", seed=3).batch(0, n)
    return to_tensor(np.array(images))


def test_the_mask_is_the_things_and_nothing_of_the_background():
    x = to_tensor(np.array(render([Thing("red", "square", "large", "left")], (100, 110, 120)))[None])
    mask = thing_mask(x)[0, 0]
    red = (x[0] - torch.tensor(PALETTE["red"])[:, None, None] / 255).abs().amax(0) < 0.01
    assert mask[32, 17] and not mask[32, 50] and not mask[2, 2]
    assert torch.all(mask[red]) and mask.sum() < 1.3 * red.sum()  # the square and its anti-aliased rim


def test_new_backgrounds_keep_the_things_and_paint_a_flat_colour_far_from_them():
    x = scenes()
    y = new_backgrounds(x, 1.0, torch.Generator().manual_seed(0))
    mask = thing_mask(x)
    assert torch.equal(y[mask.expand_as(x)], x[mask.expand_as(x)])
    for i in range(len(x)):
        background = y[i][:, ~mask[i, 0]]
        assert torch.all(background == background[:, :1])  # flat
        things = x[i][:, mask[i, 0]].T
        assert torch.cdist(background[:, :1].T, things).min() > 0.3  # far from every thing pixel
        assert (background[:, 0] - x[i, :, 0, 0]).abs().max() > 0  # really repainted
    assert torch.equal(new_backgrounds(x, 0.0, torch.Generator().manual_seed(0)), x)
    half = new_backgrounds(x, 0.5, torch.Generator().manual_seed(1))
    changed = (half != x).flatten(1).any(1)
    assert 0 < changed.sum() < len(x)


def test_greyed_things_are_one_grey_on_the_same_background():
    x = new_backgrounds(scenes(), 1.0, torch.Generator().manual_seed(2))
    z = greyed_things(x, torch.Generator().manual_seed(3))
    mask = thing_mask(x)
    assert torch.equal(z[~mask.expand_as(x)], x[~mask.expand_as(x)])
    for i in range(len(x)):
        things = z[i][:, mask[i, 0]]
        assert torch.all(things == things[0, 0]) and 0.35 <= things[0, 0] <= 0.65
