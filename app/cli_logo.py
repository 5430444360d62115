"""The logo workflow on the command line: variations and prompt sweeps with a contact sheet
(`vqclip generate ... --variations N | --seeds 1-8 | --prompt-set "a | b"`) and `vqclip export`."""
from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

from app.logo import MAX_IMAGES, variation_seeds


def add_variation_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variations", type=int, metavar="N", default=None,
                   help="make N images with seeds SEED, SEED+1, ... and a contact sheet (default: 1)")
    p.add_argument("--seeds", metavar="LIST", default=None,
                   help="make one image per seed, e.g. 1,2,5 or 1-8, and a contact sheet (default: --seed)")
    p.add_argument("--prompt-set", metavar="'A | B'|FILE", default=None,
                   help="several prompts, separated by | or one per line of a file: one contact-sheet row each "
                        "(default: the prompt argument)")
    p.add_argument("--batch", type=int, metavar="N", default=None,
                   help="make up to N of these images at once as one batch: same results, more images/hour "
                        "for N times the step memory (default: as many as the device's free memory holds, by "
                        "the estimate that refuses jobs too big for it)")


def auto_batch(config, models) -> int:
    """Images of `config` that fit in one batch on the models' device (see generator.batch.batch_capacity)."""
    from generator.batch import batch_capacity
    from generator.precision import resolve_precision

    device = models.device
    return batch_capacity(config, models.vqgan(config.vqgan), models.clips(config.clip), device,
                          resolve_precision(config.precision, device))


def parse_seeds(spec: str) -> list[int]:
    """``"1,2,5"``, ``"1-8"`` or a mix; duplicates are kept once, in order."""
    from generator.errors import ConfigError

    seeds: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not match:
            raise ConfigError(f"seed list {spec!r}: {part!r} is not a seed or a range like 1-8")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise ConfigError(f"seed list {spec!r}: range {part!r} runs backwards")
        seeds += [s for s in range(low, high + 1) if s not in seeds]
        if len(seeds) > MAX_IMAGES:
            raise ConfigError(f"seed list {spec!r} has more than {MAX_IMAGES} seeds")
    return seeds


def parse_prompt_set(spec: str) -> list[str]:
    """Prompts separated by ``|`` (or lines of a file). Each is one prompt: weights stay inside it."""
    from generator.errors import ConfigError

    path = Path(spec)
    if "|" not in spec and path.is_file():
        from app.cli_generate import read_prompt_file

        return [prompt for _, prompt in read_prompt_file(spec)]
    prompts = [p.strip() for p in spec.split("|") if p.strip()]
    if not prompts:
        raise ConfigError("the prompt set is empty")
    return prompts


def plan(args: argparse.Namespace, config) -> tuple[list[str], list[int]]:
    """(prompts, seeds) to make: every prompt at every seed."""
    from generator.errors import ConfigError

    if args.batch is not None and args.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    if args.variations is not None and args.seeds:
        raise ConfigError("give --variations or --seeds, not both")
    seeds = parse_seeds(args.seeds) if args.seeds else variation_seeds(
        config.seed, 1 if args.variations is None else args.variations)
    prompts = parse_prompt_set(args.prompt_set) if args.prompt_set else [config.prompts]
    if len(prompts) * len(seeds) > MAX_IMAGES:
        raise ConfigError(f"{len(prompts)} prompts x {len(seeds)} seeds is over the limit of {MAX_IMAGES} images")
    return prompts, seeds


def run_sheet(args: argparse.Namespace, base, out: Path, prompts: list[str], seeds: list[int]) -> int:
    """Make every (prompt, seed) image with full metadata, then the captioned contact sheet."""
    from PIL import Image

    from app.cli_generate import run_one, run_together
    from generator import ModelCache
    from generator.export import contact_sheet
    from generator.output import atomic_write, png_bytes

    configs = [[base.replace(prompts=p, seed=s) for s in seeds] for p in prompts]  # validates every prompt first
    models = ModelCache(args.device)
    flat, paths = [config for row in configs for config in row], []
    size = args.batch or auto_batch(flat[0], models)
    total_steps = base.steps * len(flat)  # for compile="auto": the whole sheet runs at one shape
    for start in range(0, len(flat), size):  # each group runs as one batch of the engine
        group = flat[start:start + size]
        if len(group) == 1:
            made = [run_one(group[0], out, models, args.device, expected_steps=total_steps,
                            label=f"[{start + 1}/{len(flat)}] seed {group[0].seed}")]
        else:
            made = run_together(group, out, models, args.device, expected_steps=total_steps,
                                label=f"[{start + 1}-{start + len(group)}/{len(flat)}] batch")
        for path in made:
            print(path)
        paths += made
    rows, record, made = [], [], iter(paths)
    for prompt, row in zip(prompts, configs):
        tiles, files = [], []
        for config in row:
            path = next(made)
            with Image.open(path) as img:
                tiles.append((config.seed, img.convert("RGB")))
            files.append({"seed": config.seed, "file": path.name})
        rows.append((prompt, tiles))
        record.append({"prompt": prompt, "images": files})
    text = {"Title": f"vqclip contact sheet: {', '.join(prompts)}", "vqclip:contact-sheet": json.dumps(record)}
    digest = hashlib.sha256(json.dumps([[c.to_json() for c in row] for row in configs]).encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", prompts[0].lower()).strip("-")[:50] or "prompt"
    sheet = atomic_write(out / f"{slug}-sheet-{digest}.png", png_bytes(contact_sheet(rows), text))
    print(sheet)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from generator.export import export

    for path in export(args.image, args.out, svg=args.svg, colors=args.colors, transparent=args.transparent,
                       tolerance=args.tolerance, size=args.size):
        print(path)
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="turn a generated PNG into an SVG, a transparent PNG or a larger size",
                       description="Exports are written beside the image (or into --out) and carry its settings.")
    p.add_argument("image", metavar="IMAGE.png", help="a PNG (made by vqclip or not)")
    p.add_argument("--svg", action="store_true", help="vectorise to SVG (default: off)")
    p.add_argument("--colors", type=int, default=8, help="colours in the SVG, 2-64 (default: 8)")
    p.add_argument("--transparent", action="store_true",
                   help="make the background (the border colour) transparent (default: off)")
    p.add_argument("--tolerance", type=float, default=0.12,
                   help="how far from the border colour still counts as background, 0-1 (default: 0.12)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="resample so the longer side is PX (Lanczos, no added detail; default: keep)")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: beside the image)")
    p.set_defaults(func=cmd_export)
