"""Images that the loop draws and the checker rejects: negatives that teach a CLIP what fools it.

    python -m generator.shapes.loop_negatives --clip vqclip-shapes=runs/clip5/clip_shapes.safetensors \
        --n 256 --out runs/loop_negatives.pt

VQGAN+CLIP with the given guide runs on prompts of the *training* split (never a held-out pair), with
the shapes pair's recommended settings, several at a time (`GenerationBatch`). Each image the checker
does not read as the prompt's thing (wrong colour, shape or position, or more than one blob) is kept.
Writes, for `train_clip --loop-negatives FILE`, a dict: "images" (uint8 [n, 64, 64, 3]), "captions" (the
prompt each was drawn for), "scenes" (`counterpart`: the prompt's thing drawn cleanly on the loop image's
background and passed through the VQGAN, uint8 [n, 64, 64, 3]), so a CLIP can be taught that the prompt
goes with the scene and not with the loop's image, and cannot tell them apart by background or by the
VQGAN's texture; and "negative" (bool [n]): whether no caption at all matches the image (`rejected`). An
image the checker reads as some other one-thing scene (a star prompt drawn as a clean triangle) is no
negative for every caption, only for its prompt's. Prints how many were wrong.

With `--start scene` each loop starts from its prompt's scene drawn cleanly rather than from a flat
colour: what the loop makes of the right answer (a star whose points it wears away, because the guides
score the eroded star above the clean one) is then a pair for that answer.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from generator import GenerationConfig
from generator.batch import GenerationBatch
from generator.engine import Generation
from generator.models import ModelCache
from generator.weight_records import SHAPES_RECOMMENDED

from .checker import UNCLEAR, check, read_scene
from .world import SHAPES, World, render, to_tensor


def prompts(n: int, seed: int, shapes=None):
    """n one-shape training scenes (only of `shapes`, when given)."""
    world, out, i = World("train", seed=seed, two_shape_fraction=0.0), [], 0
    while len(out) < n:
        scene, i = world.scene(i), i + 1
        if not shapes or scene.things[0].shape in shapes:
            out.append(scene)
    return out


def start_image(scene, path: Path) -> str:
    """`scene` drawn cleanly into the PNG `path`: an init image for a loop that starts at the answer."""
    render(scene.things, scene.background).save(path)
    return str(path)


def wrong(image, thing) -> bool:
    """The checker does not find the prompt's thing."""
    verdict = check(image, thing)
    return not all(verdict[a] for a in ("colour", "shape", "position"))


def matches_no_caption(image) -> bool:
    """The checker does not find a single clean thing (one blob whose shape it cannot read, "unclear",
    matches no caption either)."""
    found = read_scene(np.asarray(image))
    return len(found) != 1 or found[0].shape == UNCLEAR


def rejected(image, thing) -> bool:
    """The checker does not find the prompt's thing, and no caption matches the image."""
    return wrong(image, thing) and matches_no_caption(image)


@torch.no_grad()
def counterpart(image: np.ndarray, thing, vqgan) -> np.ndarray:
    """What the loop should have drawn: `thing` rendered on `image`'s background (its median colour) and
    reconstructed by `vqgan`, uint8 [64, 64, 3]."""
    background = tuple(int(v) for v in np.median(image.reshape(-1, 3), 0))
    return reconstructed(vqgan, [render([thing], background)])[0].numpy()


@torch.no_grad()
def reconstructed(vqgan, images) -> torch.Tensor:
    """RGB images (PIL or uint8 [64, 64, 3]) as the VQGAN reconstructs them, uint8 [n, 64, 64, 3]."""
    x = to_tensor(np.stack([np.asarray(i) for i in images])) * 2 - 1
    y = vqgan.decode(vqgan.encode(x)).add(1).div(2).clamp(0, 1)
    return y.mul(255).round().byte().permute(0, 2, 3, 1).contiguous()


def read(paths, tokenizer) -> tuple[torch.Tensor, dict | None]:
    """The images no caption matches (uint8 [n, 64, 64, 3]), and the pairs of files written with their
    prompts: {"images", "scenes": uint8 [m, 64, 64, 3], "tokens": [m, L]} (None if no file has them).
    Files of earlier versions hold rejected images alone."""
    images, pairs = [], {"images": [], "scenes": [], "captions": []}
    for path in paths:
        data = torch.load(path)
        if isinstance(data, dict):
            for key in pairs:
                pairs[key] += [data[key]] if key != "captions" else data[key]
            keep = data.get("negative", torch.ones(len(data["images"]), dtype=torch.bool))
            data = data["images"][keep]
        images.append(data)
    if not pairs["captions"]:
        return torch.cat(images), None
    return torch.cat(images), {"images": torch.cat(pairs["images"]), "scenes": torch.cat(pairs["scenes"]),
                               "tokens": tokenizer(pairs["captions"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", required=True, help="the guide, a name or ARCH=FILE")
    parser.add_argument("--vqgan", default="shapes")
    parser.add_argument("--n", type=int, default=256, help="prompts to run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=100, help="the training world's seed for the prompts")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=SHAPES_RECOMMENDED["lr"])
    parser.add_argument("--init-colour", default=SHAPES_RECOMMENDED.get("init_colour", ""),
                        help="#rrggbb flat start, or '' for random codes (default: the recommended one)")
    parser.add_argument("--start", choices=("colour", "scene"), default="colour",
                        help="start each loop from --init-colour, or from its prompt's scene drawn cleanly: what "
                             "the loop then makes of the right answer (an eroded star) is a pair for that answer")
    parser.add_argument("--shapes", help="only prompts of these shapes, comma-separated (e.g. star,cross)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    shapes = args.shapes.split(",") if args.shapes else None
    unknown = sorted(set(shapes or ()) - set(SHAPES))
    if unknown:
        raise SystemExit(f"--shapes: unknown shape {unknown[0]!r}; known: {', '.join(SHAPES)}")
    torch.set_num_threads(args.threads)
    models, kept, start = ModelCache("cpu"), {"images": [], "captions": [], "scenes": [], "negative": []}, time.time()
    settings = {**SHAPES_RECOMMENDED, "vqgan": args.vqgan, "clip": args.clip, "lr": args.lr,
                "init_colour": args.init_colour}
    todo, starts = prompts(args.n, args.seed, shapes), tempfile.TemporaryDirectory()
    for first in range(0, len(todo), args.batch):
        chunk = todo[first:first + args.batch]
        gens = []
        for i, scene in enumerate(chunk, first):
            path = Path(starts.name) / f"{i}.png"
            start_at = {"init_image": start_image(scene, path)} if args.start == "scene" else {}
            config = GenerationConfig.from_dict({**settings, "prompts": scene.caption, "seed": i, **start_at})
            gens.append(Generation(config, device="cpu", models=models))
        GenerationBatch(gens).run()
        for gen, scene in zip(gens, chunk):
            image = gen.image()
            if wrong(image, scene.things[0]):
                kept["negative"].append(matches_no_caption(image))
                kept["images"].append(np.asarray(image.convert("RGB")))
                kept["captions"].append(scene.caption)
                kept["scenes"].append(counterpart(kept["images"][-1], scene.things[0], gen.vqgan))
        print(f"{first + len(chunk)} prompts, {len(kept['images'])} wrong ({sum(kept['negative'])} match no "
              f"caption), {time.time() - start:.0f}s", flush=True)
    if not kept["images"]:
        raise SystemExit(f"the checker read every one of the {len(todo)} images right: nothing to write")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v if k == "captions" else torch.from_numpy(np.stack(v)) for k, v in kept.items()}, args.out)
    print(f"wrote {len(kept['images'])} of {len(todo)} images to {args.out}", flush=True)


if __name__ == "__main__":
    main()
