"""The logo workflow's shared rules, used by the command line (app/cli_logo.py) and the web UI (app/web):
which seeds N variations get, what "vary this one" changes, and the exports of one result.
"""
from __future__ import annotations

import random
from pathlib import Path

from generator.errors import ConfigError

MAX_IMAGES = 64  # images one request may make
# "Vary this one": restart from the chosen image with the same seed and settings. An MSE pull of this weight
# towards its latent keeps the composition while the cutouts keep refining it. Measured on the shapes demo
# (64x64, 50 steps, one prompt): mean pixel change 9/255 from the original at 3.0, against 12 at 1.0, 5 at
# 10.0 (barely a change) and 22 for a new seed.
VARY_INIT_WEIGHT = 3.0


def variation_seeds(seed: int, count: int, at_random: bool = False) -> list[int]:
    """Seeds of `count` variations: seed, seed+1, ..., or `count` different random ones."""
    if count < 1:
        raise ConfigError(f"variations must be at least 1, got {count}")
    if count > MAX_IMAGES:
        raise ConfigError(f"{count} variations is over the limit of {MAX_IMAGES} images")
    if at_random:
        return random.sample(range(2**31), count)
    return [seed + i for i in range(count)]


def varied(config: dict, image: str | Path) -> dict:
    """The settings of "vary this one": the job's own, seed included, started from its image."""
    return {**config, "init_image": str(image), "init_weight": VARY_INIT_WEIGHT, "init_weight_decay_steps": 0}


def export_one(png: str | Path, out_dir: str | Path, kind: str, *, colors: int = 8, transparent: bool = False,
               tolerance: float = 0.12, size: int | None = None) -> list[Path]:
    """One export of a result: kind "svg" (colour count; background dropped if `transparent`),
    "transparent" (a PNG whose border colour is see-through) or "resized" (Lanczos, labelled as resampled)."""
    from generator.export import export

    if kind == "svg":
        return export(png, out_dir, svg=True, colors=colors, transparent=transparent, tolerance=tolerance)
    if kind == "transparent":
        return export(png, out_dir, transparent=True, tolerance=tolerance)
    if kind == "resized":
        if not size:
            raise ConfigError("give the size to resample to, in pixels")
        return export(png, out_dir, transparent=transparent, tolerance=tolerance, size=size)
    raise ConfigError(f"unknown export {kind!r}; known: svg, transparent, resized")
