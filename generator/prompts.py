"""Prompt syntax, as in Crowson's notebook and nerdyrodent/VQGAN-CLIP.

Text:   ``"a red circle:1 | blurry:-0.5 | a logo:1:0.9"``  -> parts ``text[:weight[:stop]]`` joined by ``|``.
        A literal colon or bar inside the text is written ``\\:`` or ``\\|``.
Image:  ``"path/to/image.png[:weight[:stop]]"``
Noise:  ``"seed:weight"``  (a random embedding drawn from that seed)

A negative weight pushes the image away from the prompt. The stop value ends a prompt's pull once its
loss falls to it (for negative weights, once the push has reached it).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import PromptError

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?inf\s*$")


@dataclass(frozen=True)
class TextPrompt:
    text: str
    weight: float = 1.0
    stop: float = -math.inf


@dataclass(frozen=True)
class ImagePrompt:
    path: str
    weight: float = 1.0
    stop: float = -math.inf


@dataclass(frozen=True)
class NoisePrompt:
    seed: int
    weight: float = 1.0


def _split_unescaped(s: str, sep: str) -> list[str]:
    """Split on `sep` where it is not preceded by a backslash; escapes are kept for the next stage."""
    return re.split(r"(?<!\\)" + re.escape(sep), s)


def _number(value: str, what: str, part: str, kind: str = "prompt part") -> float:
    if not _NUMBER.match(value):
        raise PromptError(f"{kind} {part!r}: {what} {value.strip()!r} is not a number")
    return float(value)


def parse_text_prompts(spec: str) -> list[TextPrompt]:
    """Parse ``"text[:weight[:stop]] | ..."``; raises PromptError naming the bad part."""
    if not spec or not spec.strip():
        raise PromptError("the prompt is empty")
    prompts = []
    for raw in _split_unescaped(spec, "|"):
        fields = _split_unescaped(raw, ":")
        if len(fields) > 3:
            raise PromptError(
                f"prompt part {raw.strip()!r}: expected text[:weight[:stop]], got {len(fields) - 1} colons "
                "(write a colon inside the text as \\:)"
            )
        text = fields[0].replace("\\:", ":").replace("\\|", "|").strip()
        if not text:
            raise PromptError(f"prompt part {raw.strip()!r} has no text")
        weight = _number(fields[1], "weight", raw.strip()) if len(fields) > 1 else 1.0
        stop = _number(fields[2], "stop", raw.strip()) if len(fields) > 2 else -math.inf
        if not math.isfinite(weight):
            raise PromptError(f"prompt part {raw.strip()!r}: weight must be finite")
        prompts.append(TextPrompt(text, weight, stop))
    return prompts


def _peel_numbers(spec: str, most: int) -> tuple[str, list[str]]:
    """Split up to `most` trailing `:number` fields off `spec` (paths may contain colons)."""
    numbers: list[str] = []
    head = spec
    while len(numbers) < most and ":" in head:
        rest, last = head.rsplit(":", 1)
        if not _NUMBER.match(last):
            break
        numbers.insert(0, last)
        head = rest
    return head, numbers


def parse_image_prompt(spec: str, must_exist: bool = True) -> ImagePrompt:
    """Parse ``"path[:weight[:stop]]"``; the file must exist."""
    path, numbers = _peel_numbers(spec.strip(), 2)
    if not path:
        raise PromptError(f"image prompt {spec!r} has no path")
    if must_exist and not Path(path).is_file():
        raise PromptError(f"image prompt {spec!r}: no such file {path!r}")
    weight = float(numbers[0]) if numbers else 1.0
    stop = float(numbers[1]) if len(numbers) > 1 else -math.inf
    return ImagePrompt(path, weight, stop)


def parse_noise_prompt(spec: str) -> NoisePrompt:
    """Parse ``"seed:weight"`` (seed an integer)."""
    fields = spec.split(":")
    if len(fields) != 2:
        raise PromptError(f"noise prompt {spec!r}: expected seed:weight")
    seed, weight = fields
    if not re.fullmatch(r"\s*\d+\s*", seed):
        raise PromptError(f"noise prompt {spec!r}: seed {seed.strip()!r} is not a non-negative integer")
    return NoisePrompt(int(seed), _number(weight, "weight", spec, "noise prompt"))
