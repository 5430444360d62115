"""The CLIP trainer's shortcuts compute what open_clip computes."""
import random

import pytest
import torch
from PIL import Image

from generator.clip import build_clip
from generator.shapes.clip_data import altered_captions, tokenize
from generator.shapes.clip_losses import contrastive_loss, encode_text, noised
from generator.shapes.world import HELD_OUT, POSITION_PHRASES, Thing, World, full_caption


def test_text_encoder_on_truncated_tokens_matches_open_clip():
    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    world = World("train")
    _, scenes = world.batch(0, 8)
    tokens = tokenize(clip.tokenizer, [s.caption for s in scenes] + altered_captions(world, 0, scenes, random.Random(0)))
    assert tokens.shape == (32, 32)
    with torch.no_grad():
        assert torch.allclose(encode_text(clip.model, tokens), clip.model.encode_text(tokens), atol=1e-5)


def test_identical_captions_share_the_positive_and_extra_captions_are_negatives():
    img = torch.eye(4)[:3]  # three images; caption 3 is a text negative
    txt = torch.eye(4)
    tokens = torch.tensor([[1, 2], [1, 2], [3, 4], [5, 6]])  # captions 0 and 1 are the same
    perfect = contrastive_loss(img, txt, tokens, 3, 100.0)
    swapped = contrastive_loss(img, txt[[3, 1, 2, 0]], tokens, 3, 100.0)
    assert perfect < swapped


def test_noise_sigma_noises_every_image_at_most_that_much_and_zero_leaves_them():
    """`--noise-sigma`: each image (positive or negative) gets its own noise level, none above sigma; 0 is off."""
    x = torch.full((64, 3, 32, 32), 0.5)
    gen = torch.Generator().manual_seed(0)
    assert noised(x, 0.0, gen) is x
    stds = (noised(x, 0.3, gen) - x).flatten(1).std(1)
    assert bool((stds > 0).all()) and float(stds.max()) < 0.3 * 1.05
    assert float(stds.max() - stds.min()) > 0.1  # levels differ per image, spread over [0, sigma]


def test_altered_captions_keep_the_template_change_one_attribute_and_never_name_a_held_out_pair():
    world = World("train")
    _, scenes = world.batch(100, 40)
    altered = altered_captions(world, 100, scenes, random.Random(0))
    assert world.recaption(105, scenes[5].things) == scenes[5].caption
    for s, changed in zip(scenes, [altered[i:i + 3] for i in range(0, len(altered), 3)]):
        for text in changed:
            assert text != s.caption and len(text.split()) == len(s.caption.split())
            assert [w in text for w in ('picture', 'background')] == [w in s.caption for w in ('picture', 'background')]
            words = text.split()
            pairs = {(a, b) for a, b in zip(words, words[1:])}
            assert not pairs & set(HELD_OUT), text


def test_blob_negatives_are_one_colour_and_no_scene_the_checker_would_caption():
    """A negative image must match no caption: each is several jagged blobs of one palette colour, which
    the checker (the grammar's own reader) does not read as a one- or two-shape scene."""
    import numpy as np

    from generator.shapes.checker import read_scene
    from generator.shapes.clip_data import blobs
    from generator.shapes.world import PALETTE

    images = blobs(60, random.Random(0))
    palette = np.array(list(PALETTE.values()))
    for img in images:
        pixels = img.reshape(-1, 3)
        in_palette = (np.abs(pixels[:, None] - palette[None]).sum(-1) == 0).any(0)
        assert in_palette.sum() == 1  # one colour; the muted background is never a palette colour
        assert len(read_scene(img)) > 2


def test_loop_negatives_keep_only_images_that_no_one_thing_caption_matches():
    from generator.shapes.loop_negatives import rejected, wrong
    from generator.shapes.clip_data import blobs

    world = World("train", two_shape_fraction=0.0)
    a, b = world.scene(0), next(world.scene(i) for i in range(1, 50) if world.scene(i).things[0].colour != world.scene(0).things[0].colour)
    assert not rejected(a.image, a.things[0])  # the prompt's own scene
    assert not rejected(b.image, a.things[0])  # another clean scene: some caption matches it, so not a negative
    assert wrong(b.image, a.things[0]) and not wrong(a.image, a.things[0])  # but it is wrong for this prompt
    assert rejected(blobs(1, random.Random(3))[0], a.things[0])
    # one blob whose shape the checker cannot read matches no caption either: the loop's usual failure
    from PIL import Image, ImageDraw

    from generator.shapes.world import PALETTE

    blob = Image.new("RGB", (64, 64), (120, 120, 120))
    draw = ImageDraw.Draw(blob)
    draw.ellipse([14, 20, 40, 30], fill=PALETTE["red"])
    draw.ellipse([30, 24, 38, 50], fill=PALETTE["red"])
    draw.polygon([(20, 22), (10, 8), (24, 21)], fill=PALETTE["red"])
    assert rejected(blob, a.things[0])


def test_loop_negative_files_old_and_new_read_as_images_and_prompt_pairs(tmp_path):
    from generator.shapes.loop_negatives import read

    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    old, new = torch.zeros(3, 64, 64, 3, dtype=torch.uint8), torch.ones(2, 64, 64, 3, dtype=torch.uint8)
    torch.save(old, tmp_path / "old.pt")
    torch.save({"images": new, "captions": ["a red star", "a blue cross"], "scenes": new + 1,
                "negative": torch.tensor([True, False])}, tmp_path / "new.pt")
    images, pairs = read([tmp_path / "old.pt"], clip.tokenizer)
    assert images.shape == (3, 64, 64, 3) and pairs is None
    images, pairs = read([tmp_path / "old.pt", tmp_path / "new.pt"], clip.tokenizer)
    assert images.shape == (4, 64, 64, 3)  # the second new image (a clean other scene) pairs but is no negative
    assert pairs["images"].shape == pairs["scenes"].shape == (2, 64, 64, 3) and int(pairs["scenes"].max()) == 2
    assert torch.equal(pairs["tokens"], clip.tokenizer(["a red star", "a blue cross"]))


def test_pair_loss_is_low_only_when_each_caption_prefers_its_scene_to_every_loop_image():
    from generator.shapes.clip_losses import pair_loss

    caption = torch.eye(4)[:2]
    right = pair_loss(torch.eye(4)[:2], torch.eye(4)[2:], caption, 50.0)  # scenes = captions, loop images apart
    fooled = pair_loss(torch.eye(4)[2:], torch.eye(4)[:2], caption, 50.0)  # each loop image is its caption
    # prompt 1's loop image looks like caption 0: it counts against caption 0 as well as its own
    crossed = pair_loss(torch.eye(4)[:2], torch.eye(4)[[2, 0]], caption, 50.0)
    assert right < 1e-3 and fooled > 10 and crossed > 0.3


def test_adversarial_images_stay_in_the_ball_and_lower_the_true_captions_rank():
    """The adversarial positives move each image by at most eps (L2) inside [0, 1] and raise the loss
    the training then lowers: the search really searches."""
    from generator.shapes.clip_losses import adversarial, hard_negative_loss
    from generator.shapes.world import to_tensor

    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    world = World("train")
    images, scenes = world.batch(0, 6)
    x = to_tensor(images)
    tokens = tokenize(clip.tokenizer, [s.caption for s in scenes] + altered_captions(world, 0, scenes, random.Random(0)))
    with torch.no_grad():
        txt = encode_text(clip.model, tokens)

    def loss(images):
        with torch.no_grad():
            img = clip.encode_image(images)
            return contrastive_loss(img, txt[:6], tokens[:6], 6, 30.0) + hard_negative_loss(img, txt, 6, 30.0)

    moved = adversarial(clip, x, txt, tokens, 6, 30.0, eps=2.0, steps=3, gen=torch.Generator().manual_seed(0))
    assert moved.min() >= 0 and moved.max() <= 1
    assert (moved - x).flatten(1).norm(dim=1).max() <= 2.0 + 1e-4
    assert loss(moved) > loss(x) + 0.01


def test_recoloured_scenes_are_drawn_off_the_palette_and_captioned_without_colour_in_one_template():
    import numpy as np

    from generator.shapes.clip_data import recoloured
    from generator.shapes.world import COLOURS, PALETTE, SHAPES

    world = World("train", seed=2)
    redrawn = {i: recoloured(world, i, world.scene(i), 0.5) for i in range(60)}
    assert 15 <= sum(r is not None for r in redrawn.values()) <= 45
    assert all(recoloured(world, i, world.scene(i), 0.0) is None for i in range(20))
    words = lambda text: set(text.split())  # noqa: E731
    for i, r in redrawn.items():
        if r is None:
            continue
        image, caption, altered = r
        again = recoloured(world, i, world.scene(i), 0.5)
        assert np.array_equal(image, again[0]) and (caption, altered) == again[1:]
        scene = world.scene(i)
        assert not words(caption) & set(COLOURS) and scene.things[0].shape in words(caption)
        for text in altered:  # the same template and words; the first thing's shape or position changed
            assert text != caption and not words(text) & set(COLOURS)
            assert [w in text for w in ("picture", "background", "small", "large")] == \
                   [w in caption for w in ("picture", "background", "small", "large")]
        assert sum(words(t) & set(SHAPES) != words(caption) & set(SHAPES) for t in altered) >= 2
        # the shapes' pixels (far from the background) are far from every palette colour
        pixels = image.reshape(-1, 3).astype(float)
        shape = pixels[np.linalg.norm(pixels - np.array(scene.background), axis=1) > 45]
        core = np.median(shape, axis=0)
        assert min(np.linalg.norm(core - np.array(c)) for c in PALETTE.values()) > 40, (i, core)


def test_a_loop_images_counterpart_is_its_prompt_drawn_cleanly_on_its_background_through_the_vqgan():
    """The scene a loop image is ranked below differs from it in the thing only: same background, same
    VQGAN, so a CLIP cannot learn the pair's difference from either."""
    import numpy as np

    from generator.models import load_vqgan
    from generator.shapes.checker import read_scene
    from generator.shapes.loop_negatives import counterpart
    from generator.shapes.world import Thing

    vqgan = load_vqgan("shapes")[0].eval()
    loop_image = np.full((64, 64, 3), (96, 130, 110), np.uint8)
    loop_image[20:40, 10:30] = (200, 40, 40)  # a blob
    thing = Thing("green", "star", "large", "right")
    scene = counterpart(loop_image, thing, vqgan)
    assert scene.shape == (64, 64, 3) and scene.dtype == np.uint8
    (found,) = read_scene(scene)
    assert (found.colour, found.shape, found.position) == ("green", "star", "right")
    assert np.abs(scene[:4, :4].astype(int) - (96, 130, 110)).max() <= 12  # the loop image's background


def test_loop_negatives_can_start_each_loop_from_its_prompts_scene(tmp_path):
    """--shapes keeps prompts of those shapes only; --start scene's init image is the prompt's scene,
    drawn cleanly, so what the loop makes of it is a pair for the right answer."""
    import numpy as np
    from PIL import Image

    from generator.shapes.checker import check
    from generator.shapes.loop_negatives import prompts, start_image

    scenes = prompts(6, seed=3, shapes=["star", "cross"])
    assert len(scenes) == 6 and {s.things[0].shape for s in scenes} <= {"star", "cross"}
    assert {s.things[0].shape for s in prompts(20, seed=3)} > {"star", "cross"}  # unfiltered: every shape
    for i, scene in enumerate(scenes[:3]):
        image = Image.open(start_image(scene, tmp_path / f"{i}.png")).convert("RGB")
        assert all(check(image, scene.things[0]).values())
        assert tuple(np.asarray(image)[0, 0]) == scene.background


def test_the_loop_attack_raises_the_models_score_of_its_captions_and_keeps_what_the_checker_rejects():
    """The attack is the loop's own optimisation, run on the model being trained: what it makes of a
    clean scene scores higher for the scene's caption (that is what the loop maximises), and what it
    returns as pairs are only the results the checker no longer reads as the scene's thing."""
    import torch
    import torch.nn.functional as F

    from generator.cutouts import MakeCutouts
    from generator.models import load_clip, load_vqgan
    from generator.shapes.clip_losses import encode_text
    from generator.shapes.loop_attack import LoopAttack
    from generator.shapes.loop_negatives import wrong
    from generator.shapes.world import World
    from generator.weight_records import SHAPES_RECOMMENDED

    torch.manual_seed(0)
    clip = load_clip("shapes-clip")
    attack = LoopAttack(load_vqgan("shapes")[0], steps=10, cutn=4, seed=1)
    encode = lambda tokens: encode_text(clip.model, tokens)  # noqa: E731
    scenes = [World("train", seed=5, two_shape_fraction=0.0).scene(i) for i in range(3)]
    clean, attacked = attack.attack(clip, encode, scenes)
    assert clean.shape == attacked.shape == (3, 3, 64, 64) and (clean - attacked).abs().max() > 0.1
    views = MakeCutouts(64, 32, 1.0, SHAPES_RECOMMENDED["augmentations"], padding="border")

    @torch.no_grad()
    def score(images):  # the loop's objective: the caption's cosine over the loop's augmented cutouts
        text = F.normalize(encode(clip.tokenizer([s.caption for s in scenes])), dim=-1)
        cutouts = [views(image[None], torch.Generator().manual_seed(2)) for image in images]
        return torch.stack([(F.normalize(clip.encode_image(c), dim=-1) @ t).mean() for c, t in zip(cutouts, text)])

    assert score(attacked).mean() > score(clean).mean()
    found = attack(clip, encode, 4)
    assert attack.tried == 4 and attack.found == (0 if found is None else len(found[0]))
    if found is not None:
        for image, caption in zip(found[1], found[2]):
            thing = next(s for s in (attack.world.scene(i) for i in range(4)) if s.caption == caption).things[0]
            assert wrong(image.mul(255).round().byte().permute(1, 2, 0).numpy(), thing)


def test_near_miss_twins_keep_colour_and_place_and_change_only_the_outline():
    """A near miss is the scene's thing almost right: the checker reads the same colour and position but
    never the scene's shape, and the pair has the loop negatives' layout, so train_clip reads it."""
    import numpy as np

    from generator.models import load_vqgan
    from generator.shapes.checker import read_scene
    from generator.shapes.loop_negatives import wrong
    from generator.shapes.near_miss import pairs, twin
    from generator.shapes.world import Thing

    rng = random.Random(0)
    for shape in ("star", "cross"):
        for position in ("left", "centre", "bottom"):
            thing = Thing("blue", shape, "large", position)
            image = twin(thing, (120, 110, 100), rng)
            found = read_scene(np.asarray(image))
            assert found and (found[0].colour, found[0].position) == ("blue", position)
            assert wrong(image, thing) and all(r.shape != shape for r in found)
    data = pairs(4, 3000, ["star", "cross"], load_vqgan("shapes")[0].eval())
    assert data["images"].shape == data["scenes"].shape == (4, 64, 64, 3) and len(data["captions"]) == 4
    assert not torch.equal(data["images"], data["scenes"])
    for scene, caption in zip(data["scenes"].numpy(), data["captions"]):
        (found,) = read_scene(scene)
        assert found.shape in caption and found.colour in caption  # the scene is still the caption's thing
    with pytest.raises(ValueError, match="not for a triangle"):
        twin(Thing("blue", "triangle", "large", "left"), (120, 110, 100), rng)


def test_a_cache_of_images_decoded_by_one_vqgan_is_never_read_for_another(tmp_path):
    """The `vqgan` negatives pool is named by the checkpoint's sha256: the recipe's VQGAN does not reuse a
    pool the bundled one decoded (the cache name once said only `_vqgan`)."""
    import torch

    from generator.shapes.clip_data import load_cache, vqgan_tag

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"one checkpoint"), b.write_bytes(b"another checkpoint")
    assert vqgan_tag(str(a)) != vqgan_tag(str(b)) and vqgan_tag("shapes") == "shapes"
    assert vqgan_tag(str(a)) == vqgan_tag(str(tmp_path / "." / "a.safetensors"))  # the bytes, not the path
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    torch.save({"decoded by": "a"}, cache_dir / f"shapes_train_v2_seed0_8_vqgan-{vqgan_tag(str(a))}_recolour0.5.pt")
    assert load_cache(cache_dir, 8, 0, None, str(a), recolour=0.5) == {"decoded by": "a"}
    with pytest.raises(Exception) as raised:  # b has no pool yet: it is decoded (and b is no checkpoint)
        load_cache(cache_dir, 8, 0, build_clip("vqclip-shapes-judge", None, seed=3).tokenizer, str(b), recolour=0.5)
    assert "b.safetensors" in str(raised.value)


def test_a_relational_scenes_first_hard_caption_turns_the_relation_round_and_the_others_keep_it():
    """"a blue square above a yellow triangle" -> "a blue square below a yellow triangle" (the two swap
    places), then the shape and the colour of the first thing changed in the same relation; with
    swap_places the same for two things joined by "and" that name their places."""
    from generator.shapes.world import relation

    world = World("train", seed=4, relational=1.0)
    _, scenes = world.batch(0, 60)
    altered = altered_captions(world, 0, scenes, random.Random(0))
    pairs = [(s, altered[3 * i:3 * i + 3]) for i, s in enumerate(scenes)
             if len(s.things) == 2 and (s.things[0].colour, s.things[0].shape) != (s.things[1].colour, s.things[1].shape)]
    assert len(pairs) > 5
    for s, (turned, *others) in pairs:
        word = relation(s.things)
        assert turned.replace(f" {relation(s.things[::-1])} ", f" {word} ") == s.caption and turned != s.caption
        for text in others:
            assert f" {word} " in text and text != s.caption and len(text.split()) == len(s.caption.split())


def test_text_only_training_moves_the_text_tower_and_leaves_the_image_tower_and_scale_as_they_were(tmp_path):
    from generator.shapes.clip_data import render_cache
    from generator.shapes.train_clip import TrainOptions, train

    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    cache = render_cache(64, 0, clip.tokenizer, None, pool=64, relational=1.0)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    train(clip, cache, TrainOptions(steps=2, batch=16, n_neg=4, negatives=("shuffle", "confetti"), text_negatives=3,
                                    hard_weight=1.0, text_only=True))
    after = clip.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(not k.startswith("visual.") and k != "logit_scale" for k in moved)
    assert "text_projection" in moved and "token_embedding.weight" in moved



def test_swap_places_makes_a_two_thing_captions_position_negative_its_mirror():
    """With swap_places, "a red star on the left and a blue circle on the right" gets "a red star on the
    right and a blue circle on the left"; without it the negatives are as they always were."""
    world = World("train", seed=4)
    _, scenes = world.batch(0, 80)
    unchanged = altered_captions(world, 0, scenes, random.Random(0))
    swapped = altered_captions(world, 0, scenes, random.Random(0), swap_places=True)
    named = [(s, swapped[3 * i], unchanged[3 * i]) for i, s in enumerate(scenes) if len(s.things) == 2
             and s.things[0].colour != s.things[1].colour and POSITION_PHRASES[s.things[0].position] in s.caption]
    assert len(named) > 3
    for s, text, before in named:
        here, there = (POSITION_PHRASES[t.position] for t in s.things)
        assert s.caption.index(here) < s.caption.index(there) and text.index(there) < text.index(here)
        assert sorted(text.split()) == sorted(s.caption.split()) and before != text


def test_mirror_images_swap_two_placed_things_and_train_with_them(tmp_path):
    """A two-thing scene whose caption places its things gets its mirror (the checker reads each thing at the
    other's place); one-thing scenes, unplaced captions and look-alike pairs get none."""
    from generator.shapes.checker import check_scene
    from generator.shapes.clip_data import mirror_images, render_cache
    from generator.shapes.train_clip import TrainOptions, train

    world = World("train", seed=4, relational=0.5)
    scenes = [world.scene(i) for i in range(60)]
    mirror, ok, parts = mirror_images(0, scenes, [s.caption for s in scenes])
    assert 5 < int(ok.sum()) < sum(len(s.things) == 2 for s in scenes) + 1
    for i, s in enumerate(scenes):
        if not ok[i]:
            assert not mirror[i].any()
            continue
        a, b = s.things
        swapped = (Thing(a.colour, a.shape, a.size, b.position), Thing(b.colour, b.shape, b.size, a.position))
        image = Image.fromarray(mirror[i].numpy())
        assert all(check_scene(image, swapped).values()) and not all(check_scene(image, s.things).values())
    unplaced = [i for i, s in enumerate(scenes) if len(s.things) == 2 and not any(
        p in s.caption for p in POSITION_PHRASES.values()) and not any(w in s.caption for w in ("above", "below", " of "))]
    assert unplaced and not ok[unplaced].any()
    two = [i for i, s in enumerate(scenes) if len(s.things) == 2]
    assert all(parts[2 * i:2 * i + 2] == [full_caption([t]) for t in scenes[i].things] for i in two)

    weights = []
    for mirror_weight, mirror_parts in ((0.0, False), (1.0, False), (1.0, True)):  # the same run, three ways
        clip = build_clip("vqclip-shapes-judge", None, seed=3)
        cache = render_cache(64, 0, clip.tokenizer, None, pool=64, relational=1.0, mirrors=True)
        assert cache["mirror_ok"].any() and cache["mirror_parts"].shape[:2] == (64, 2)
        train(clip, cache, TrainOptions(steps=2, batch=16, n_neg=4, negatives=("shuffle",), text_negatives=3,
                                        mirror_weight=mirror_weight, n_pair=8, mirror_parts=mirror_parts))
        weights.append(clip.model.visual.conv1.weight.detach().clone())
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])


def test_the_relation_measure_compares_a_caption_with_its_turned_round_meaning_not_its_rewording():
    """"A above B" against "A below B" (each thing at the other's place), never "B below A", which says the
    same: a guide that reads word order alone would score that pair at chance whatever it knows."""

    from generator.shapes.checker import read_scene
    from generator.shapes.clip_data import swapped
    from generator.shapes.clip_eval import relation_top1
    from generator.shapes.world import COLOURS, POSITIONS, parse_caption, relational_caption

    a, b = Thing("blue", "square", "large", "top"), Thing("yellow", "triangle", "small", "bottom")
    assert relational_caption(swapped((a, b))) == "a large blue square below a small yellow triangle"
    assert set(parse_caption(relational_caption(swapped((a, b))))) != {a, b}
    assert set(parse_caption(relational_caption((b, a)))) == {a, b}  # the rewording, which the measure avoids

    class Oracle:
        """A 'CLIP' that reads which colour is where: from pixels by the checker, from text by the parser.
        It scores a rewording exactly as the caption, so a measure that compared them would give 0%."""
        def __init__(self, sign):
            self.sign, self.model = sign, torch.nn.Module()

        def _embed(self, pairs):
            e = torch.zeros(len(COLOURS) * len(POSITIONS))
            for colour, position in pairs:
                e[COLOURS.index(colour) * len(POSITIONS) + list(POSITIONS).index(position)] = 1
            return e

        def encode_image(self, x):
            images = x.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
            return torch.stack([self._embed((r.colour, r.position) for r in read_scene(im)) for im in images]) + 1e-3

        def encode_text(self, captions):
            return self.sign * torch.stack([self._embed((t.colour, t.position) for t in parse_caption(c))
                                            for c in captions]) + 1e-3

    assert relation_top1(Oracle(1), n=40) > 0.9  # scenes of one colour twice tie, the rest are read right
    assert relation_top1(Oracle(-1), n=40) == 0.0


def test_a_saved_guide_keeps_every_token_the_worlds_captions_use_relational_ones_too(tmp_path):
    """`save` zeroes the token rows no caption of the world uses; a word it missed ("above" once) would be
    trained and then thrown away on saving."""
    from generator.shapes.clip_data import tokenize
    from generator.shapes.train_clip import save
    from generator.checkpoint import read_state_dict

    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    world = World("train", seed=4, relational=0.5)
    scenes = [world.scene(i) for i in range(300)]
    captions = [s.caption for s in scenes] + altered_captions(world, 0, scenes, random.Random(0))
    assert any(" above " in c for c in captions) and any(" to the right of " in c for c in captions)
    used = tokenize(clip.tokenizer, captions).unique()
    rows = read_state_dict(str(save(clip, "vqclip-shapes-judge", tmp_path)))["token_embedding.weight"]
    assert bool((rows[used].abs().sum(1) > 0).all())
    assert int((rows.abs().sum(1) > 0).sum()) < 100  # and the rest are zero


@pytest.mark.parametrize("bad, named", [
    (dict(negatives=("shuffle", "glitter")), "glitter"), (dict(text_negatives=4), "text_negatives"),
    (dict(batch=0), "batch"), (dict(mirror_weight=-1.0), "mirror_weight"), (dict(backgrounds=1.5), "backgrounds"),
    (dict(negatives=(), n_neg=4), "n_neg"), (dict(steps=-2), "steps"),
])
def test_train_options_refuse_a_bad_value_and_name_it(bad, named):
    from generator.shapes.train_clip import TrainOptions

    with pytest.raises(ValueError, match=named):
        TrainOptions(**bad)
    TrainOptions(negatives=(), n_neg=0)  # no negative images at all is a valid run


def test_train_refuses_a_loss_whose_data_it_was_not_given():
    from generator.shapes.train_clip import TrainOptions, train

    clip = build_clip("vqclip-shapes-judge", None, seed=3)
    with pytest.raises(ValueError, match="pair_weight needs pairs"):
        train(clip, {"images": None, "tokens": None, "hard": None}, TrainOptions(steps=1, pair_weight=1.0))
    with pytest.raises(ValueError, match="'loop' negatives"):
        train(clip, {"images": None, "tokens": None, "hard": None}, TrainOptions(steps=1, negatives=("loop",)))


def test_the_trainer_command_line_names_an_unknown_negative(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "generator.shapes.train_clip", "--negatives", "shuffle,glitter",
                          "--steps", "1", "--out", str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 2 and "glitter" in run.stderr and not any(tmp_path.iterdir())
