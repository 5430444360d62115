"""Read colour, shape, size and position back from a picture of the shapes world, pixel by pixel.

    objects = read_scene(image)            # largest first
    objects[0].colour, objects[0].shape, objects[0].position
    check(image, thing)                    # {"colour": True, "shape": False, "position": True, "size": ...}

1. Background: the median colour of the border pixels. 2. Foreground: pixels far from it in RGB.
3. Objects: 4-connected components of the foreground (specks under MIN_AREA pixels are ignored).
4. Colour: the palette colour nearest the median of the component's pixels. 5. Position: the centroid,
against the five anchor points. 6. Shape: template matching. Each of the world's five upright shapes is
drawn as the world draws it (`world.draw_shape`), with the component's area, centred where the
component's centroid puts it (radius and centre searched a little); the shape whose template overlaps
the component best (intersection over union) is the reading, or "unclear" when even the best overlaps
less than MIN_IOU. Blur moves a thin star point's pixels across the foreground threshold, so cues such
as fill ratio and solidity read blurred small stars as crosses; the overlap with a whole template does
not (clean held-out scenes blurred by a Gaussian of 1 px: 99.7% read right; fill ratio and solidity:
84%; benchmarks/RESULTS.md, "Seventh round"). It knows the scene grammar and nothing else: it is the
judge that no CLIP can fool.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from .world import PALETTE, POSITIONS, SHAPES, draw_shape

FOREGROUND_DISTANCE = 45.0  # RGB distance from the background that counts as foreground
MIN_AREA = 12  # pixels; smaller components are noise
MIN_IOU = 0.75  # a component that overlaps no shape this much is no shape (clean shapes blurred by 1.3 px: >= 0.79)
UNCLEAR = "unclear"
LARGE_AREA = 214  # pixels: clean small shapes measure 79-208, large ones 220-545


@dataclass(frozen=True)
class Reading:
    colour: str
    shape: str
    size: str
    position: str
    area: int
    centroid: tuple[float, float]  # (x, y) in pixels


def _pixels(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    return np.asarray(image, dtype=np.float32)[..., :3]


def background(pixels: np.ndarray) -> np.ndarray:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.median(border, axis=0)


def components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected components of a boolean mask, as arrays of (y, x), by flood fill."""
    labels = np.zeros(mask.shape, np.int32)
    found = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if labels[y0, x0]:
            continue
        label = len(found) + 1
        labels[y0, x0] = label
        stack, points = [(y0, x0)], []
        while stack:
            y, x = stack.pop()
            points.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        found.append(np.array(points))
    return found


TEMPLATE_SUPERSAMPLE = 4  # templates are drawn like the world's scenes: at 4x, box-filtered down
RADIUS_STEPS = (0.93, 1.0, 1.07)  # the world draws circumradii within +-7% of the nominal size
SHIFT_STEPS = (-0.5, 0.0, 0.5)  # pixels, around the centre implied by the centroid


@lru_cache(maxsize=None)
def _unit(shape: str) -> tuple[float, float, float]:
    """(area / r**2, centroid x offset / r, centroid y offset / r) of `shape` drawn at circumradius r."""
    r, c = 100.0, 150.0
    canvas = Image.new("L", (300, 300), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, c, c, r, 255)
    ys, xs = np.nonzero(np.asarray(canvas) > 127)
    return len(ys) / r**2, (xs.mean() + 0.5 - c) / r, (ys.mean() + 0.5 - c) / r


def template(shape: str, cx: float, cy: float, r: float, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Boolean [h, w] mask of the pixels (from (y0, x0)) that `shape` at (cx, cy), radius r, covers half of."""
    s = TEMPLATE_SUPERSAMPLE
    canvas = Image.new("L", (w * s, h * s), 0)
    draw_shape(ImageDraw.Draw(canvas), shape, (cx - x0) * s, (cy - y0) * s, r * s, 255)
    return np.asarray(canvas.resize((w, h), Image.BOX)) >= 128


def match_shapes(points: np.ndarray) -> dict[str, float]:
    """Each shape's best intersection-over-union with the component: the upright shape of the
    component's area, centred where its centroid says, radius and centre searched a little."""
    ys, xs = points[:, 0], points[:, 1]
    area, my, mx = len(points), ys.mean() + 0.5, xs.mean() + 0.5
    reach = math.ceil(max(math.sqrt(area / _unit(s)[0]) for s in SHAPES) * max(RADIUS_STEPS) * 1.2) + 2
    y0, x0 = min(ys.min(), int(my) - reach), min(xs.min(), int(mx) - reach)
    h, w = max(ys.max() + 1, int(my) + reach) - y0, max(xs.max() + 1, int(mx) + reach) - x0
    mask = np.zeros((h, w), bool)
    mask[ys - y0, xs - x0] = True
    best = {}
    for shape in SHAPES:
        k, ox, oy = _unit(shape)
        best[shape] = 0.0
        for f in RADIUS_STEPS:
            r = math.sqrt(area / k) * f
            for dx in SHIFT_STEPS:
                for dy in SHIFT_STEPS:
                    t = template(shape, mx - ox * r + dx, my - oy * r + dy, r, y0, x0, h, w)
                    best[shape] = max(best[shape], float((t & mask).sum() / (t | mask).sum()))
    return best


def classify_shape(points: np.ndarray) -> str:
    """The world's shape that overlaps the component best, or UNCLEAR when none overlaps it enough."""
    ious = match_shapes(points)
    shape = max(ious, key=ious.get)
    return shape if ious[shape] >= MIN_IOU else UNCLEAR


def classify_position(x: float, y: float) -> str:
    return min(POSITIONS, key=lambda p: (x - POSITIONS[p][0]) ** 2 + (y - POSITIONS[p][1]) ** 2)


def classify_size(area: int) -> str:
    return "large" if area > LARGE_AREA else "small"


def nearest_colour(rgb: np.ndarray) -> str:
    return min(PALETTE, key=lambda c: float(np.sum((np.array(PALETTE[c]) - rgb) ** 2)))


def _objects(pixels: np.ndarray) -> list[np.ndarray]:
    """The foreground components of at least MIN_AREA pixels, largest first."""
    mask = np.linalg.norm(pixels - background(pixels), axis=-1) > FOREGROUND_DISTANCE
    return sorted((c for c in components(mask) if len(c) >= MIN_AREA), key=len, reverse=True)


def shape_overlap(image, shape: str) -> float:
    """How well the largest object of `image` overlaps `shape`'s template (intersection over union, 0 when
    there is no object): a graded score where `check` says only yes or no. Clean held-out scenes score
    0.93-1.0 for their own shape; MIN_IOU is where "yes" starts."""
    found = _objects(_pixels(image))
    return match_shapes(found[0])[shape] if found else 0.0


def read_scene(image, max_objects: int = 4) -> list[Reading]:
    """The objects in an image (PIL or uint8 [H, W, 3]), largest first; [] when it finds none."""
    pixels = _pixels(image)
    found = _objects(pixels)[:max_objects]
    readings = []
    for points in found:
        colour = nearest_colour(np.median(pixels[points[:, 0], points[:, 1]], axis=0))
        y, x = points.mean(0) + 0.5
        readings.append(Reading(colour, classify_shape(points), classify_size(len(points)),
                                classify_position(x, y), len(points), (float(x), float(y))))
    return readings


def check(image, thing) -> dict[str, bool]:
    """Whether the largest object of `image` has `thing`'s colour, shape, size and position."""
    found = read_scene(image)
    if not found:
        return {"colour": False, "shape": False, "size": False, "position": False}
    top = found[0]
    return {k: getattr(top, k) == getattr(thing, k) for k in ("colour", "shape", "size", "position")}


def check_scene(image, things) -> dict[str, bool]:
    """Every thing of a scene matched to the reading nearest its position (for one- and two-shape scenes)."""
    found = read_scene(image)
    result = {"colour": True, "shape": True, "size": True, "position": True}
    for thing in things:
        target = POSITIONS[thing.position]
        if not found:
            return {k: False for k in result}
        r = min(found, key=lambda r: (r.centroid[0] - target[0]) ** 2 + (r.centroid[1] - target[1]) ** 2)
        for key in result:
            result[key] &= getattr(r, key) == getattr(thing, key)
    return result
