"""The shapes VQGAN trainer's outline loss."""
import random

import torch

from generator.shapes.train_vqgan import edge_loss
from generator.shapes.world import Thing, render, to_tensor


def _image(shape: str) -> torch.Tensor:
    import numpy as np

    img = render([Thing("red", shape, "small", "centre")], (120, 120, 120), random.Random(0))
    return to_tensor(np.array(img)[None])


def test_outline_loss_is_zero_on_a_copy_and_counts_a_blunted_star_more_than_a_flat_shift():
    star, circle = _image("star"), _image("circle")
    assert edge_loss(star, star) == 0
    # a brightness shift changes every pixel (L1 0.05) but no outline; a star drawn as a circle changes
    # fewer pixels (L1 ~0.007) but its outline, and the outline loss is as large as the plain L1 there
    assert edge_loss(star + 0.05, star) < 1e-6
    assert edge_loss(circle, star) > 0.5 * torch.nn.functional.l1_loss(circle, star) > 0.002


def test_recolouring_redraws_about_that_fraction_of_scenes_off_the_palette_and_is_repeatable():
    import numpy as np

    from generator.shapes.checker import read_scene
    from generator.shapes.train_vqgan import scenes
    from generator.shapes.world import PALETTE, World

    world = World("train", seed=3)
    plain, mixed = scenes(world, 0, 64, 0.0), scenes(world, 0, 64, 0.5)
    assert torch.equal(mixed, scenes(world, 0, 64, 0.5))
    changed = [i for i in range(64) if not torch.equal(plain[i], mixed[i])]
    assert 16 <= len(changed) <= 48
    for i in changed:  # same background, shapes in the same places, in colours far from the palette's
        a = ((plain[i] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        b = ((mixed[i] + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(a[0], b[0])
        inside = np.abs(a.astype(int) - b.astype(int)).sum(-1) > 0
        assert inside.any()
        rgb = b[inside].reshape(-1, 3).astype(float)
        core = np.median(rgb, 0)
        assert min(np.linalg.norm(core - np.array(p)) for p in PALETTE.values()) > 40
    assert torch.equal(plain, scenes(world, 0, 64, 0.0)) and len(read_scene(a)) >= 1


def test_a_step_budget_repeats_the_same_weights_and_a_different_seed_does_not():
    """--steps makes a run repeatable (a --minutes run's step count depends on the machine's speed)."""
    import pytest

    from generator.shapes.budget import Budget
    from generator.shapes.train_vqgan import train

    torch.set_num_threads(1)
    a, b, c = (train(minutes=0, batch=2, seed=s, crop=16, steps=3, log_every=10**6) for s in (5, 5, 6))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert Budget(0, steps=4).progress(2) == 0.5 and Budget(0, steps=4).done(4)
    with pytest.raises(ValueError, match="minutes must be positive"):
        Budget(0)
