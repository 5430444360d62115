"""Cutouts: the batched pooling gives the notebook's per-cutout adaptive pooling, values and gradients."""
import pytest
import torch
import torch.nn.functional as F

from generator.cutouts import MakeCutouts, pool_boxes


def boxes(n, side, out, seed=0):
    gen = torch.Generator().manual_seed(seed)
    sizes = (torch.rand(n, generator=gen) * (side - out) + out).floor()
    x0 = (torch.rand(n, generator=gen) * (side - sizes + 1)).floor()
    y0 = (torch.rand(n, generator=gen) * (side - sizes + 1)).floor()
    return sizes, x0, y0


@pytest.mark.parametrize("side, out", [(64, 24), (96, 40), (80, 80), (200, 32)])
def test_batched_pooling_equals_adaptive_pooling_per_cutout(side, out):
    sizes, x0, y0 = boxes(9, side, out)
    image = torch.rand(1, 3, side, side)
    reference = torch.cat([F.adaptive_avg_pool2d(image[:, :, y:y + s, x:x + s], out)
                           for s, x, y in zip(sizes.int().tolist(), x0.int().tolist(), y0.int().tolist())])
    leaves = [image.clone().requires_grad_(True) for _ in range(2)]
    weight = torch.rand_like(reference)
    results = [pool_boxes(leaf, sizes, x0, y0, out, batched=batched) for leaf, batched in zip(leaves, (True, False))]
    for result, leaf in zip(results, leaves):
        (result * weight).sum().backward()
    torch.testing.assert_close(results[0], reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(results[1], reference, rtol=0, atol=0)
    torch.testing.assert_close(leaves[0].grad, leaves[1].grad, rtol=0, atol=1e-5)


def test_same_generator_state_gives_the_same_cutouts():
    image = torch.rand(1, 3, 64, 64)
    make = MakeCutouts(32, 6, augmentations=["Af", "Fl", "Ji", "Gn", "Er"])
    first = make(image, torch.Generator().manual_seed(3))
    again = make(image, torch.Generator().manual_seed(3))
    other = make(image, torch.Generator().manual_seed(4))
    assert first.shape == (6, 3, 32, 32)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_cutouts_are_unchanged_on_the_cpu_by_the_device_helpers():
    """On the CPU, the noise and the boxes come from the generator exactly as drawn there."""
    image = torch.rand(1, 3, 48, 48)
    gen = torch.Generator().manual_seed(7)
    got = MakeCutouts(16, 4, augmentations=["Gn"], noise=0.1)(image, gen)
    gen = torch.Generator().manual_seed(7)
    sizes = (torch.rand(4, generator=gen) * (48 - 16) + 16).floor()
    x0 = (torch.rand(4, generator=gen) * (48 - sizes + 1)).floor()
    y0 = (torch.rand(4, generator=gen) * (48 - sizes + 1)).floor()
    pooled = pool_boxes(image, sizes, x0, y0, 16, batched=False)
    facs = torch.rand(4, 1, 1, 1, generator=gen) * 0.1
    expected = pooled + facs * torch.randn(pooled.shape, generator=gen)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("augmentations", [[], ["Af", "Fl", "Ji", "Gn", "Er"], ["Ro", "Ji"]])
def test_the_gpu_path_from_packed_draws_gives_the_loop_path_cutouts(augmentations, monkeypatch):
    """The path a GPU takes (all draws in one packed tensor, pooling by products, `transform`), run here on
    the CPU, traced by torch.compile as on a GPU: same random stream, same cutouts and image gradient."""
    from generator import acceleration

    monkeypatch.setattr(acceleration, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    image = torch.rand(1, 3, 72, 64)
    results, grads, states = [], [], []
    for batched in (False, True):
        make = MakeCutouts(24, 5, 0.7, augmentations)
        if batched:
            make.transform = acceleration.compiled(make.device_transform, torch.device("cpu"))
        leaf = image.clone().requires_grad_(True)
        gen = torch.Generator().manual_seed(11)
        out = make(leaf, gen, batched=batched)
        out.pow(2).sum().backward()
        results.append(out.detach())
        grads.append(leaf.grad)
        states.append(gen.get_state())
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-4)
    assert torch.equal(states[0], states[1])  # both took the same draws from the stream


def test_rotated_cutouts_of_a_flat_image_stay_flat_with_border_padding_and_get_black_corners_with_zeros():
    image = torch.full((1, 3, 64, 64), 0.5)
    made = {padding: MakeCutouts(64, 8, augmentations=["Ro"], padding=padding)(image, torch.Generator().manual_seed(1))
            for padding in ("zeros", "border", "reflection")}
    torch.testing.assert_close(made["border"], torch.full_like(made["border"], 0.5))
    torch.testing.assert_close(made["reflection"], torch.full_like(made["reflection"], 0.5))
    corners = made["zeros"][:, :, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.min() < 0.05  # some rotation of the eight reaches a corner: black comes in
