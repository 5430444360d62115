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
