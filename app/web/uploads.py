"""Uploaded images (init image, image prompts): checked, re-encoded and stored under generated names.

A file a user uploads is refused unless it is small enough (bytes), one of IMAGE_FORMATS by its content
(never by its name), and small enough in pixels according to its header, checked before any pixel is
decoded (decompression bombs). An accepted image is decoded, converted to RGB and written as a new PNG to
`app.jobs.data_dir()/uploads/<random hex>.png`; jobs refer to it by that generated name only, so nothing a
user sends ever names a path on disk.
"""
from __future__ import annotations

import io
import re
import secrets
import warnings
from pathlib import Path

from PIL import Image

from app.jobs import data_dir
from app.web.limits import LimitError, Limits

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
NAME = re.compile(r"[0-9a-f]{32}\.png")


def upload_dir() -> Path:
    return data_dir() / "uploads"


def check_image(data: bytes, limits: Limits, what: str = "the upload") -> Image.Image:
    """The decoded RGB image, or LimitError saying why `data` is refused."""
    if len(data) > limits.max_upload_bytes:
        raise LimitError(f"{what} is {_mb(len(data))}, over this server's limit of {_mb(limits.max_upload_bytes)}")
    # PIL's own guard as a second line: it warns (an error here) at open above this many pixels.
    Image.MAX_IMAGE_PIXELS = limits.max_upload_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise LimitError(f"{what} has too many pixels (limit {limits.max_upload_pixels:,})") from None
    except (OSError, ValueError, SyntaxError):
        raise LimitError(f"{what} is not an image vqclip accepts ({', '.join(IMAGE_FORMATS)})") from None
    width, height = image.size
    if width * height > limits.max_upload_pixels:
        raise LimitError(f"{what} is {width}x{height} = {width * height:,} pixels, over this server's limit of "
                         f"{limits.max_upload_pixels:,}")
    try:
        image.load()
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise LimitError(f"{what} could not be decoded: {exc}") from None


def store_image(data: bytes, limits: Limits, what: str = "the upload") -> str:
    """Check `data`, write it as a new PNG in upload_dir() and return its generated name."""
    image = check_image(data, limits, what)
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.png"
    tmp = folder / f".{name}.tmp"
    image.save(tmp, format="PNG")
    tmp.replace(folder / name)
    return name


def store_file(path: str | Path, limits: Limits, what: str = "the upload") -> str:
    """store_image for a file the web server received (its temporary copy); the size is checked before
    the file is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_upload_bytes:
        raise LimitError(f"{what} is {_mb(size)}, over this server's limit of {_mb(limits.max_upload_bytes)}")
    return store_image(path.read_bytes(), limits, what)


def path_of(name: str) -> Path:
    """The stored file of a generated name; LimitError for anything that is not one."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise LimitError("unknown upload")
    path = upload_dir() / name
    if not path.is_file():
        raise LimitError("the uploaded image is gone from the server; upload it again")
    return path


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.3g} MB"
