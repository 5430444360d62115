"""`GenerationConfig`: every setting of one generation, typed and strict.

Load with `GenerationConfig.from_dict`, `from_json` or `from_file` (.json / .toml): an unknown key or a
value of the wrong type raises ConfigError naming the key. `to_dict()` is what outputs record.
"""
from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "adagrad", "adamax", "rmsprop", "sgd")
AUGMENTATIONS = ("Af", "Ro", "Fl", "Ji", "Gn", "Er")
PADDINGS = ("zeros", "border", "reflection")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("auto", "on", "off")


@dataclass
class GenerationConfig:
    prompts: str = ""  # text prompts: "text[:weight[:stop]] | ..."
    image_prompts: list[str] = field(default_factory=list)  # "path[:weight[:stop]]"
    noise_prompts: list[str] = field(default_factory=list)  # "seed:weight"
    width: int = 256  # output width in pixels; a multiple of the VQGAN's factor (16 for f16 models)
    height: int = 256  # output height in pixels
    steps: int = 300  # optimisation steps
    seed: int = 0  # seeds the initial codes, cutouts and augmentations
    starts: int = 1  # run this many starts side by side for the first start_steps steps, then keep the best
    start_steps: int = 10  # steps the starts run before the one with the lowest loss is kept
    cutn: int = 32  # cutouts per step, per CLIP model
    cut_pow: float = 1.0  # >1 favours small cutouts, <1 large ones
    lr: float = 0.1  # learning rate (nerdyrodent's default)
    optimizer: str = "adam"  # one of OPTIMIZERS
    augmentations: list[str] = field(default_factory=lambda: ["Af", "Fl", "Ji", "Gn", "Er"])  # of AUGMENTATIONS
    augment_padding: str = "zeros"  # what rotated/shifted cutouts show past the image edge: one of PADDINGS
    augment_noise: float = 0.1  # "Gn": each cutout gets Gaussian noise of a standard deviation drawn from [0, this]
    vqgan: str = "vqgan_imagenet_f16_16384"  # registry name, "tiny", or a checkpoint file path
    clip: str = "ViT-B-32/openai"  # comma-separated CLIP specs, each NAME[:weight]
    init_image: str = ""  # start from this image (encoded) instead of random codes
    init_colour: str = ""  # "#rrggbb": start from a flat image of this colour (an init image wins over it)
    init_weight: float = 0.0  # MSE pull towards the initial latent
    init_weight_decay_steps: int = 0  # 0: constant init weight; N: decays linearly to 0 over N steps
    tv_weight: float = 0.0  # total-variation (smoothness) loss on the decoded image
    save_every: int = 0  # keep a frame every N steps (0: none); frames make the timelapse
    video: bool = False  # write a timelapse MP4 of the frames
    precision: str = "auto"  # one of PRECISIONS; auto: bf16/fp16 on GPU, bf16 on CPUs with native bf16, else fp32
    checkpoint_decoder: bool = False  # recompute the decoder's finest levels in backward: less memory, slower
    compile: str = "auto"  # one of COMPILE_MODES; auto: torch.compile the models on a GPU, not on the CPU

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "GenerationConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        values = {key: _coerce(key, value, hints[key]) for key, value in data.items()}
        config = cls(**values)
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> "GenerationConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> "GenerationConfig":
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            try:
                return cls.from_dict(tomllib.loads(raw.decode()))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        return cls.from_json(raw.decode())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes) -> "GenerationConfig":
        return GenerationConfig.from_dict({**self.to_dict(), **changes})

    # ---- checks that need no model -------------------------------------------------------------
    def validate(self) -> None:
        from .prompts import parse_image_prompt, parse_noise_prompt, parse_text_prompts

        if not self.prompts.strip() and not self.image_prompts:
            raise ConfigError("the prompt is empty: give a text prompt or an image prompt")
        if self.prompts.strip():
            parse_text_prompts(self.prompts)
        for spec in self.image_prompts:
            parse_image_prompt(spec)
        for spec in self.noise_prompts:
            parse_noise_prompt(spec)
        for name in ("width", "height", "steps", "cutn", "starts", "start_steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("save_every", "init_weight_decay_steps", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr < float("inf"):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not 0 < self.cut_pow < float("inf"):
            raise ConfigError(f"cut_pow must be a positive number, got {self.cut_pow}")
        for name in ("init_weight", "tv_weight", "augment_noise"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        for aug in self.augmentations:
            if aug not in AUGMENTATIONS:
                raise ConfigError(f"unknown augmentation {aug!r}; known: {', '.join(AUGMENTATIONS)}")
        if self.augment_padding not in PADDINGS:
            raise ConfigError(f"unknown augment padding {self.augment_padding!r}; known: {', '.join(PADDINGS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {self.compile!r}; known: {', '.join(COMPILE_MODES)}")
        if self.init_image and not Path(self.init_image).is_file():
            raise ConfigError(f"init image {self.init_image!r} does not exist")
        if self.init_colour and not re.fullmatch(r"#[0-9a-fA-F]{6}", self.init_colour):
            raise ConfigError(f"init colour must be #rrggbb (e.g. #808080), got {self.init_colour!r}")
        if not self.vqgan.strip():
            raise ConfigError("vqgan must name a model")
        from .clip import parse_clip_specs

        parse_clip_specs(self.clip)


def _coerce(key: str, value, hint):
    """Check `value` against the field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"config key {key!r} must be a list of {item.__name__}, got {value!r}")
        return list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"config key {key!r} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value
