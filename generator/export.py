"""From a generated PNG to a usable logo file: SVG by vectorisation, a transparent background, a larger size.

Each export carries the generation's settings when the source PNG has them (a PNG vqclip did not make
still exports, without settings). Files are written whole or not at all.
"""
from __future__ import annotations

import html
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .errors import ConfigError
from .output import KEY_CONFIG, atomic_write, png_bytes

MAX_EXPORT_SIZE = 4096  # pixels per side for resampled exports
MAX_SOURCE_PIXELS = 4096 * 4096  # refuse larger sources (and decompression bombs)


def load_source(path: str | Path) -> tuple[Image.Image, dict[str, str]]:
    """The image (RGB or RGBA) and its text chunks; a one-line ConfigError when unreadable."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_SOURCE_PIXELS:
                raise ConfigError(f"image {str(path)!r} is {img.width}x{img.height}, over the export limit")
            img.load()
            text = dict(getattr(img, "text", {}) or {})
            image = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ConfigError(f"cannot read image {str(path)!r}: {exc}") from None
    return image, text


def check_colors(colors: int) -> int:
    if not 2 <= colors <= 64:
        raise ConfigError(f"colour count must be between 2 and 64, got {colors}")
    return colors


def check_size(size: int) -> int:
    if not 16 <= size <= MAX_EXPORT_SIZE:
        raise ConfigError(f"export size must be between 16 and {MAX_EXPORT_SIZE} pixels, got {size}")
    return size


def to_svg(image: Image.Image, colors: int = 8, settings_json: str | None = None, title: str = "") -> str:
    """Vectorise with vtracer after reducing the image to `colors` colours (median cut).

    Transparent pixels are painted a key colour the palette lacks, and the key colour's paths are dropped,
    so a transparent background stays transparent in the SVG.
    """
    import vtracer

    check_colors(colors)
    quantized = np.asarray(image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).convert("RGB"))
    key = None
    if image.mode == "RGBA":
        hidden = np.asarray(image.getchannel("A")) < 128
        if hidden.any():
            used = {tuple(c) for c in quantized[~hidden].reshape(-1, 3).tolist()}
            key = next(c for c in [(255, 0, 255), (0, 255, 255), (1, 2, 3), (254, 1, 253)] if c not in used)
            quantized = quantized.copy()
            quantized[hidden] = key
    rgba = np.dstack([quantized, np.full(quantized.shape[:2], 255, np.uint8)])
    pixels = [tuple(p) for p in rgba.reshape(-1, 4).tolist()]
    svg = vtracer.convert_pixels_to_svg(
        pixels, image.size, colormode="color", hierarchical="stacked", mode="spline",
        filter_speckle=max(1, (image.width * image.height) // 16384), color_precision=8, layer_difference=8,
    )
    if key is not None:
        fill = "#%02X%02X%02X" % key
        svg = re.sub(r'<path[^>]*fill="%s"[^>]*/>\n?' % fill, "", svg)
    extra = f"<title>{html.escape(title)}</title>" if title else ""
    if settings_json:
        extra += f'<metadata id="vqclip-settings">{html.escape(settings_json)}</metadata>'
    head_end = svg.index(">", svg.index("<svg")) + 1
    return svg[:head_end] + extra + svg[head_end:]


def transparent_background(image: Image.Image, tolerance: float = 0.12) -> Image.Image:
    """RGBA copy whose background is transparent: the border's median colour, and every pixel within
    `tolerance` (0-1, Euclidean RGB distance / 441) of it that is connected to the border."""
    if not 0 <= tolerance <= 1:
        raise ConfigError(f"tolerance must be between 0 and 1, got {tolerance}")
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    background = np.median(border, axis=0)
    close = np.linalg.norm(rgb - background, axis=2) <= tolerance * 441.7
    # Flood from a frame of "close" pixels around the image: one fill reaches every border-connected region.
    mask = Image.fromarray(np.pad(close, 1, constant_values=True).astype(np.uint8) * 255).copy()
    ImageDraw.floodfill(mask, (0, 0), 128)
    outside = (np.asarray(mask)[1:-1, 1:-1] == 128)
    rgba = np.dstack([rgb.astype(np.uint8), np.where(outside, 0, 255).astype(np.uint8)])
    return Image.fromarray(rgba, "RGBA")


def resample(image: Image.Image, size: int) -> Image.Image:
    """Scale so the longer side is `size` (Lanczos). Not a learned upscaler: no detail is added."""
    check_size(size)
    scale = size / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def export(path: str | Path, out_dir: str | Path | None = None, *, svg: bool = False, colors: int = 8,
           transparent: bool = False, tolerance: float = 0.12, size: int | None = None) -> list[Path]:
    """Write the requested exports of `path` beside it (or into `out_dir`); returns their paths."""
    if not (svg or transparent or size):
        raise ConfigError("nothing to export: give --svg, --transparent and/or --size")
    check_colors(colors)
    if size is not None:
        check_size(size)
    image, text = load_source(path)
    source = Path(path)
    folder = Path(out_dir) if out_dir else source.parent
    keep = {k: v for k, v in text.items() if k.startswith("vqclip:") or k in ("Title", "Description", "Software")}
    stem = source.stem
    results: list[tuple[Path, bytes]] = []
    if size:
        image = resample(image, size)
        keep["vqclip:resampled"] = f"Lanczos from {source.name}; no learned upscaler, no added detail"
        stem = f"{stem}-{size}px-resampled"
        if not transparent:
            results.append((folder / f"{stem}.png", png_bytes(image, keep)))
    if transparent:
        image = transparent_background(image, tolerance)
        keep["vqclip:transparent"] = f"background from the border colour, tolerance {tolerance}"
        results.append((folder / f"{stem}-transparent.png", png_bytes(image, keep)))
    if svg:
        document = to_svg(image, colors, text.get(KEY_CONFIG), text.get("Title", ""))
        results.append((folder / f"{stem}.svg", document.encode()))
    return [atomic_write(p, data) for p, data in results]  # everything was made before anything is written


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def contact_sheet(rows: list[tuple[str, list[tuple[int, Image.Image]]]], tile: int = 192) -> Image.Image:
    """A grid: one row per prompt, one tile per seed, each captioned "seed N" (and the row's prompt)."""
    columns = max(len(tiles) for _, tiles in rows)
    caption, label = 22, 24 if len(rows) > 1 else 0
    pad = 8
    width = pad + columns * (tile + pad)
    height = pad + len(rows) * (label + tile + caption + pad)
    sheet = Image.new("RGB", (width, height), (250, 250, 248))
    draw = ImageDraw.Draw(sheet)
    font, bold = _font(14), _font(16)
    y = pad
    for prompt, tiles in rows:
        if label:
            draw.text((pad, y + 4), _ellipsis(prompt, width // 9), fill=(30, 30, 30), font=bold)
            y += label
        for col, (seed, image) in enumerate(tiles):
            x = pad + col * (tile + pad)
            thumb = image.convert("RGB").resize((tile, tile), Image.LANCZOS)
            sheet.paste(thumb, (x, y))
            draw.text((x + 2, y + tile + 4), f"seed {seed}", fill=(60, 60, 60), font=font)
        y += tile + caption + pad
    return sheet


def _ellipsis(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def image_to_png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
