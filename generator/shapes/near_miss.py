"""Near misses: each training scene's thing drawn almost right, as pairs that teach a CLIP the exact shape.

    python -m generator.shapes.near_miss --n 2048 --out runs/near_miss.pt
    python -m generator.shapes.train_clip ... --loop-negatives runs/near_miss.pt --pair-weight 1

From grey, the loop draws spiky blobs with three or four points for a star prompt, and its guides rate
them stars (benchmarks/RESULTS.md, "Tenth round"). Here each one-thing star or cross training scene gets
a twin with the same colour, size, position and background but an outline that no caption names: a star
with 3, 4, 6 or 7 points, with blunt points, or with points of uneven length; a cross with uneven or
thick arms; either with its corners jittered. (The checker reads a jittered triangle or square as
itself, so those shapes have no near misses.) Both pass through the VQGAN, so they differ in the outline
alone; a twin in which the checker finds the scene's thing, before or after the VQGAN, is not used. The
file has the layout of `generator.shapes.loop_negatives` ("images": the twins, "scenes", "captions",
"negative"), so `train_clip --loop-negatives FILE --pair-weight W` makes each caption rank its scene
above its twin.
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from generator.models import ModelCache

from .loop_negatives import matches_no_caption, prompts, reconstructed, wrong
from .world import PALETTE, POSITIONS, SIZE, SIZES, SUPERSAMPLE, shape_polygon


def star_like(cx: float, cy: float, r: float, rng: random.Random) -> list[tuple[float, float]]:
    """A star that is not the world's: another number of points, blunt points, or uneven ones."""
    kind = rng.choice(("points", "blunt", "uneven"))
    points = rng.choice((3, 4, 6, 7)) if kind == "points" else 5
    inner = rng.uniform(0.68, 0.8) if kind == "blunt" else 0.45
    turn = rng.uniform(0, 2 * math.pi / points) if kind != "blunt" else 0.0
    out = []
    for k in range(2 * points):
        radius = r if k % 2 == 0 else inner * r
        if kind == "uneven" and k % 2 == 0:
            radius *= rng.uniform(0.45, 1.0)
        angle = turn + k * math.pi / points
        out.append((cx + radius * math.sin(angle), cy - radius * math.cos(angle)))
    return out


def cross_like(cx: float, cy: float, r: float, rng: random.Random) -> list[tuple[float, float]]:
    """A cross that is not the world's: arms of uneven length, or arms too thick."""
    t = r * (rng.uniform(0.5, 0.6) if rng.random() < 0.5 else 0.32)  # half the arm's thickness
    up, right, down, left = (r * 0.9 * (rng.uniform(0.35, 1.0) if t < r * 0.4 else 1.0) for _ in range(4))
    return [(cx - t, cy - up), (cx + t, cy - up), (cx + t, cy - t), (cx + right, cy - t), (cx + right, cy + t),
            (cx + t, cy + t), (cx + t, cy + down), (cx - t, cy + down), (cx - t, cy + t), (cx - left, cy + t),
            (cx - left, cy - t), (cx - t, cy - t)]


def jittered(polygon, r: float, rng: random.Random) -> list[tuple[float, float]]:
    """Every corner moved by up to a fifth of the radius: the outline of a shape drawn by an unsteady hand."""
    return [(x + rng.uniform(-0.2, 0.2) * r, y + rng.uniform(-0.2, 0.2) * r) for x, y in polygon]


MAKERS = {"star": star_like, "cross": cross_like}


def near_miss(thing, background, rng: random.Random) -> Image.Image:
    """`thing` drawn almost right (its colour, size and position; an outline no caption names), 64x64."""
    if thing.shape not in MAKERS:
        raise ValueError(f"near misses are drawn for {' and '.join(MAKERS)}, not for a {thing.shape}")
    s = SUPERSAMPLE
    x, y = POSITIONS[thing.position]
    x, y = (x + rng.uniform(-1.5, 1.5)) * s, (y + rng.uniform(-1.5, 1.5)) * s
    r = SIZES[thing.size] * rng.uniform(0.93, 1.07) * s
    polygon = MAKERS[thing.shape](x, y, r, rng) if rng.random() < 0.75 else \
        jittered(shape_polygon(thing.shape, x, y, r), r, rng)
    canvas = Image.new("RGB", (SIZE * s, SIZE * s), background)
    ImageDraw.Draw(canvas).polygon(polygon, fill=PALETTE[thing.colour])
    return canvas.resize((SIZE, SIZE), Image.BOX)


def twin(thing, background, rng: random.Random, tries: int = 20) -> Image.Image | None:
    """The first of `tries` near misses in which the checker does not find `thing` (None if it always does)."""
    for _ in range(tries):
        image = near_miss(thing, background, rng)
        if wrong(image, thing):
            return image
    return None


def pairs(n: int, seed: int, shapes, vqgan) -> dict:
    """n scenes of `shapes` from the training world and their near-miss twins, as a loop-negatives dict
    (a scene whose every near miss the checker reads as its thing is left out)."""
    rng, drawn, twins = random.Random(seed), [], []
    for scene in prompts(n, seed, shapes):
        image = twin(scene.things[0], scene.background, rng)
        if image is not None:
            drawn.append(scene)
            twins.append(image)
    scenes = [s.image for s in drawn]
    images = torch.cat([reconstructed(vqgan, twins[i:i + 128]) for i in range(0, len(twins), 128)])
    clean = torch.cat([reconstructed(vqgan, scenes[i:i + 128]) for i in range(0, len(scenes), 128)])
    return kept({"images": images, "captions": [s.caption for s in drawn], "scenes": clean},
                [s.things[0] for s in drawn])


def kept(data: dict, things) -> dict:
    """The pairs whose twin, after the VQGAN, the checker still does not read as its thing (the VQGAN can
    round a blunt point back), with the "negative" flag of each: whether no caption matches it."""
    keep = [i for i, (im, thing) in enumerate(zip(data["images"].numpy(), things)) if wrong(im, thing)]
    images = data["images"][keep]
    return {"images": images, "captions": [data["captions"][i] for i in keep], "scenes": data["scenes"][keep],
            "negative": torch.tensor([matches_no_caption(im.numpy()) for im in images])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048, help="scenes (one twin each)")
    parser.add_argument("--seed", type=int, default=3000, help="the training world's seed for the scenes")
    parser.add_argument("--shapes", default="star,cross", help="the scenes' shapes, comma-separated")
    parser.add_argument("--vqgan", default="shapes")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shapes = args.shapes.split(",")
    unknown = sorted(set(shapes) - set(MAKERS))
    if unknown:
        raise SystemExit(f"--shapes: no near misses for {unknown[0]!r}; choose from {', '.join(MAKERS)}")
    data = pairs(args.n, args.seed, shapes, ModelCache("cpu").vqgan(args.vqgan).eval())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, args.out)
    print(f"wrote {len(data['images'])} of {args.n} pairs to {args.out} "
          f"({int(data['negative'].sum())} match no caption after the VQGAN)", flush=True)


if __name__ == "__main__":
    main()
