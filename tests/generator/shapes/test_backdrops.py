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


def test_the_trainer_runs_with_new_backgrounds_grey_thing_pairs_and_the_way_in_and_the_pairs_count(tmp_path):
    """train() with --backgrounds, --contrast-weight and --path-weight together: a few steps finish with
    finite weights, and the grey-thing pairs change what is learnt (the term is not silently skipped)."""
    from generator.clip import build_clip
    from generator.shapes.clip_data import render_cache
    from generator.shapes.train_clip import TrainOptions, train

    cache = render_cache(48, 3, build_clip("vqclip-shapes", None, seed=6).tokenizer, None, pool=32)

    def run(contrast_weight: float) -> dict:
        clip = build_clip("vqclip-shapes", None, seed=6)
        train(clip, cache, TrainOptions(steps=3, batch=12, n_neg=4, negatives=("shuffle", "confetti"), seed=1, n_pair=4,
                                        path_weight=1.0, n_path=3, backgrounds=0.5, contrast_weight=contrast_weight))
        return {k: v.detach().clone() for k, v in clip.model.state_dict().items()}

    with_pairs, without = run(1.0), run(0.0)
    assert all(torch.isfinite(v).all() for v in with_pairs.values() if v.is_floating_point())
    changed = [k for k in with_pairs if with_pairs[k].is_floating_point() and not torch.equal(with_pairs[k], without[k])]
    assert changed, "the grey-thing pairs changed no weight"
