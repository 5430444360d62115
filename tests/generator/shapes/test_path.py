"""The way in from flat grey: its images, its ranking loss and the measure of its order."""
import numpy as np
import torch

from generator.clip import build_clip
from generator.shapes.path import GREY, LEVELS, path_loss, path_order, path_views, tint_loss, tint_order, tint_views
from generator.shapes.clip_losses import encode_text
from generator.shapes.world import Thing, World, render, to_tensor

RED, CYAN = torch.tensor([1.0, -1.0, -1.0, 0.0]), torch.tensor([-1.0, 1.0, 1.0, 0.0])


def mean_colour(images):
    """A toy image encoder: how far the mean colour is from grey, beside a constant."""
    return torch.cat([images.mean((2, 3)) - GREY, torch.full((len(images), 1), 0.1)], 1)


def test_the_way_in_starts_flat_grey_ends_at_the_scene_and_shows_more_of_it_at_each_level():
    x = to_tensor(np.array(render([Thing("red", "square", "large", "left")], (100, 110, 120)))[None])
    views = path_views(x)
    assert views.shape == (len(LEVELS), 1, 3, 64, 64)
    assert torch.all(views[0] == GREY) and torch.allclose(views[-1], x)
    away = [(v - GREY).abs().mean().item() for v in views]
    assert all(a < b for a, b in zip(away, away[1:]))
    # the blurred levels keep the thing where it is: the left half is redder than the right
    assert all((v[0, 0, :, :32] - v[0, 1, :, :32]).mean() > (v[0, 0, :, 32:] - v[0, 1, :, 32:]).mean()
               for v in views[1:])


def test_the_ranking_loss_is_low_when_each_level_scores_above_the_one_before_and_high_when_below():
    n, d = 3, 8
    captions = torch.eye(d)[:n]
    rising = torch.stack([captions * a + torch.eye(d)[n:n + 1] for a in (0.0, 0.5, 1, 2, 4, 8)]).flatten(0, 1)
    falling = torch.stack([captions * a + torch.eye(d)[n:n + 1] for a in (8, 4, 2, 1, 0.5, 0.0)]).flatten(0, 1)
    assert path_loss(rising, captions, 50.0) < 0.1 and path_loss(falling, captions, 50.0) > 5


def test_the_order_counts_a_caption_whose_similarity_rises_along_the_way_in():
    red = to_tensor(np.stack([np.asarray(render([Thing("red", s, "large", "centre")], (128, 128, 128)))
                              for s in ("circle", "square")]))
    assert path_order(mean_colour, lambda t: t, red, torch.stack([RED, RED])) == 1.0
    assert path_order(mean_colour, lambda t: t, red, torch.stack([CYAN, CYAN])) == 0.0


def order_before_and_after_training(views, loss_fn, order_fn) -> tuple[float, float]:
    """A real tiny CLIP's order (`path_order` or `tint_order`) on 6 scenes before and after 15 Adam steps
    on `loss_fn` over their `views`."""
    torch.manual_seed(0)
    clip = build_clip("vqclip-shapes", None, seed=6)
    images, scenes = World("train", seed=2).batch(0, 6)
    x, tokens = to_tensor(np.asarray(images)), clip.tokenizer([s.caption for s in scenes])

    def order():
        return order_fn(clip.encode_image, lambda t: encode_text(clip.model, t), x, tokens)

    before = order()
    clip.model.train().requires_grad_(True)
    opt = torch.optim.Adam(clip.model.parameters(), lr=1e-3)
    for _ in range(15):
        loss = loss_fn(clip.encode_image(views(x).flatten(0, 1)), encode_text(clip.model, tokens), 30.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, order()


def test_training_on_the_ranking_loss_puts_a_real_clips_way_in_in_order():
    before, after = order_before_and_after_training(path_views, path_loss, path_order)
    assert before < 0.5 and after == 1.0


def test_the_turned_round_fade_has_the_opposite_colour_about_grey():
    x = to_tensor(np.array(render([Thing("red", "square", "large", "left")], (128, 128, 128)))[None])
    faint, turned = tint_views(x)
    assert torch.allclose(faint - GREY, GREY - turned, atol=1e-6)
    assert faint[0, 0, :, :32].mean() > GREY > turned[0, 0, :, :32].mean()  # red one way, cyan the other
    assert (faint - GREY).abs().max() < 0.15  # faint: at most 15% of the way from grey


def test_the_tint_order_and_loss_tell_a_guide_that_follows_the_colour_from_one_that_turns_it_round():
    red = to_tensor(np.stack([np.asarray(render([Thing("red", s, "large", "centre")], (128, 128, 128)))
                              for s in ("circle", "square")]))
    assert tint_order(mean_colour, lambda t: t, red, torch.stack([RED, RED])) == 1.0
    assert tint_order(mean_colour, lambda t: t, red, torch.stack([CYAN, CYAN])) == 0.0
    emb = mean_colour(tint_views(red).flatten(0, 1))
    assert tint_loss(emb, torch.stack([RED, RED]), 50.0) < tint_loss(emb, torch.stack([CYAN, CYAN]), 50.0)


def test_training_on_the_tint_loss_turns_a_real_clips_faint_fades_the_right_way():
    before, after = order_before_and_after_training(tint_views, tint_loss, tint_order)
    assert before < 1.0 and after == 1.0


def test_the_trainer_uses_the_tint_pairs_when_asked(tmp_path):
    from generator.shapes.clip_data import render_cache
    from generator.shapes.train_clip import TrainOptions, train

    cache = render_cache(48, 3, build_clip("vqclip-shapes", None, seed=6).tokenizer, None, pool=32)

    def run(tint_weight: float) -> dict:
        clip = build_clip("vqclip-shapes", None, seed=6)
        train(clip, cache, TrainOptions(steps=2, batch=12, n_neg=4, negatives=("shuffle", "confetti"), seed=1, n_path=3,
                                        tint_weight=tint_weight))
        return {k: v.detach().clone() for k, v in clip.model.state_dict().items()}

    with_tint, without = run(1.0), run(0.0)
    assert all(torch.isfinite(v).all() for v in with_tint.values() if v.is_floating_point())
    assert any(not torch.equal(with_tint[k], without[k]) for k in with_tint if with_tint[k].is_floating_point())
