"""What a shapes CLIP knows, measured on held-out scenes (`train_clip` prints these; `reproduce` too)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import path
from .clip_data import swapped
from .clip_losses import encode_text, tile_shuffle
from .world import COLOURS, POSITIONS, SHAPES, SIZES, World, full_caption, relational_caption, to_tensor


@torch.no_grad()
def evaluate(clip, n: int = 300, seed: int = 0) -> dict:
    """Held-out caption retrieval top-1 (among the unique captions of n held-out scenes), per-attribute
    top-1 among captions differing in that attribute only (one-shape scenes), and how often a caption
    prefers its scene to the same scene tile-shuffled."""
    clip.model.eval()
    images, scenes = World("heldout", seed=seed, two_shape_fraction=0.0).batch(0, n)
    x = to_tensor(images)
    img = F.normalize(clip.encode_image(x), dim=-1)
    captions = sorted({s.full_caption for s in scenes})
    txt = F.normalize(clip.encode_text(captions), dim=-1)
    top = (img @ txt.T).argmax(1)
    retrieval = np.mean([captions[i] == s.full_caption for i, s in zip(top.tolist(), scenes)])
    result = {"retrieval_top1": float(retrieval), "n_captions": len(captions)}
    for attribute in ("colour", "shape", "position", "size"):
        lists = [variants(s.things[0], attribute) for s in scenes]
        unique = sorted({c for v in lists for c in v})
        emb = F.normalize(clip.encode_text(unique), dim=-1)
        rows = {c: i for i, c in enumerate(unique)}
        hits = [int((emb[[rows[c] for c in v]] @ e).argmax()) == 0 for e, v in zip(img, lists)]
        result[attribute] = float(np.mean(hits))
    shuffled = F.normalize(clip.encode_image(tile_shuffle(x, torch.Generator().manual_seed(0))), dim=-1)
    own = txt[[captions.index(s.full_caption) for s in scenes]]
    result["beats_shuffled"] = float(((own * img).sum(1) > (own * shuffled).sum(1)).float().mean())
    return result


def variants(thing, attribute: str) -> list[str]:
    """Full captions of `thing` with `attribute` set to each of its values (the true one first)."""
    values = {"colour": COLOURS, "shape": SHAPES, "size": tuple(SIZES), "position": tuple(POSITIONS)}[attribute]
    own = getattr(thing, attribute)
    return [full_caption([thing.__class__(**{**thing.__dict__, attribute: v})]) for v in [own] + [v for v in values if v != own]]


@torch.no_grad()
def relation_top1(clip, n: int = 200, seed: int = 0) -> float:
    """How often a held-out two-thing scene's relational caption ("a large blue square above a small yellow
    triangle") scores it above the same caption with the relation turned round ("... below ...")."""
    clip.model.eval()
    images, scenes = World("heldout", seed=seed, two_shape_fraction=1.0).batch(0, n)
    img = F.normalize(clip.encode_image(to_tensor(images)), dim=-1)
    right = F.normalize(clip.encode_text([relational_caption(s.things) for s in scenes]), dim=-1)
    turned = F.normalize(clip.encode_text([relational_caption(swapped(s.things)) for s in scenes]), dim=-1)
    return float(((img * right).sum(1) > (img * turned).sum(1)).float().mean())


def heldout_order(clip, measure=path.path_order, n: int = 200, seed: int = 5) -> float:
    """`measure` (`path.path_order`: the way in from grey; `path.tint_order`) on n held-out scenes of
    World("heldout", seed)."""
    images, scenes = World("heldout", seed=seed).batch(0, n)
    return measure(clip.encode_image, lambda t: encode_text(clip.model, t), to_tensor(np.asarray(images)),
                   clip.tokenizer([s.caption for s in scenes]))


@torch.no_grad()
def pair_preference(clip, pairs: dict, n: int = 512) -> float:
    """How often a loop image's prompt is closer to the prompt's clean scene than to the loop image."""
    model, was = clip.model, clip.model.training
    model.eval()
    k = min(n, len(pairs["images"]))
    c = F.normalize(encode_text(model, pairs["tokens"][:k]), dim=-1)
    s, b = (F.normalize(clip.encode_image(to_tensor(pairs[key][:k].numpy())), dim=-1) for key in ("scenes", "images"))
    model.train(was)
    return float(((c * s).sum(-1) > (c * b).sum(-1)).float().mean())
