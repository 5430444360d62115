"""The shapes world: seeded, endless, captioned 64x64 scenes of one or two simple shapes.

    world = World(split="train")
    scene = world.scene(17)          # the same scene for the same index, always
    scene.image                      # PIL 64x64 RGB, muted flat background
    scene.caption                    # e.g. "a large red circle on the left"

A scene holds one shape, or two on opposite sides (left/right or top/bottom). Some colour/shape pairs
(`HELD_OUT`) never appear in the "train" split; the "heldout" split puts one of them in every scene, so
held-out prompts ask for combinations no model has seen.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPERSAMPLE = 4  # drawn at 4x and box-filtered down: anti-aliased edges like a real photo's

PALETTE = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 225), "yellow": (240, 215, 40),
    "purple": (135, 55, 185), "orange": (245, 135, 30), "white": (245, 245, 245), "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = {"small": 8.0, "large": 13.5}  # circumradius in pixels
POSITIONS = {"left": (17, 32), "right": (47, 32), "top": (32, 17), "bottom": (32, 47), "centre": (32, 32)}
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "centre": "in the centre"}
PAIRS = (("left", "right"), ("top", "bottom"))
# "a blue square above a yellow triangle": the first-named thing's position, then the other's
RELATIONS = {"above": ("top", "bottom"), "below": ("bottom", "top"), "to the left of": ("left", "right"),
             "to the right of": ("right", "left")}
# Every word a caption of the world can use: a guide trained on them knows no other (`train_clip.save` zeroes
# the rest of its token rows).
VOCABULARY = frozenset([*COLOURS, *SHAPES, *SIZES, *"a an picture of on the plain background and left right top bottom "
                        "centre in at".split(), *(w for r in RELATIONS for w in r.split())])
# One shape per colour is never drawn in that colour in training: 8 of the 40 colour/shape pairs.
HELD_OUT = frozenset((c, SHAPES[(2 * i + 1) % len(SHAPES)]) for i, c in enumerate(COLOURS))
SPLITS = ("train", "heldout", "all")  # "all": any pair (for the judge, which must know every one)


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str
    size: str
    position: str

    def phrase(self, with_size: bool = True, with_position: bool = True, with_colour: bool = True) -> str:
        words = ([self.size] if with_size else []) + ([self.colour] if with_colour else [])
        text = f"{' '.join(words + [self.shape])}"
        return text + (f" {POSITION_PHRASES[self.position]}" if with_position else "")


@dataclass(frozen=True)
class Scene:
    things: tuple[Thing, ...]
    background: tuple[int, int, int]
    caption: str  # a training caption (template chosen by the seed)
    image: Image.Image

    @property
    def full_caption(self) -> str:
        """The caption naming every attribute: what the retrieval evaluation uses."""
        return full_caption(self.things)


def article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


def full_caption(things) -> str:
    parts = [f"{article(t.phrase())} {t.phrase()}" for t in things]
    return " and ".join(parts)


def relation(things) -> str | None:
    """The word that places two things' first against its second ("above"), None unless they are a pair."""
    if len(things) != 2:
        return None
    return next((word for word, places in RELATIONS.items() if places == (things[0].position, things[1].position)),
                None)


def relational_caption(things, with_size: bool = True) -> str:
    """Two things of a pair in one another's terms: "a large blue square above a small yellow triangle"."""
    word = relation(things)
    if word is None:
        raise ValueError(f"{things!r}: a relational caption needs two things on opposite sides")
    a, b = (t.phrase(with_size, with_position=False) for t in things)
    return f"{article(a)} {a} {word} {article(b)} {b}"


def _relational_parts(text: str) -> tuple[list[str], tuple[str, str]] | None:
    """(['a blue square', 'a yellow triangle'], ('top', 'bottom')) for "a blue square above a yellow triangle"."""
    for word, places in RELATIONS.items():
        head, sep, tail = text.partition(f" {word} ")
        if sep and " and " not in text:
            return [head, tail], places
    return None


def _parse_thing(part: str, position: str | None) -> Thing:
    """One thing: '[a] SIZE COLOUR SHAPE POSITION', or without the POSITION when `position` is given."""
    words = part.split()
    if words[:1] in (["a"], ["an"]):
        words = words[1:]
    if len(words) < 3:
        form = "'[a] SIZE COLOUR SHAPE', e.g. 'a large red circle'" if position else \
            "'[a] SIZE COLOUR SHAPE POSITION', e.g. 'a large red circle on the left'"
        raise ValueError(f"{part!r}: expected {form}")
    size, colour, shape, rest = words[0], words[1], words[2], " ".join(words[3:])
    for value, allowed, what in ((size, SIZES, "size"), (colour, COLOURS, "colour"), (shape, SHAPES, "shape")):
        if value not in allowed:
            raise ValueError(f"{part!r}: {value!r} is not a {what} of the shapes world ({', '.join(allowed)})")
    if position and rest:
        raise ValueError(f"{part!r}: {rest!r} after the shape; the relation already places it")
    if not position:
        position = {phrase: name for name, phrase in POSITION_PHRASES.items()}.get(rest.replace("center", "centre"))
    if position is None:
        where = f"{rest!r} is not a position" if rest else "no position"
        raise ValueError(f"{part!r}: {where} ({', '.join(POSITION_PHRASES.values())})")
    return Thing(colour, shape, size, position)


def parse_caption(text: str) -> tuple[Thing, ...]:
    """The things of a full caption ("a large red circle on the left and a small blue star at the top"),
    the inverse of `full_caption`, so that the checker can judge a user's own prompt; also two things in
    one another's terms (`relational_caption`: "a large blue square above a small yellow triangle"). Raises
    ValueError naming the part it cannot read: every thing needs a size, a colour, a shape and a position."""
    text = " ".join(text.strip().lower().split())
    relational = _relational_parts(text)
    if relational:
        things = [_parse_thing(part, place) for part, place in zip(*relational)]
    else:
        things = [_parse_thing(part, None) for part in text.split(" and ")]
    if len(things) > 2 or (len(things) == 2 and {t.position for t in things} not in [set(p) for p in PAIRS]):
        raise ValueError(f"{text!r}: the shapes world draws one thing, or two on the left and right or "
                         f"at the top and bottom")
    return tuple(things)


def wording(rng: random.Random) -> tuple[bool, bool]:
    """Whether a caption names size and position: the first draws `caption_for` makes from its rng."""
    return rng.random() < 0.5, rng.random() < 0.75


def caption_for(things, rng: random.Random, with_colour: bool = True) -> str:
    """A caption from one of several templates; some leave out size or position, as people do (and, for
    shapes drawn off the palette, `with_colour=False`, the colour)."""
    with_size, with_position = wording(rng)
    parts = []
    for t in things:
        p = t.phrase(with_size, with_position, with_colour)
        parts.append(f"{article(p)} {p}")
    text = " and ".join(parts)
    return rng.choice(["{}", "{}", "a picture of {}", "{} on a plain background"]).format(text)


def muted_background(rng: random.Random) -> tuple[int, int, int]:
    """A low-saturation mid-tone colour, kept well away from every palette colour."""
    while True:
        grey = rng.uniform(85, 165)
        rgb = tuple(int(np.clip(grey + rng.uniform(-22, 22), 0, 255)) for _ in range(3))
        if min(math.dist(rgb, p) for p in PALETTE.values()) > 85:
            return rgb


def off_palette_colour(rng: random.Random, background, away: float = 60.0) -> tuple[int, int, int]:
    """A random colour at least `away` from every palette colour and from `background`: recoloured
    shapes show a model outlines in colours the captions never name, and never a held-out pair."""
    while True:
        rgb = tuple(rng.randrange(256) for _ in range(3))
        if min(math.dist(rgb, p) for p in [*PALETTE.values(), background]) > away:
            return rgb


def redrawn_off_palette(scene, rng: random.Random) -> np.ndarray:
    """`scene` drawn again (uint8 [64, 64, 3]) with each shape in an `off_palette_colour` from `rng`."""
    fills = [off_palette_colour(rng, scene.background) for _ in scene.things]
    return np.asarray(render(scene.things, scene.background, rng, fills))


def shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    """Vertices of an upright shape of circumradius r (None for a circle)."""
    if shape == "square":
        h = r * 0.78
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        cy += r * 0.2  # centre the bounding box rather than the circumcentre
        return [(cx + r * math.sin(a), cy - r * math.cos(a)) for a in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    if shape == "star":
        cy += r * 0.08
        return [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(k * math.pi / 5),
                 cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(k * math.pi / 5)) for k in range(10)]
    if shape == "cross":
        a, t = r * 0.9, r * 0.32
        return [(cx - t, cy - a), (cx + t, cy - a), (cx + t, cy - t), (cx + a, cy - t), (cx + a, cy + t),
                (cx + t, cy + t), (cx + t, cy + a), (cx - t, cy + a), (cx - t, cy + t), (cx - a, cy + t),
                (cx - a, cy - t), (cx - t, cy - t)]
    return None


def render(things, background, rng: random.Random | None = None, fills=None) -> Image.Image:
    """Draw the things on a flat background, with a pixel or two of positional jitter; `fills`, one RGB
    per thing, overrides their palette colours."""
    rng = rng or random.Random(0)
    fills = fills or [PALETTE[t.colour] for t in things]
    s = SUPERSAMPLE
    canvas = Image.new("RGB", (SIZE * s, SIZE * s), background)
    draw = ImageDraw.Draw(canvas)
    for t, fill in zip(things, fills):
        x, y = POSITIONS[t.position]
        x, y = (x + rng.uniform(-1.5, 1.5)) * s, (y + rng.uniform(-1.5, 1.5)) * s
        r = SIZES[t.size] * rng.uniform(0.93, 1.07) * s
        draw_shape(draw, t.shape, x, y, r, fill)
    return canvas.resize((SIZE, SIZE), Image.BOX)


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, fill) -> None:
    """One upright shape of circumradius r centred near (x, y), in canvas pixels."""
    poly = shape_polygon(shape, x, y, r)
    if poly is None:
        draw.ellipse([x - r * 0.9, y - r * 0.9, x + r * 0.9, y + r * 0.9], fill=fill)
    else:
        draw.polygon(poly, fill=fill)


class World:
    """Scene `i` of a split is a pure function of (split, seed, i)."""

    def __init__(self, split: str = "train", seed: int = 0, two_shape_fraction: float = 0.3,
                 relational: float = 0.0):
        """relational: the fraction of two-thing scenes captioned in one another's terms ("a blue square
        above a yellow triangle"), drawn apart from the rest of the scene, so 0 keeps every caption as it was."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        if not 0.0 <= relational <= 1.0:
            raise ValueError(f"relational must be a fraction in [0, 1], got {relational}")
        self.split, self.seed, self.two, self.relational = split, seed, two_shape_fraction, relational

    def relational_at(self, index: int) -> bool | None:
        """None when scene `index` is captioned as usual, else whether its relational caption names sizes."""
        if not self.relational:
            return None
        rng = random.Random(f"relational:{self.split}:{self.seed}:{index}")
        return rng.random() < 0.5 if rng.random() < self.relational else None

    def _caption(self, index: int, things, rng: random.Random) -> str:
        caption = caption_for(things, rng)  # drawn always, so that the scene's other draws stay as they were
        with_size = self.relational_at(index) if relation(things) else None
        return caption if with_size is None else relational_caption(things, with_size)

    def _thing(self, rng: random.Random, position: str, held: bool | None) -> Thing:
        while True:
            colour, shape = rng.choice(COLOURS), rng.choice(SHAPES)
            if held is None or ((colour, shape) in HELD_OUT) == held:
                return Thing(colour, shape, rng.choice(tuple(SIZES)), position)

    def things(self, rng: random.Random) -> tuple[Thing, ...]:
        held = {"train": False, "heldout": True, "all": None}[self.split]
        if rng.random() < self.two:
            first, second = rng.choice(PAIRS)
            if rng.random() < 0.5:
                first, second = second, first
            # in a held-out scene only the first-named thing is an unseen pair
            return self._thing(rng, first, held), self._thing(rng, second, None if held is None else False)
        return (self._thing(rng, rng.choice(tuple(POSITIONS)), held),)

    def scene(self, index: int) -> Scene:
        rng = random.Random(f"{self.split}:{self.seed}:{index}")
        things = self.things(rng)
        background = muted_background(rng)
        caption = self._caption(index, things, rng)
        return Scene(things, background, caption, render(things, background, rng))

    def recaption(self, index: int, things) -> str:
        """The caption scene `index` would have if it held `things`: the same template and wording."""
        rng = random.Random(f"{self.split}:{self.seed}:{index}")
        self.things(rng)
        muted_background(rng)
        return self._caption(index, things, rng)

    def batch(self, start: int, n: int) -> tuple[np.ndarray, list[Scene]]:
        """Scenes start..start+n-1 as a uint8 [n, 64, 64, 3] array and their records."""
        scenes = [self.scene(i) for i in range(start, start + n)]
        return np.stack([np.asarray(s.image) for s in scenes]), scenes


def to_tensor(images: np.ndarray):
    """uint8 [n, H, W, 3] -> float [n, 3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)
