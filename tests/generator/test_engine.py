"""The loop on the tiny pair: it optimises, it is reproducible, it can be cancelled."""
import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from generator import ConfigError, Generation
from generator.losses import Target
from tests.conftest import tiny_config


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_loss_falls_over_30_steps(models):
    gen = Generation(tiny_config(steps=30, augmentations=[]), device="cpu", models=models)
    losses = [step.loss for step in gen]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1e-3


def test_step_records(models):
    records = list(Generation(tiny_config(steps=3, prompts="a:1 | b:-0.5"), device="cpu", models=models))
    assert [r.index for r in records] == [1, 2, 3] and all(r.total == 3 for r in records)
    assert set(records[0].losses) == {"a", "b"}
    assert records[0].loss == pytest.approx(sum(records[0].losses.values()), rel=1e-5)
    assert records[-1].image().size == (64, 64)


def test_same_seed_same_image_other_seed_other_image(models):
    a = Generation(tiny_config(seed=3), device="cpu", models=models).run()
    b = Generation(tiny_config(seed=3), device="cpu", models=models).run()
    c = Generation(tiny_config(seed=4), device="cpu", models=models).run()
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_augment_noise_sets_the_cutouts_noise(models):
    """`augment_noise` is the largest noise of the Gn cutouts: at 0 the first step's loss is that with no
    noise at all (the boxes are drawn first; the noise's draws change later steps'); larger noise changes it."""
    def losses(**settings):
        return [r.loss for r in Generation(tiny_config(steps=1, **settings), device="cpu", models=models)]
    silent = losses(augmentations=["Gn"], augment_noise=0.0)
    assert silent == losses(augmentations=[])
    assert losses(augmentations=["Gn"], augment_noise=0.5) != silent


def test_step_image_is_a_snapshot(models):
    gen = Generation(tiny_config(steps=5, lr=0.5), device="cpu", models=models)
    first = next(iter(gen))
    rest = list(gen)
    assert not np.array_equal(pixels(first.image()), pixels(rest[-1].image()))
    assert np.array_equal(pixels(rest[-1].image()), pixels(gen.image()))


def test_cancel_stops_before_next_step(models):
    gen = Generation(tiny_config(steps=50), device="cpu", models=models)
    seen = []
    for step in gen:
        seen.append(step.index)
        if step.index == 4:
            threading.Thread(target=gen.cancel).start()
            threading.Event().wait(0.2)
    assert seen == [1, 2, 3, 4] and gen.cancelled and gen.step_index == 4


def test_loss_history_holds_every_finished_step(models):
    gen = Generation(tiny_config(steps=6), device="cpu", models=models)
    losses = [step.loss for step in gen]
    assert gen.step_index == 6 and gen.loss_history == pytest.approx(losses, rel=0, abs=0)


def test_size_must_be_multiple_of_factor(models):
    with pytest.raises(ConfigError, match="not a multiple of 4.*try 64x64"):
        Generation(tiny_config(width=66), device="cpu", models=models)


def test_latent_stays_in_codebook_range(models):
    gen = Generation(tiny_config(steps=5, lr=5.0), device="cpu", models=models)
    gen.run()
    book = gen.vqgan.codebook
    z = gen.z.detach()
    assert (z >= book.min(0).values.view(1, -1, 1, 1) - 1e-6).all()
    assert (z <= book.max(0).values.view(1, -1, 1, 1) + 1e-6).all()


def test_init_image_is_encoded_and_pulled(models, tmp_path):
    init = tmp_path / "init.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(init)
    gen = Generation(tiny_config(init_image=str(init), init_weight=1.0, steps=3), device="cpu", models=models)
    expected = gen.vqgan.encode(torch.full((1, 3, 64, 64), 0.0).copy_(
        torch.tensor([200, 30, 30]).view(1, 3, 1, 1) / 255 * 2 - 1))
    assert torch.allclose(gen._z_init, expected, atol=1e-5)
    assert "init image" in next(iter(gen)).losses


def test_image_and_noise_prompts(models, tmp_path):
    picture = tmp_path / "target.png"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(picture)
    gen = Generation(tiny_config(prompts="", image_prompts=[f"{picture}:2"], noise_prompts=["5:0.5"], steps=2),
                     device="cpu", models=models)
    labels = set(next(iter(gen)).losses)
    assert labels == {f"image {picture}", "noise 5"}


def test_unreadable_init_image_is_a_config_error(models, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="cannot read image"):
        Generation(tiny_config(init_image=str(bad)), device="cpu", models=models)


def test_clip_weight_scales_its_loss(models):
    full = next(iter(Generation(tiny_config(clip="tiny", steps=1), device="cpu", models=models)))
    half = next(iter(Generation(tiny_config(clip="tiny:0.5", steps=1), device="cpu", models=models)))
    assert half.loss == pytest.approx(0.5 * full.loss, rel=1e-5)


def test_ensemble_sums_models_and_labels_them(models):
    gen = Generation(tiny_config(clip="tiny,tiny:0.5", steps=1), device="cpu", models=models)
    step = next(iter(gen))
    assert [w for _, w in gen.clips] == [1.0, 0.5]
    assert set(step.losses) == {"tiny: research computing team logo"}
    alone = next(iter(Generation(tiny_config(clip="tiny", steps=1), device="cpu", models=models)))
    assert step.loss > alone.loss  # the second model's term is added


def test_stop_value_ends_the_pull():
    image = torch.nn.functional.normalize(torch.randn(4, 8), dim=1).requires_grad_(True)
    target = torch.randn(1, 8)
    far = Target("t", target, 1.0, stop=10.0)  # stop above any distance: no pull at all
    far.loss(image).backward()
    assert image.grad.abs().sum() == 0
    near = Target("t", target, 1.0, stop=float("-inf"))
    image.grad = None
    near.loss(image).backward()
    assert image.grad.abs().sum() > 0


def test_negative_weight_pushes_away():
    target = torch.randn(1, 8)
    image = (target + 0.1 * torch.randn(1, 8)).requires_grad_(True)
    loss = Target("t", target, -1.0, stop=float("-inf")).loss(image)
    loss.backward()
    with torch.no_grad():  # a small step down the gradient moves the image away from the target
        moved = image - 0.01 * image.grad
    from generator.clip import spherical_distance
    assert spherical_distance(moved, target) > spherical_distance(image.detach(), target)
