"""The generation form: its fields, size presets, and the two-way mapping to a job's config dict.

`FIELDS` is the order in which the form's components are passed to handlers and filled by
"use these settings"; `to_config` builds a GenerationConfig-shaped dict from the values and checks it
(engine validation, the service's limits, registry names only, uploads by generated name only).
"""
from __future__ import annotations

from generator.config import AUGMENTATIONS, OPTIMIZERS, GenerationConfig
from generator.prompts import parse_image_prompt
from generator.weights import recommended_settings

from app.web import models, uploads
from app.web.limits import Limits

CUSTOM = "Custom size"
PRESETS = {
    "Tiny · 64×64 (quick test)": (64, 64),
    "Small · 256×256": (256, 256),
    "Medium · 384×384": (384, 384),
    "Large · 512×512": (512, 512),
    "Wide · 512×288": (512, 288),
    "Tall · 288×512": (288, 512),
}
FIELDS = ("prompt", "preset", "width", "height", "steps", "seed", "vqgan", "clip", "cutn", "cut_pow", "lr",
          "optimizer", "augmentations", "init_weight", "video")
AUGMENTATION_NAMES = {"Af": "affine", "Ro": "rotation", "Fl": "flip", "Ji": "colour jitter", "Gn": "noise",
                      "Er": "erasing"}
VIDEO_FRAMES = 50  # frames kept for the timelapse, whatever the number of steps
PROMPT_HELP = (
    "**Prompt syntax** — `text:weight` sets how strongly a part pulls (default 1) · a negative weight pushes "
    "away: `blurry:-0.5` · `|` separates parts · `text:weight:stop` stops a part's pull once its loss falls "
    "to *stop* · write `\\:` or `\\|` for a literal colon or bar. "
    "Example: `a castle in the fog:1 | watercolour:0.5 | blurry:-0.5`"
)


def preset_for(width: int, height: int) -> str:
    for name, size in PRESETS.items():
        if size == (width, height):
            return name
    return CUSTOM


def defaults(vqgan: str, clip: str, real: bool) -> dict:
    """The form's starting values: the engine's defaults with the model's recommended settings (the shapes
    demo's small quick run); on the tiny pair a small quick run."""
    config = GenerationConfig()
    width, height = (config.width, config.height) if real else (64, 64)
    values = dict(prompt="", width=width, height=height, steps=config.steps if real else 50, seed=config.seed,
                  vqgan=vqgan, clip=[c for c in clip.split(",") if c], cutn=config.cutn, cut_pow=config.cut_pow,
                  lr=config.lr, optimizer=config.optimizer, augmentations=list(config.augmentations),
                  init_weight=config.init_weight, video=True)
    values.update((k, v) for k, v in recommended_settings(vqgan).items() if k in values)
    return {**values, "preset": preset_for(values["width"], values["height"])}


def to_config(values: dict, init_name: str | None, prompt_names: list[str] | None, limits: Limits,
              check_weights: bool) -> dict:
    """The job config the form describes; ConfigError or LimitError with a message for the user."""
    if values["preset"] in PRESETS:
        width, height = PRESETS[values["preset"]]
    else:
        width, height = whole(values["width"], "width"), whole(values["height"], "height")
    clips = list(values["clip"] or [])
    vqgan = values["vqgan"]
    models.check_names(vqgan, clips)
    steps = whole(values["steps"], "steps")
    data = dict(
        prompts=str(values["prompt"] or "").strip(), width=width, height=height, steps=steps,
        seed=whole(values["seed"], "seed"), cutn=whole(values["cutn"], "cutouts"),
        cut_pow=float(values["cut_pow"]), lr=float(values["lr"]), optimizer=values["optimizer"],
        augmentations=list(values["augmentations"] or []), vqgan=vqgan, clip=",".join(clips),
        init_weight=float(values["init_weight"] or 0.0),
    )
    recommended = recommended_settings(vqgan)  # for the settings the form has no field for
    start_colour = recommended.get("init_colour")
    for key in ("augment_padding", "augment_noise", "starts", "start_steps"):
        if key in recommended:
            data[key] = recommended[key]
    if init_name:
        data["init_image"] = str(uploads.path_of(init_name))
    elif start_colour:
        data["init_colour"] = start_colour
    if prompt_names:
        data["image_prompts"] = [str(uploads.path_of(name)) for name in prompt_names]
    if values["video"]:
        data.update(video=True, save_every=max(1, steps // VIDEO_FRAMES))
    limits.check_config(data)
    config = GenerationConfig.from_dict(data).to_dict()
    if check_weights:
        models.check_present([vqgan, *clips])
    return config


def from_config(config: dict) -> tuple[dict, str | None, list[str]]:
    """(form values, init upload name, image prompt upload names) of a job's config, to vary it."""
    base = {**GenerationConfig().to_dict(), **config}
    clips = [part.split(":")[0].strip() for part in str(base["clip"]).split(",") if part.strip()]
    values = dict(
        prompt=base["prompts"], preset=preset_for(base["width"], base["height"]), width=base["width"],
        height=base["height"], steps=base["steps"], seed=base["seed"], vqgan=base["vqgan"], clip=clips,
        cutn=base["cutn"], cut_pow=base["cut_pow"], lr=base["lr"], optimizer=base["optimizer"],
        augmentations=[a for a in base["augmentations"] if a in AUGMENTATIONS], init_weight=base["init_weight"],
        video=bool(base["video"]),
    )
    init = _upload_name(base["init_image"]) if base["init_image"] else None
    names = [_upload_name(parse_image_prompt(spec, must_exist=False).path) for spec in base["image_prompts"]]
    return values, init, [n for n in names if n]


def _upload_name(path: str) -> str | None:
    """The generated name of a file in the uploads folder, if `path` is one that still exists."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    try:
        uploads.path_of(name)
    except Exception:
        return None
    return name


def whole(value, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise models.ConfigError(f"{what} must be a whole number") from None
    if number != int(number):
        raise models.ConfigError(f"{what} must be a whole number, got {value}")
    return int(number)


__all__ = ["CUSTOM", "PRESETS", "FIELDS", "OPTIMIZERS", "AUGMENTATIONS", "AUGMENTATION_NAMES", "PROMPT_HELP",
           "defaults", "to_config", "from_config", "preset_for", "whole"]
