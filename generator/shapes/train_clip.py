"""Train a small CLIP on the shapes world, contrastively, with fragment images as hard negatives.

    python -m generator.shapes.train_clip --arch vqclip-shapes --minutes 28 --batch 64 --n-neg 8 \
        --text-negatives 3 --hard-weight 1 --out runs/clip
    python -m generator.shapes.train_clip --arch vqclip-shapes-judge-rn --split all --seed 21 ... --out runs/judge

(the shipped models' exact commands: benchmarks/RESULTS.md, "Quality (shapes)").

The training scenes are rendered once into a cache of uint8 tensors (--cache-dir; images, tokenized
captions, tokenized hard text negatives, pools of negative images), so a step is only the model's
forward and backward. Positives are scenes with their captions, lightly shifted/rotated and noised (as
the engine's cutouts are). Captions of the scene with one attribute of its first thing changed are extra
text negatives. Negatives are extra images that no caption matches, so every caption must rank its scene
above them: `shuffle` (a scene cut into tiles and shuffled: its colours, not its shapes), `confetti`
(many small blobs), `blobs` (a few jagged blobs of one colour: what the loop draws when it fools its
guide), with --vqgan NAME|FILE, images decoded from random codes, and with --loop-negatives FILE, images
the loop drew and the checker rejected (`generator.shapes.loop_negatives`); with --pair-weight, each step
also asks the prompts of --n-pair of those images to rank the prompt's clean scene above the step's loop
images (`pair_loss`), so the blobs that fooled the guide score below the thing itself. With
--attack-weight, such pairs are found as the model trains: the loop itself attacks clean scenes through
the VQGAN, against the model as it is (`loop_attack`). With --adv-eps,
the positives are moved adversarially first (`adversarial`), which makes a robust model
(`shapes-robust`); --adv-clean trains on the clean positives too. With --path-weight, each step asks
--n-path scenes' captions to score the scene's way in from flat grey (the loop's start) in order
(`path.path_loss`); with --tint-weight, to score each scene's faint first fade above the same fade with
its colours turned round through grey (`path.tint_loss`). With --recolour F, a fraction F of the
scenes has its shapes redrawn in random colours off the palette and captions without colour words
(`recoloured`), so shape is learnt apart from colour (held-out shape accuracy 73% -> 96%). Writes
OUT/clip_<arch>.safetensors (fp16; token embeddings of words the world never uses are zeroed, so the
file compresses well) at every evaluation, and prints the held-out figures of `evaluate`.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generator.clip import build_clip
from generator.download import sha256_file
from generator.vit import _block

from . import backdrops, loop_negatives, path
from .budget import Budget
from .world import (COLOURS, HELD_OUT, PALETTE, POSITION_PHRASES, POSITIONS, RELATIONS, SHAPES, SIZES, World,
                    caption_for, full_caption, muted_background, redrawn_off_palette, relation, relational_caption,
                    render, to_tensor, wording)

NEGATIVE_KINDS = ("shuffle", "confetti", "vqgan", "blobs", "loop")


def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotate +-10 degrees, shift +-6%, add noise: what the engine's cutout augmentations do."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.12
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border",
                      align_corners=False)
    return x + torch.rand(n, 1, 1, 1, generator=gen) * 0.06 * torch.randn(x.shape, generator=gen)


def noised(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise to every image, at a standard deviation drawn uniformly from [0, sigma] per image
    (positives and negatives alike, so noise tells nothing): a model accurate under noise, whose gradient
    averaged over noise (the loop's `Gn` cutouts) follows outlines rather than pixel texture."""
    if not sigma:
        return x
    return x + torch.rand(len(x), 1, 1, 1, generator=gen) * sigma * torch.randn(x.shape, generator=gen)


def tile_shuffle(x: torch.Tensor, gen: torch.Generator, tile: int = 8) -> torch.Tensor:
    n, c, h, w = x.shape
    tiles = x.unfold(2, tile, tile).unfold(3, tile, tile).reshape(n, c, -1, tile, tile)
    perm = torch.randperm(tiles.shape[2], generator=gen)
    tiles = tiles[:, :, perm].reshape(n, c, h // tile, w // tile, tile, tile)
    return tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def confetti(n: int, rng: random.Random) -> np.ndarray:
    """Muted backgrounds strewn with 6-25 small blobs of palette colours, uint8 [n, 64, 64, 3]."""
    out = np.empty((n, 64, 64, 3), np.uint8)
    colours = list(PALETTE.values())
    for i in range(n):
        img = out[i]
        img[:] = muted_background(rng)
        for _ in range(rng.randint(6, 25)):
            x, y, r = rng.randrange(64), rng.randrange(64), rng.randint(1, 4)
            img[max(0, y - r):y + r, max(0, x - r):x + r] = rng.choice(colours)
    return out


def blobs(n: int, rng: random.Random, backgrounds: np.ndarray | None = None) -> np.ndarray:
    """3-6 jagged blobs of one palette colour (unions of small ellipses and boxes), anywhere, the border
    included, on a muted background or (half of them, given `backgrounds`) a random-code image: what the
    loop draws when it fools its guide. An image the checker reads as a scene of one or two things is
    drawn again, so that no caption matches any of them. uint8 [n, 64, 64, 3]."""
    from .checker import read_scene

    out = np.empty((n, 64, 64, 3), np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(n):
        while True:
            if backgrounds is not None and rng.random() < 0.5:
                out[i] = backgrounds[rng.randrange(len(backgrounds))]
            else:
                out[i] = muted_background(rng)
            mask = np.zeros((64, 64), bool)
            for _ in range(rng.randint(3, 6)):
                cx, cy = rng.uniform(0, 64), rng.uniform(0, 64)
                for _ in range(rng.randint(2, 4)):
                    x, y = cx + rng.uniform(-6, 6), cy + rng.uniform(-6, 6)
                    rx, ry = rng.uniform(1.5, 7), rng.uniform(1.5, 7)
                    if rng.random() < 0.5:
                        mask |= ((xx - x) / rx) ** 2 + ((yy - y) / ry) ** 2 <= 1
                    else:
                        mask |= (abs(xx - x) <= rx) & (abs(yy - y) <= ry)
            out[i][mask] = rng.choice(list(PALETTE.values()))
            if len(read_scene(out[i])) > 2:
                break
    return out


class RandomCodes:
    """Images decoded from uniformly random codes of a trained VQGAN (what the loop starts from)."""

    def __init__(self, path: str):
        from generator.models import load_vqgan

        self.model = load_vqgan(path)[0].eval()

    @torch.no_grad()
    def __call__(self, n: int, gen: torch.Generator) -> torch.Tensor:
        book = self.model.codebook
        idx = torch.randint(len(book), (n, 16, 16), generator=gen)
        return self.model.decode(book[idx].permute(0, 3, 1, 2)).add(1).div(2).clamp(0, 1)


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, tokens: torch.Tensor, n_pos: int, scale) -> torch.Tensor:
    """Symmetric InfoNCE: image i < n_pos goes with caption i; images and captions past the first n_pos
    are negatives only (fragment images; captions with one attribute changed); identical captions (same
    tokens) count as positives."""
    logits = scale * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T  # [n_txt, n_img]
    same = (tokens[None, :] == tokens[:n_pos, None]).all(-1).float()  # [n_pos, n_txt]
    t2i = -(F.log_softmax(logits[:n_pos], 1)[:, :n_pos] * same[:, :n_pos] / same[:, :n_pos].sum(1, keepdim=True)).sum(1).mean()
    i2t = -(F.log_softmax(logits[:, :n_pos].T, 1) * same / same.sum(1, keepdim=True)).sum(1).mean()
    return (t2i + i2t) / 2


def hard_negative_loss(img: torch.Tensor, txt: torch.Tensor, n_pos: int, scale) -> torch.Tensor:
    """Each scene's image against its own caption and only its altered captions (txt[n_pos:], k per
    scene in order): the fine distinctions (shape, position) that a random batch rarely asks for."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    candidates = torch.cat([txt[:n_pos, None], txt[n_pos:].view(n_pos, -1, txt.shape[-1])], 1)  # [n, 1+k, d]
    logits = scale * (candidates @ img[:, :, None]).squeeze(-1)
    return F.cross_entropy(logits, torch.zeros(n_pos, dtype=torch.long))


def pair_loss(scene: torch.Tensor, loop: torch.Tensor, caption: torch.Tensor, scale) -> torch.Tensor:
    """Each loop image's prompt (caption i) must rank the prompt's clean scene (scene i) above every loop
    image of the step: what the loop maximises must be higher for the thing than for its blobs."""
    c, s, b = (F.normalize(e, dim=-1) for e in (caption, scene, loop))
    logits = scale * torch.cat([(c * s).sum(-1, keepdim=True), c @ b.T], 1)
    return F.cross_entropy(logits, torch.zeros(len(c), dtype=torch.long))


def jittered_pair_loss(clip, both: torch.Tensor, tokens: torch.Tensor, scale, gen: torch.Generator):
    """`pair_loss` on jittered views of `both` (m clean scenes, then the m loop images of them) for their
    m captions' `tokens`: the loop negatives' pairs and the loop attack's alike."""
    views = clip.encode_image(jitter(both, gen))
    m = len(tokens)
    return pair_loss(views[:m], views[m:], encode_text(clip.model, tokens), scale)


@torch.no_grad()
def pair_preference(clip, pairs: dict, n: int = 512) -> float:
    """How often a loop image's prompt is closer to the prompt's clean scene than to the loop image."""
    model, was = clip.model, clip.model.training
    model.eval()
    k = min(n, len(pairs["images"]))
    c = F.normalize(encode_text(model, pairs["tokens"][:k]), dim=-1)
    s, b = (F.normalize(clip.encode_image(to_tensor(pairs[key][:k].numpy())), dim=-1) for key in ("scenes", "images"))
    model.train(was)
    return float(((c * s).sum(-1) > (c * b).sum(-1)).float().mean())


def adversarial(clip, x: torch.Tensor, txt: torch.Tensor, tokens: torch.Tensor, n_pos: int, scale, eps: float,
                steps: int, gen: torch.Generator) -> torch.Tensor:
    """x moved, within an L2 ball of radius eps per image, to where the model ranks its own captions lowest
    (projected gradient ascent on the contrastive and hard-caption losses, from a random start). Training
    on these makes the image tower robust, and a robust model's pixel gradients point at what the caption
    names (Santurkar et al. 2019): what the loop follows. txt: the step's caption embeddings, detached."""
    def norm(d):  # per image, shaped to broadcast over it
        return d.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)

    def project(d):
        return d * (eps / norm(d)).clamp(max=1)

    delta = project(torch.randn(x.shape, generator=gen) * eps / math.sqrt(x[0].numel()))
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        img = clip.encode_image((x + delta).clamp(0, 1))
        loss = contrastive_loss(img, txt[:n_pos], tokens[:n_pos], n_pos, scale)
        if len(txt) > n_pos:
            loss = loss + hard_negative_loss(img, txt, n_pos, scale)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = project(delta.detach() + alpha * grad / norm(grad))
    return (x + delta).clamp(0, 1).detach()


def swapped(things) -> list:
    """Two things, each at the other's place: "A above B" -> "A below B"."""
    a, b = things
    return [dataclasses.replace(a, position=b.position), dataclasses.replace(b, position=a.position)]


def altered_captions(world: World, start: int, scenes, rng: random.Random, swap_places: bool = False) -> list[str]:
    """For each scene (scenes start, start+1, ... of `world`), three captions in its own template with one
    attribute of its first thing changed: position (shape when the caption leaves position out), shape,
    colour. In a random batch colour alone tells most captions apart, so without these, shape and
    position are barely learnt. In the train split no changed caption names a held-out colour/shape pair:
    those must never be seen, not even as negatives. A two-thing scene captioned in one another's terms
    ("above"), or with `swap_places` any two-thing caption that names places, has its position changed by
    the two things swapping places: what tells the scene from its mirror is which thing is where."""
    values = {"colour": COLOURS, "shape": SHAPES, "position": tuple(POSITIONS)}
    out = []
    for i, s in enumerate(scenes, start):
        first, rest = s.things[0], list(s.things[1:])
        mentioned = POSITION_PHRASES[first.position] in s.caption
        relational = world.relational_at(i) is not None and relation(s.things)
        # two things of one colour and shape read the same swapped (a false negative): changed otherwise
        tellable = len(s.things) == 2 and (first.colour, first.shape) != (rest[0].colour, rest[0].shape)
        if tellable and (relational or (swap_places and mentioned)):  # "above" -> "below"
            out.append(world.recaption(i, swapped(s.things)))
            attributes = ("shape", "colour")
        else:
            attributes = ("position" if mentioned else "shape", "shape", "colour")
        for attribute in attributes:
            taken = {getattr(t, attribute) for t in rest} if attribute == "position" else set()
            options = [v for v in values[attribute] if v != getattr(first, attribute) and v not in taken]
            if world.split == "train" and attribute != "position":
                options = [v for v in options
                           if (dataclasses.replace(first, **{attribute: v}).colour,
                               dataclasses.replace(first, **{attribute: v}).shape) not in HELD_OUT]
            altered = dataclasses.replace(first, **{attribute: rng.choice(options)})
            out.append(world.recaption(i, [altered] + rest))
    return out


def encode_text(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text, batch-first through generator.vit's block, on the tokens up to the
    longest caption's end token only: with the causal mask, padding after it changes nothing."""
    length = int(tokens.argmax(1).max()) + 1  # the end token has the highest id
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    for block in model.transformer.resblocks:
        x = _block(block, x, cls_only=False, causal=True)
    x = model.ln_final(x)
    return x[torch.arange(len(x)), tokens.argmax(1)] @ model.text_projection


def tokenize(tokenizer, texts: list[str]) -> torch.Tensor:
    """Tokenize each distinct text once."""
    unique = sorted(set(texts))
    table = tokenizer(unique)
    index = {t: i for i, t in enumerate(unique)}
    return table[[index[t] for t in texts]]


def recoloured(world: World, index: int, scene, fraction: float):
    """None, or (with probability `fraction`) scene `index` redrawn with its shapes in random colours off
    the palette, its caption and three altered captions (shape or position changed) without colour
    words: shape is then learnt apart from the colours it comes in, and no held-out pair is ever named."""
    rng = random.Random(f"recolour:{world.split}:{world.seed}:{index}")
    if rng.random() >= fraction:
        return None
    image = redrawn_off_palette(scene, rng)
    first, rest = scene.things[0], list(scene.things[1:])
    template = rng.random()  # every caption in the same template, with the same words left out
    mentions_position = wording(random.Random(template))[1]
    shapes = rng.sample([v for v in SHAPES if v != first.shape], 3)
    altered = [dataclasses.replace(first, shape=v) for v in shapes]
    if mentions_position:
        taken = {t.position for t in rest} | {first.position}
        altered[0] = dataclasses.replace(first, position=rng.choice([p for p in POSITIONS if p not in taken]))
    captions = [caption_for([t] + rest, random.Random(template), with_colour=False) for t in [first] + altered]
    return image, captions[0], captions[1:]


def render_cache(n: int, seed: int, tokenizer, vqgan: str | None, pool: int = 2048, split: str = "train",
                 recolour: float = 0.0, relational: float = 0.0, swap_places: bool = False,
                 mirrors: bool = False) -> dict:
    """n training scenes of World(split, seed) as uint8 [n, 64, 64, 3], their tokenized captions [n, L]
    and hard text negatives [n, 3, L] (`altered_captions`; a fraction `recolour` of them `recoloured`),
    and pools of negative images. `relational`: World's fraction of two-thing scenes captioned in one
    another's terms; `swap_places`: see `altered_captions`; `mirrors`: `mirror_images` too."""
    world, rng = World(split, seed=seed, relational=relational), random.Random(seed)
    images, captions, hard = np.empty((n, 64, 64, 3), np.uint8), [], []
    mirrored = []  # with `mirrors`, each batch's (mirror images, which have one, part captions)
    for start in range(0, n, 1000):
        batch, scenes = world.batch(start, min(1000, n - start))
        images[start:start + len(batch)] = batch
        captions += [s.caption for s in scenes]
        hard += altered_captions(world, start, scenes, rng, swap_places)
        for i, scene in enumerate(scenes, start):
            redrawn = recoloured(world, i, scene, recolour) if recolour else None
            if redrawn:
                images[i], captions[i], hard[3 * i:3 * i + 3] = redrawn
        if mirrors:
            mirrored.append(mirror_images(start, scenes, captions[start:]))
    cache = {"images": torch.from_numpy(images), "tokens": tokenize(tokenizer, captions),
             "hard": tokenize(tokenizer, hard).view(n, 3, -1), "confetti": torch.from_numpy(confetti(pool, rng))}
    if mirrors:
        cache["mirror"] = torch.cat([m for m, _, _ in mirrored])
        cache["mirror_ok"] = torch.cat([ok for _, ok, _ in mirrored])
        cache["mirror_parts"] = tokenize(tokenizer, [c for _, _, parts in mirrored for c in parts]).view(n, 2, -1)
    if vqgan:
        codes, gen = RandomCodes(vqgan), torch.Generator().manual_seed(seed)
        decoded = torch.cat([codes(64, gen) for _ in range(pool // 64)])
        cache["vqgan"] = decoded.mul(255).round().byte().permute(0, 2, 3, 1).contiguous()
    return cache


def mirror_images(start: int, scenes, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """For each of the scenes (indices start, start+1, ...) whose caption as trained (`captions`, in the same
    order) places two things of different colours or shapes, the scene with the two swapped
    ([n, 64, 64, 3] uint8, zeros elsewhere) and which scenes have one: the image a caption that says which
    thing is where must rank below its own scene. Also each scene's two things' own one-thing captions ("a
    large red star on the left"; 2n, the scene's caption twice where there is no mirror): captions the
    text tower already tells from their mirror's."""
    n = len(scenes)
    out, ok, parts = np.zeros((n, 64, 64, 3), np.uint8), np.zeros(n, bool), []
    for k, (scene, caption) in enumerate(zip(scenes, captions)):
        i = start + k
        parts += [full_caption([t]) for t in scene.things] if len(scene.things) == 2 else [caption] * 2
        if len(scene.things) != 2 or caption != scene.caption:  # one thing, or recoloured
            continue
        a, b = scene.things
        word = relation(scene.things)
        placed = (word is not None and f" {word} " in scene.caption) or \
            all(POSITION_PHRASES[t.position] in scene.caption for t in scene.things)
        if placed and (a.colour, a.shape) != (b.colour, b.shape):
            image = render(swapped(scene.things), scene.background, random.Random(f"mirror:{i}"))
            out[k], ok[k] = np.asarray(image), True
    return torch.from_numpy(out), torch.from_numpy(ok), parts


def add_blobs(cache: dict, seed: int, pool: int = 2048) -> None:
    """The `blobs` pool, drawn at every start that asks for it (not kept in the cache file; one written by
    bb53aa4 holds an older draw, which this replaces)."""
    backgrounds = cache["vqgan"].numpy() if "vqgan" in cache else None
    cache["blobs"] = torch.from_numpy(blobs(pool, random.Random(seed + 1), backgrounds))


def vqgan_tag(vqgan: str) -> str:
    """Which VQGAN decoded a cache's `vqgan` pool: the first 12 hex digits of a checkpoint file's sha256, or
    the registry name, so that a pool decoded by one VQGAN is never read for another."""
    path = Path(vqgan)
    return sha256_file(path).hexdigest()[:12] if path.is_file() else vqgan.replace("/", "_")


def load_cache(directory: Path, n: int, seed: int, tokenizer, vqgan: str | None, split: str = "train",
               recolour: float = 0.0, relational: float = 0.0, swap_places: bool = False,
               mirrors: bool = False) -> dict:
    path = directory / (f"shapes_{split}_v2_seed{seed}_{n}{f'_vqgan-{vqgan_tag(vqgan)}' if vqgan else ''}"
                        f"{f'_recolour{recolour:g}' if recolour else ''}"
                        f"{f'_relational{relational:g}' if relational else ''}{'_swap' if swap_places else ''}"
                        f"{'_mirrors' if mirrors else ''}.pt")
    if path.is_file():
        cache = torch.load(path)
    else:
        start = time.time()
        cache = render_cache(n, seed, tokenizer, vqgan, split=split, recolour=recolour, relational=relational,
                             swap_places=swap_places, mirrors=mirrors)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(cache, path)
        print(f"rendered {n} scenes into {path} in {time.time() - start:.0f}s", flush=True)
    return cache


def train(clip, cache: dict, minutes: float, batch: int, n_neg: int, negatives: list[str], seed: int,
          lr: float, text_negatives: int, eval_every: float, out: Path, arch: str, hard_weight: float = 0.0,
          adv_eps: float = 0.0, adv_steps: int = 3, adv_clean: bool = False, steps: int | None = None,
          pairs: dict | None = None, n_pair: int = 8, pair_weight: float = 0.0, attack=None, attack_n: int = 4,
          attack_weight: float = 0.0, noise_sigma: float = 0.0, path_weight: float = 0.0, n_path: int = 8,
          path_things: bool = False, backgrounds: float = 0.0, contrast_weight: float = 0.0,
          tint_weight: float = 0.0, text_only: bool = False, mirror_weight: float = 0.0, mirror_parts: bool = False):
    """text_only: train the text tower alone; the image tower (and so every pixel gradient it gives the loop
    for a given text embedding) and the logit scale stay as they are."""
    torch.manual_seed(seed)
    gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    model = clip.model.train().requires_grad_(True)
    if text_only:
        model.visual.requires_grad_(False)
        model.logit_scale.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.05)
    images, tokens, hard = cache["images"], cache["tokens"], cache["hard"]
    colour_ids = clip.tokenizer(list(COLOURS))[:, 1]  # each colour word is one token
    kinds = [k for k in negatives if k != "none"]
    order, pos = torch.randperm(len(images), generator=gen), 0
    budget, step, next_eval = Budget(minutes, steps), 0, eval_every * 60
    while not budget.done(step):
        warm = min(1.0, (step + 1) / 30)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * budget.progress(step))))
        if pos + batch > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        x = to_tensor(images[idx].numpy())
        if backgrounds:
            x = backdrops.new_backgrounds(x, backgrounds, gen)
        parts = [jitter(x, gen)]
        for j, kind in enumerate(kinds):
            k = n_neg // len(kinds) + (j < n_neg % len(kinds))
            if kind == "shuffle":
                parts.append(tile_shuffle(x[:k], gen, rng.choice([4, 8, 16])))
            else:
                parts.append(to_tensor(cache[kind][torch.randint(len(cache[kind]), (k,), generator=gen)].numpy()))
        # text negatives: `text_negatives` of the three altered captions of each scene, at random
        pick = torch.rand(batch, 3, generator=gen).argsort(1)[:, :text_negatives]
        txt_tokens = torch.cat([tokens[idx], hard[idx[:, None], pick].flatten(0, 1)])
        scale = model.logit_scale.exp().clamp(max=100)
        if adv_eps:
            with torch.no_grad():
                txt_fixed = encode_text(model, txt_tokens)
            moved = adversarial(clip, parts[0], txt_fixed, txt_tokens, batch, scale.detach(), adv_eps, adv_steps, gen)
            parts = parts + [moved] if adv_clean else [moved] + parts[1:]
        img_emb = clip.encode_image(noised(torch.cat(parts), noise_sigma, gen))
        txt_emb = encode_text(model, txt_tokens)
        # with adv_clean, the clean positives and then the moved ones, each beside the same negatives
        views = [img_emb[:-batch], torch.cat([img_emb[-batch:], img_emb[batch:-batch]])] if adv_eps and adv_clean \
            else [img_emb]
        loss = 0
        for view in views:
            loss = loss + contrastive_loss(view, txt_emb, txt_tokens, batch, scale)
            if hard_weight and text_negatives:
                loss = loss + hard_weight * hard_negative_loss(view[:batch], txt_emb, batch, scale)
        if pairs is not None and pair_weight:
            j = torch.randint(len(pairs["images"]), (n_pair,), generator=gen)
            both = to_tensor(torch.cat([pairs["scenes"][j], pairs["images"][j]]).numpy())
            loss = loss + pair_weight * jittered_pair_loss(clip, both, pairs["tokens"][j], scale, gen)
        if contrast_weight:  # captions that name a colour rank their scene above its grey things
            named = torch.isin(tokens[idx], colour_ids).any(1).nonzero().squeeze(1)[:n_pair]
            if len(named):
                both = torch.cat([x[named], backdrops.greyed_things(x[named], gen)])
                loss = loss + contrast_weight * jittered_pair_loss(clip, both, tokens[idx][named], scale, gen)
        if mirror_weight:  # captions that place two things rank their scene above its mirror
            placed = idx[cache["mirror_ok"][idx]][:n_pair]
            scenes, mirrored, captions = images[placed], cache["mirror"][placed], tokens[placed]
            if mirror_parts:  # for each thing's own caption: the image tower learns where is which
                scenes, mirrored = scenes.repeat(2, 1, 1, 1), mirrored.repeat(2, 1, 1, 1)
                captions = cache["mirror_parts"][placed].transpose(0, 1).flatten(0, 1)
            if len(placed):
                both = to_tensor(torch.cat([scenes, mirrored]).numpy())
                loss = loss + mirror_weight * jittered_pair_loss(clip, both, captions, scale, gen)
        if path_weight:  # the first n_path scenes' way in from grey, each level jittered like a cutout
            views = jitter(path.path_views(x[:n_path], path_things).flatten(0, 1), gen)
            loss = loss + path_weight * path.path_loss(clip.encode_image(views), txt_emb[:n_path], scale)
        if tint_weight:  # the first n_path scenes' faint fade above the same fade with its colours turned round
            views = jitter(path.tint_views(x[:n_path]).flatten(0, 1), gen)
            loss = loss + tint_weight * path.tint_loss(clip.encode_image(views), txt_emb[:n_path], scale)
        found = attack(clip, lambda t: encode_text(model, t), attack_n) if attack_weight else None
        if found is not None:
            scenes, attacked, captions = found
            loss = loss + attack_weight * jittered_pair_loss(clip, torch.cat([scenes, attacked]),
                                                             clip.tokenizer(captions), scale, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} {budget.elapsed():.0f}s {step / budget.elapsed():.2f} steps/s loss {loss.item():.3f} "
                  f"scale {model.logit_scale.exp().item():.1f}"
                  + (f" attacks that fooled the checker {attack.found}/{attack.tried}" if attack_weight else ""),
                  flush=True)
        if eval_every and budget.elapsed() > next_eval:
            next_eval += eval_every * 60
            save(clip, arch, out)
            print(f"step {step} {budget.elapsed():.0f}s held-out:", evaluate(clip, 200), flush=True)
            if pairs is not None:
                print(f"step {step} scene above loop image: {pair_preference(clip, pairs):.1%}", flush=True)
            if path_weight:
                print(f"step {step} way in from grey in order: {heldout_order(clip):.1%}", flush=True)
            model.train()
    print(f"trained {step} steps of {batch}+{n_neg} images, {batch}x{1 + text_negatives} captions "
          f"in {budget.elapsed():.0f}s", flush=True)
    return clip


def heldout_order(clip, measure=path.path_order, n: int = 200, seed: int = 5) -> float:
    """`measure` (`path.path_order`: the way in from grey; `path.tint_order`) on n held-out scenes of
    World("heldout", seed)."""
    images, scenes = World("heldout", seed=seed).batch(0, n)
    return measure(clip.encode_image, lambda t: encode_text(clip.model, t), to_tensor(np.asarray(images)),
                   clip.tokenizer([s.caption for s in scenes]))


def variants(thing, attribute: str) -> list[str]:
    """Full captions of `thing` with `attribute` set to each of its values (the true one first)."""
    values = {"colour": COLOURS, "shape": SHAPES, "size": tuple(SIZES), "position": tuple(POSITIONS)}[attribute]
    own = getattr(thing, attribute)
    return [full_caption([thing.__class__(**{**thing.__dict__, attribute: v})]) for v in [own] + [v for v in values if v != own]]


@torch.no_grad()
def relation_top1(clip, n: int = 200, seed: int = 0) -> float:
    """How often a held-out two-thing scene's relational caption ("a large blue square above a small yellow
    triangle") scores it above the same caption with the relation turned round ("... below ...")."""
    clip.model.eval()
    images, scenes = World("heldout", seed=seed, two_shape_fraction=1.0).batch(0, n)
    img = F.normalize(clip.encode_image(to_tensor(images)), dim=-1)
    right = F.normalize(clip.encode_text([relational_caption(s.things) for s in scenes]), dim=-1)
    turned = F.normalize(clip.encode_text([relational_caption(swapped(s.things)) for s in scenes]), dim=-1)
    return float(((img * right).sum(1) > (img * turned).sum(1)).float().mean())


@torch.no_grad()
def evaluate(clip, n: int = 300, seed: int = 0) -> dict:
    """Held-out caption retrieval top-1 (among the unique captions of n held-out scenes), per-attribute
    top-1 among captions differing in that attribute only (one-shape scenes), and how often a caption
    prefers its scene to the same scene tile-shuffled."""
    clip.model.eval()
    images, scenes = World("heldout", seed=seed, two_shape_fraction=0.0).batch(0, n)
    x = to_tensor(images)
    img = F.normalize(clip.encode_image(x), dim=-1)
    captions = sorted({s.full_caption for s in scenes})
    txt = F.normalize(clip.encode_text(captions), dim=-1)
    top = (img @ txt.T).argmax(1)
    retrieval = np.mean([captions[i] == s.full_caption for i, s in zip(top.tolist(), scenes)])
    result = {"retrieval_top1": float(retrieval), "n_captions": len(captions)}
    for attribute in ("colour", "shape", "position", "size"):
        lists = [variants(s.things[0], attribute) for s in scenes]
        unique = sorted({c for v in lists for c in v})
        emb = F.normalize(clip.encode_text(unique), dim=-1)
        rows = {c: i for i, c in enumerate(unique)}
        hits = [int((emb[[rows[c] for c in v]] @ e).argmax()) == 0 for e, v in zip(img, lists)]
        result[attribute] = float(np.mean(hits))
    shuffled = F.normalize(clip.encode_image(tile_shuffle(x, torch.Generator().manual_seed(0))), dim=-1)
    own = txt[[captions.index(s.full_caption) for s in scenes]]
    result["beats_shuffled"] = float(((own * img).sum(1) > (own * shuffled).sum(1)).float().mean())
    return result


def used_token_ids(tokenizer) -> torch.Tensor:
    """Every token id the world's captions can produce (with start/end/padding)."""
    words = list(COLOURS) + list(SHAPES) + list(SIZES) + ["a an picture of on the plain background and left right "
                                                           "top bottom centre in at", *RELATIONS]
    return tokenizer(words).flatten().unique()


def save(clip, arch: str, out: Path) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in clip.model.state_dict().items()}
    keep = torch.zeros(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    keep[used_token_ids(clip.tokenizer)] = True
    state["token_embedding.weight"][~keep] = 0
    path = out / f"clip_{arch.replace('vqclip-', '').replace('-', '_')}.safetensors"
    save_file(state, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vqclip-shapes")
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--steps", type=int, help="train exactly this many steps (repeatable) instead of --minutes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--negatives", default="shuffle,confetti,vqgan,blobs", help=f"comma-separated of {NEGATIVE_KINDS}, or none")
    parser.add_argument("--n-neg", type=int, default=16, help="negative images per step")
    parser.add_argument("--text-negatives", type=int, default=1, choices=(0, 1, 2, 3),
                        help="captions with one attribute changed, per scene and step")
    parser.add_argument("--hard-weight", type=float, default=1.0,
                        help="weight of the loss of each image against its own altered captions only")
    parser.add_argument("--vqgan", default="shapes", help="VQGAN (name or checkpoint) for the 'vqgan' negatives")
    parser.add_argument("--scenes", type=int, default=40000, help="training scenes in the cache")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--data-seed", type=int, default=0, help="the training world's seed")
    parser.add_argument("--split", default="train", choices=("train", "all"),
                        help="the world's split to train on: 'all' (every colour/shape pair) only for the judge, "
                             "which scores held-out prompts and guides nothing")
    parser.add_argument("--recolour", type=float, default=0.0,
                        help="fraction of scenes redrawn off the palette and captioned without colour words")
    parser.add_argument("--swap-places", action="store_true",
                        help="a two-thing caption's position negative is the two things swapped ('a red star on the "
                             "right and a blue circle on the left'): teaches which thing is where")
    parser.add_argument("--mirror-weight", type=float, default=0.0,
                        help="weight of ranking each two-thing scene above its mirror (the things swapped) for its "
                             "caption, where the caption places them; --n-pair scenes a step")
    parser.add_argument("--mirror-parts", action="store_true",
                        help="--mirror-weight ranks for each thing's own caption ('a large red star on the left') "
                             "instead of the scene's")
    parser.add_argument("--text-only", action="store_true",
                        help="train the text tower alone (e.g. to teach a guide new wording without moving its image tower)")
    parser.add_argument("--relational", type=float, default=0.0,
                        help="fraction of two-thing scenes captioned in one another's terms ('a blue square above "
                             "a yellow triangle'); 0 leaves every caption as before")
    parser.add_argument("--init", help="fine-tune from this checkpoint")
    parser.add_argument("--loop-negatives", type=Path, nargs="+",
                        help="files of generator.shapes.loop_negatives: adds the 'loop' negatives")
    parser.add_argument("--pair-weight", type=float, default=0.0,
                        help="weight of the loss that ranks each loop image's prompt scene above the loop images "
                             "(needs loop negatives written with their prompts)")
    parser.add_argument("--n-pair", type=int, default=8,
                        help="loop images (and their scenes) per step for --pair-weight")
    parser.add_argument("--path-weight", type=float, default=0.0,
                        help="weight of the loss that ranks each scene's way in from flat grey in order (path.py)")
    parser.add_argument("--n-path", type=int, default=8, help="scenes per step for --path-weight and --tint-weight")
    parser.add_argument("--tint-weight", type=float, default=0.0,
                        help="weight of the loss that ranks each scene's faint fade from grey above the same fade "
                             "with its colours turned round through grey (path.tint_loss)")
    parser.add_argument("--path-things", action="store_true",
                        help="--path-weight fades in each scene's things on grey, not the whole scene")
    parser.add_argument("--backgrounds", type=float, default=0.0,
                        help="fraction of scenes whose background is repainted in a random colour far from their things")
    parser.add_argument("--contrast-weight", type=float, default=0.0,
                        help="weight of the loss that ranks --n-pair scenes above their things in grey, for captions "
                             "that name a colour (backdrops.py)")
    parser.add_argument("--attack-weight", type=float, default=0.0,
                        help="weight of the pairs the loop's own attack finds as the model trains (loop_attack)")
    parser.add_argument("--attack-n", type=int, default=4, help="scenes the loop attacks per step")
    parser.add_argument("--attack-steps", type=int, default=12, help="loop steps of each attack")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--noise-sigma", type=float, default=0.0,
                        help="add Gaussian noise of standard deviation up to this to every training image")
    parser.add_argument("--adv-eps", type=float, default=0.0,
                        help="train on adversarial positives within this L2 radius per 64x64 image (0: off)")
    parser.add_argument("--adv-steps", type=int, default=3, help="gradient steps of each adversarial search")
    parser.add_argument("--adv-clean", action="store_true",
                        help="train on the clean positives too, beside the adversarial ones (keeps clean accuracy)")
    parser.add_argument("--eval-every", type=float, default=10.0, help="minutes between checkpoints + evaluations")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-only", type=Path, help="measure this checkpoint of --arch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from generator.checkpoint import read_state_dict
    from generator.models import load_vqgan

    from .loop_attack import LoopAttack

    if args.eval_only:
        clip = build_clip(args.arch, read_state_dict(args.eval_only))
    else:
        negatives = args.negatives.split(",")
        unknown = set(negatives) - set(NEGATIVE_KINDS) - {"none"}
        if unknown:
            parser.error(f"unknown negatives {sorted(unknown)}: choose from {NEGATIVE_KINDS}")
        if args.loop_negatives and "loop" not in negatives:
            negatives.append("loop")
        if "loop" in negatives and not args.loop_negatives:
            parser.error("'loop' negatives need --loop-negatives FILE")
        state = {k: v.float() for k, v in read_state_dict(args.init).items()} if args.init else None
        clip = build_clip(args.arch, state, seed=args.seed)
        cache = load_cache(args.cache_dir, args.scenes, args.data_seed, clip.tokenizer,
                           args.vqgan if "vqgan" in negatives else None, args.split, args.recolour, args.relational,
                           args.swap_places, args.mirror_weight > 0)
        if "blobs" in negatives:
            add_blobs(cache, args.data_seed)
        pairs = None
        if args.loop_negatives:
            cache["loop"], pairs = loop_negatives.read(args.loop_negatives, clip.tokenizer)
        if args.pair_weight and pairs is None:
            parser.error("--pair-weight needs --loop-negatives files written with their prompts")
        if pairs is not None:
            print(f"{len(pairs['images'])} loop images with their prompts; scene above loop image: "
                  f"{pair_preference(clip, pairs):.1%}", flush=True)
        if args.path_weight:
            print(f"way in from grey in order: {heldout_order(clip):.1%}", flush=True)
        train(clip, cache, args.minutes, args.batch, args.n_neg, negatives, args.seed, args.lr,
              args.text_negatives, args.eval_every, args.out, args.arch, args.hard_weight,
              args.adv_eps, args.adv_steps, args.adv_clean, steps=args.steps, pairs=pairs, n_pair=args.n_pair,
              pair_weight=args.pair_weight, attack_n=args.attack_n, attack_weight=args.attack_weight,
              noise_sigma=args.noise_sigma, path_weight=args.path_weight, n_path=args.n_path,
              path_things=args.path_things, backgrounds=args.backgrounds, contrast_weight=args.contrast_weight,
              tint_weight=args.tint_weight, text_only=args.text_only, mirror_weight=args.mirror_weight,
              mirror_parts=args.mirror_parts,
              attack=LoopAttack(load_vqgan(args.vqgan)[0], args.attack_steps, seed=args.seed)
              if args.attack_weight else None)
        if pairs is not None:
            print(f"scene above loop image: {pair_preference(clip, pairs):.1%}", flush=True)
        if args.path_weight:
            print(f"way in from grey in order: {heldout_order(clip):.1%}", flush=True)
        if args.tint_weight:
            print(f"faint fade above the turned-round one: {heldout_order(clip, path.tint_order):.1%}", flush=True)
        print("saved", save(clip, args.arch, args.out), flush=True)
    print("held-out:", evaluate(clip), flush=True)
    print(f"held-out relation (caption above the one turned round): {relation_top1(clip):.1%}", flush=True)


if __name__ == "__main__":
    main()
