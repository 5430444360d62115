"""Outputs that carry what made them: PNG text chunks with the whole config, seed, models and hashes.

Every file is written to a temporary name in its folder and renamed into place, so a crash or an
interrupt never leaves a half-written output.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

from PIL import Image, PngImagePlugin

from . import __version__
from .config import GenerationConfig
from .errors import ConfigError

KEY_CONFIG = "vqclip:config"  # the GenerationConfig as JSON
KEY_MODELS = "vqclip:models"  # model names and weight sha256s
KEY_VERSION = "vqclip:version"
_UMASK = os.umask(0)
os.umask(_UMASK)


def metadata(gen) -> dict[str, str]:
    """The text chunks for a generation's outputs (nothing time- or machine-dependent but the device)."""
    cfg = gen.config
    models = {
        "vqgan": {"name": cfg.vqgan, "sha256": getattr(gen.vqgan, "sha256", "")},
        "clip": [{"name": clip.name, "weight": weight, "sha256": clip.sha256} for clip, weight in gen.clips],
    }
    return {
        "Title": cfg.prompts or "image prompt",
        "Software": f"vqclip {__version__}",
        "Description": f"{cfg.prompts} | seed {cfg.seed} | {cfg.width}x{cfg.height} | {gen.step_index} steps",
        KEY_CONFIG: cfg.to_json(),
        KEY_MODELS: json.dumps(models, sort_keys=True),
        KEY_VERSION: __version__,
        "vqclip:seed": str(cfg.seed),
        "vqclip:steps_done": str(gen.step_index),
        "vqclip:device": gen.device.type,
        "vqclip:precision": gen.precision,  # what "auto" resolved to on that device
    }


def png_bytes(image: Image.Image, text: dict[str, str]) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def atomic_write(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write to folder {str(path.parent)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_png(gen, path: str | Path, image: Image.Image | None = None) -> Path:
    """Save the generation's current (or the given) image with its metadata."""
    return atomic_write(path, png_bytes(image or gen.image(), metadata(gen)))


def read_png_metadata(path: str | Path) -> dict[str, str]:
    try:
        with Image.open(path) as img:
            img.load()
            return dict(img.text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read PNG {str(path)!r}: {exc}") from None


def read_png_config(path: str | Path) -> GenerationConfig:
    """The GenerationConfig a vqclip PNG was made with."""
    text = read_png_metadata(path)
    if KEY_CONFIG not in text:
        raise ConfigError(f"{str(path)!r} carries no vqclip settings (was it made by vqclip?)")
    return GenerationConfig.from_json(text[KEY_CONFIG])


def output_name(config: GenerationConfig) -> str:
    """A stable file stem: prompt slug, seed and a short hash of every setting."""
    slug = re.sub(r"[^a-z0-9]+", "-", (config.prompts or "image-prompt").lower()).strip("-")[:60] or "prompt"
    digest = hashlib.sha256(config.to_json().encode()).hexdigest()[:8]
    return f"{slug}-s{config.seed}-{digest}"


def save_frames(frames: list[Image.Image], folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return [atomic_write(folder / f"{i:05d}.png", png_bytes(frame, {})) for i, frame in enumerate(frames, 1)]


def save_video(frames: list[Image.Image], path: str | Path, fps: int = 10) -> Path:
    """A timelapse MP4 (H.264) through imageio-ffmpeg's bundled ffmpeg; no system ffmpeg needed."""
    import imageio.v2 as imageio
    import numpy as np

    if not frames:
        raise ConfigError("no frames to make a video from: set save_every (e.g. --save-every 10)")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                                ffmpeg_log_level="error", pixelformat="yuv420p") as writer:
            for frame in frames:
                writer.append_data(np.asarray(_even(frame)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _even(frame: Image.Image) -> Image.Image:
    """yuv420p needs even sides."""
    w, h = frame.size
    return frame if w % 2 == 0 and h % 2 == 0 else frame.crop((0, 0, w - w % 2, h - h % 2))
