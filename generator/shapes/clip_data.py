"""The training data of a shapes CLIP (`train_clip`): scenes, captions and negatives, rendered once.

`render_cache` draws n scenes of the world into uint8 tensors with their tokenized captions, three altered
captions per scene (`altered_captions`: one attribute of the first thing changed, or two things swapped)
and pools of negative images no caption matches (`confetti`, `blobs`, images decoded from random codes by
`RandomCodes`); optionally a fraction of the scenes `recoloured` off the palette and, for two-thing
scenes, `mirror_images`. `load_cache` keeps it as a file named by everything that changes it.
"""
from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path

import numpy as np
import torch

from generator.download import sha256_file

from .world import (COLOURS, HELD_OUT, PALETTE, POSITION_PHRASES, POSITIONS, SHAPES, World, caption_for, full_caption,
                    muted_background, redrawn_off_palette, relation, render, wording)

NEGATIVE_KINDS = ("shuffle", "confetti", "vqgan", "blobs", "loop")


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
