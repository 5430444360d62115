"""Do generated images match their prompts? VQGAN+CLIP on the bundled shapes pair, judged by the
scene checker (generator/shapes/checker.py) and by a second CLIP that did not guide the image.

    .venv/bin/python benchmarks/quality.py --prompts 12 --seeds 2 --presets defaults,notebook,shapes
    .venv/bin/python benchmarks/quality.py --prompts 50 --seeds 1 --presets shapes --rescore runs/q   # re-judge a --save run
    .venv/bin/python benchmarks/quality.py --prompts 50 --seeds 1 --presets shapes --shapes star,cross --start scene
    .venv/bin/python benchmarks/quality.py --prompts 50 --seeds 1 --presets shapes --shapes star,cross --seen-colours
    .venv/bin/python benchmarks/quality.py --prompts-file my_prompts.txt --seeds 2 --presets shapes   # your own prompts

Prompts are one-shape held-out scenes ("a large red star at the top": colour/shape pairs the models never
saw in training); `--split train` asks for pairs they saw, `--things 2` for two-shape scenes ("a small
green star on the left and a large red square on the right"; `--join " | "` makes each thing its own
prompt; `--relational` words them in one another's terms, "a large blue square above a small yellow
triangle"), and `--prompts-file` reads your own, one full caption a line. For two things an attribute counts
right only when it is right for both (the checker matches each thing to the object nearest its place; the
CLIPs pick among captions that change that attribute of one thing).

Per preset it prints, as a markdown table row: checker accuracy per attribute, the judge CLIP's top-1 per
attribute among captions differing only in that attribute, the guiding CLIP's own top-1 the same way (its
gap to the checker is how far the image fools its guide), the mean overlap of each image's largest object
with the asked shape's template (`checker.shape_overlap`, graded where the checker's shape is yes or no:
0.75 is where yes starts; one-shape prompts only), and seconds per image.
"""
from __future__ import annotations

import sys
from pathlib import Path

# the repository root instead of benchmarks/, whose queue.py would shadow the standard library's
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from generator import GenerationConfig  # noqa: E402
from generator.engine import Generation  # noqa: E402
from generator.errors import VqclipError  # noqa: E402
from generator.models import ModelCache  # noqa: E402
from generator.shapes.checker import check, check_scene, shape_overlap  # noqa: E402
from generator.shapes.clip_eval import variants  # noqa: E402
from generator.shapes.world import (COLOURS, HELD_OUT, World, full_caption, parse_caption,  # noqa: E402
                                    relational_caption, render)
from generator.weight_records import SHAPES_RECOMMENDED  # noqa: E402

ATTRIBUTES = ("colour", "shape", "position", "size")
BASE = {"vqgan": "shapes", "clip": "shapes", "width": 64, "height": 64}
GREY = "#808080"  # a flat grey start (init_colour)
START_BACKGROUND = (128, 128, 128)  # --start scene: the prompt's thing drawn on this grey
# The shapes pair's recommended settings until round 3 (random codes, lr 0.03). The shapes-* presets are
# built on it, so each keeps the meaning it had when benchmarks/RESULTS.md measured it; `shapes` is
# whatever is recommended now.
ROUND2 = {**SHAPES_RECOMMENDED, "lr": 0.03, "init_colour": "", "augment_padding": "zeros", "starts": 1}
PRESETS = {
    # vqclip's GenerationConfig defaults (only the models and the size changed)
    "defaults": {},
    # Crowson's notebook: step size 0.05, 64 cutouts, cut_pow 1, flips + affine + jitter + noise
    "notebook": {"lr": 0.05, "cutn": 64, "augmentations": ["Fl", "Af", "Ji", "Gn"]},
    # candidates for the shapes pair's recommended settings: 16 cutouts, no flips (a flipped cutout
    # turns "on the left" into "on the right")
    "c16-noflip": {"cutn": 16, "augmentations": ["Af", "Ji", "Gn", "Er"]},
    "c16-noflip-grey": {"cutn": 16, "augmentations": ["Af", "Ji", "Gn", "Er"], "init_colour": GREY},
    "c16-noflip-tv": {"cutn": 16, "augmentations": ["Af", "Ji", "Gn", "Er"], "tv_weight": 5.0},
    "c16-noflip-lr03": {"cutn": 16, "augmentations": ["Af", "Ji", "Gn", "Er"], "lr": 0.03},
    "c16-flip": {"cutn": 16},
    "shapes": dict(SHAPES_RECOMMENDED),
    # the recommended settings of rounds 3-6: affine cutouts padded with black
    "shapes-round6": {**SHAPES_RECOMMENDED, "augment_padding": "zeros", "starts": 1},
    # the recommended settings of rounds 7-11: one start
    "shapes-round11": {**SHAPES_RECOMMENDED, "starts": 1},
    "shapes-round2": ROUND2,
    "shapes-grey": {**ROUND2, "init_colour": GREY},
    # stronger optimisation: the guide's own top-1 on its images shows whether the loop reached it
    "shapes-lr1": {**ROUND2, "lr": 0.1},
    "shapes-grey-lr1": {**ROUND2, "init_colour": GREY, "lr": 0.1},
    "shapes-grey-lr1-s100": {**ROUND2, "init_colour": GREY, "lr": 0.1, "steps": 100},
    "shapes-grey-lr1-c32": {**ROUND2, "init_colour": GREY, "lr": 0.1, "cutn": 32},
}


def prompts(n: int, split: str = "heldout", things: int = 1) -> list[tuple]:
    """The things of the first n distinct one-shape (or two-shape) scenes of a split (held-out by default)."""
    world, seen, out, i = World(split, seed=7, two_shape_fraction=float(things == 2)), set(), [], 0
    while len(out) < n:
        scene_things = world.scene(i).things
        i += 1
        if scene_things not in seen:
            seen.add(scene_things)
            out.append(scene_things)
    return out


def read_prompts(path: Path) -> list[tuple]:
    """(things, the line as written) for each full caption in a file; exits naming the file, line and part
    it cannot read."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                out.append((parse_caption(line), line.strip()))
            except ValueError as error:
                raise SystemExit(f"{path}:{number}: {error}") from None
    if not out:
        raise SystemExit(f"{path}: no prompts (one full caption a line, e.g. 'a large red circle on the left')")
    return out


def seen_colour(thing):
    """`thing` in the first colour after its own (in palette order) that training drew its shape in: the
    same shape, size and position as a held-out prompt, but a colour/shape pair the guides have seen."""
    start = COLOURS.index(thing.colour)
    for step in range(1, len(COLOURS)):
        colour = COLOURS[(start + step) % len(COLOURS)]
        if (colour, thing.shape) not in HELD_OUT:
            return dataclasses.replace(thing, colour=colour)
    raise ValueError(f"no colour of the palette was drawn as a {thing.shape} in training")


def overrides(pairs: list[str]) -> dict:
    """--set KEY=VALUE pairs as settings; VALUE is read as JSON when it parses ("4", "[\"Af\"]"), else text."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set wants KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def prompt_text(things: tuple, join: str = " and ", relational: bool = False) -> str:
    """The prompt for a scene's things: its full caption, or with join " | " each thing its own prompt, or
    (relational) two things in one another's terms ("a large blue square above a small yellow triangle")."""
    return relational_caption(things) if relational else join.join(full_caption([t]) for t in things)


def scene_variants(things: tuple, i: int, attribute: str) -> list[str]:
    """Full captions of `things` with thing i's `attribute` set to each of its values (the true one first)."""
    others = [full_caption([t]) for t in things]
    return [" and ".join(others[:i] + [caption] + others[i + 1:]) for caption in variants(things[i], attribute)]


@torch.no_grad()
def attribute_top1(clip, image: Image.Image, things: tuple) -> dict[str, bool]:
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float().div(255)[None]
    x = F.interpolate(x, size=clip.input_size, mode="bilinear", antialias=True) if x.shape[-1] != clip.input_size else x
    e = F.normalize(clip.encode_image(x), dim=-1)[0]
    out = {}
    for attribute in ATTRIBUTES:
        hits = []
        for i in range(len(things)):
            t = F.normalize(clip.encode_text(scene_variants(things, i, attribute)), dim=-1)
            hits.append(int((t @ e).argmax()) == 0)
        out[attribute] = all(hits)
    return out


def checker_tally(image: Image.Image, things: tuple) -> dict:
    """The checker's reading: the largest object for one thing, each thing's nearest object for two."""
    c = check(image, things[0]) if len(things) == 1 else check_scene(image, things)
    overlap = shape_overlap(image, things[0].shape) if len(things) == 1 else float("nan")
    return {**c, "all": all(c[a] for a in ("colour", "shape", "position")), "overlap": overlap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST..FIRST+SEEDS-1 (to split a run)")
    parser.add_argument("--presets", default="defaults,notebook,shapes")
    parser.add_argument("--steps", type=int, help="override every preset's steps")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a setting of every preset, e.g. --set init_weight=4 (repeatable)")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"),
                        help="prompts from held-out colour/shape pairs, or from pairs seen in training")
    parser.add_argument("--prompts-file", type=Path,
                        help="your own prompts instead, one full caption a line ('a large red circle on the left', "
                             "two things joined by ' and '); blank lines and '# ...' are skipped")
    parser.add_argument("--things", type=int, default=1, choices=(1, 2), help="shapes in each prompt's scene")
    parser.add_argument("--join", default=" and ",
                        help="what joins a two-shape prompt's things: ' and ' (as captioned), or ' | ' (each its own "
                             "prompt, the engine's syntax)")
    parser.add_argument("--relational", action="store_true",
                        help="word each two-shape prompt in its things' own terms ('a large blue square above a "
                             "small yellow triangle') instead of joining them; needs --things 2")
    parser.add_argument("--shapes", help="only the prompts (of the --prompts) of these shapes, e.g. star,cross")
    parser.add_argument("--start", choices=("preset", "scene"), default="preset",
                        help="scene: start each loop from its prompt's thing drawn cleanly on grey (init_image): "
                             "does the loop keep the right answer?")
    parser.add_argument("--seen-colours", action="store_true",
                        help="ask for each prompt's shape, size and position in a colour training drew that shape "
                             "in (green star -> blue star): does the loop fail the unseen pair, or the shape?")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", type=Path, help="write each image here as PRESET_PROMPTNO_SEED.png")
    parser.add_argument("--rescore", type=Path,
                        help="judge the images a --save run wrote here instead of generating (s/image: 0)")
    parser.add_argument("--vqgan", default=BASE["vqgan"], help="a candidate VQGAN checkpoint (YAML beside it)")
    parser.add_argument("--clip", default=BASE["clip"], help="a candidate guiding CLIP, as ARCH=FILE")
    parser.add_argument("--judge", default="shapes-judge",
                        help="the CLIP that scores and never guides: a name or ARCH=FILE (e.g. a retrained judge)")
    args = parser.parse_args()
    if args.relational and args.things != 2:
        parser.error("--relational words two-shape prompts: add --things 2")
    torch.set_num_threads(args.threads)
    things = list(enumerate(read_prompts(args.prompts_file) if args.prompts_file  # a bad file stops it here
                            else [(t, None) for t in prompts(args.prompts, args.split, args.things)]))
    # each prompt's things and its text: a file's line as written, else worded from the things
    things = [(p, t, text or prompt_text(t, args.join, args.relational)) for p, (t, text) in things]
    models = ModelCache("cpu")
    judge = models.clips(args.judge)[0][0]
    if args.shapes:
        things = [(p, t, text) for p, t, text in things if t[0].shape in args.shapes.split(",")]
    if args.seen_colours:
        if args.prompts_file:
            parser.error("--seen-colours rewrites generated prompts, not a --prompts-file")
        recoloured = [(p, (seen_colour(t[0]), *t[1:])) for p, t, _ in things]
        things = [(p, t, prompt_text(t, args.join, args.relational)) for p, t in recoloured]
    starts = tempfile.TemporaryDirectory()
    print(f"{len(things)} {args.prompts_file or args.split} prompts x {args.seeds} seeds, "
          f"e.g. {things[0][2]!r}; torch threads {args.threads}; VQGAN {args.vqgan}, "
          f"CLIP {args.clip}, judge {args.judge}")
    print("| preset | steps | checker colour | shape | position | size | all | judge colour | shape | position "
          "| guide colour | shape | position | shape IoU | s/image |")
    print("|---" * 15 + "|")
    for name in args.presets.split(","):
        settings = {**BASE, "vqgan": args.vqgan, "clip": args.clip, **PRESETS[name]}
        if args.steps:
            settings["steps"] = args.steps
        settings.update(overrides(args.set))
        tallies = {k: [] for k in ("checker", "judge", "guide")}
        seconds = []
        for p, scene_things, text in things:
            if args.start == "scene":
                settings["init_image"] = f"{starts.name}/{p}.png"
                render(list(scene_things), START_BACKGROUND).save(settings["init_image"])
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                config = GenerationConfig.from_dict({**settings, "prompts": text, "seed": seed})
                if args.rescore:
                    image, guide = Image.open(args.rescore / f"{name}_{p:02d}_{seed}.png").convert("RGB"), \
                        models.clips(config.clip)[0][0]
                    seconds.append(0.0)
                else:
                    start = time.perf_counter()
                    gen = Generation(config, device="cpu", models=models)
                    image, guide = gen.run(), gen.clips[0][0]
                    seconds.append(time.perf_counter() - start)
                # the checker reads the world at its own 64x64 (a larger image is box-filtered down to it)
                small = image if image.size == (64, 64) else image.resize((64, 64), Image.BOX)
                tallies["checker"].append(checker_tally(small, scene_things))
                tallies["judge"].append(attribute_top1(judge, image, scene_things))
                tallies["guide"].append(attribute_top1(guide, image, scene_things))
                if args.save:
                    args.save.mkdir(parents=True, exist_ok=True)
                    image.save(args.save / f"{name}_{p:02d}_{seed}.png")
        mean = {k: {a: np.mean([t[a] for t in v]) for a in v[0]} for k, v in tallies.items()}
        pct = lambda v: f"{100 * v:.0f}%"  # noqa: E731
        ch, ju, gu = mean["checker"], mean["judge"], mean["guide"]
        iou = "-" if np.isnan(ch["overlap"]) else f"{ch['overlap']:.2f}"  # graded for one thing only
        print(f"| {name} | {config.steps} | {pct(ch['colour'])} | {pct(ch['shape'])} | {pct(ch['position'])} | "
              f"{pct(ch['size'])} | {pct(ch['all'])} | {pct(ju['colour'])} | {pct(ju['shape'])} | "
              f"{pct(ju['position'])} | {pct(gu['colour'])} | {pct(gu['shape'])} | {pct(gu['position'])} | "
              f"{iou} | {np.mean(seconds):.1f} |", flush=True)


if __name__ == "__main__":
    try:
        main()
    except VqclipError as e:  # a model that will not load, a bad setting: named, without a traceback
        sys.exit(f"quality.py: {e}")
