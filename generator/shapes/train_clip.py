"""Train a small CLIP on the shapes world, contrastively, with fragment images as hard negatives.

    python -m generator.shapes.train_clip --arch vqclip-shapes --minutes 12 --out runs/clip
    python -m generator.shapes.train_clip --arch vqclip-shapes-judge --seed 1 --negatives none --out runs/judge

Captions with one attribute of the scene changed are extra text negatives. Positives are scenes with
their captions, lightly shifted/rotated and noised (as the engine's cutouts
are). Negatives are extra images that no caption matches, so every caption must rank its scene above
them: `shuffle` (a scene cut into 8x8 tiles and shuffled: its colours, not its shapes), `confetti` (many
small blobs) and, with --vqgan FILE, images decoded from random codes. Writes OUT/clip_<arch>.safetensors
(fp16; token embeddings of words the world never uses are zeroed, so the file compresses well).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generator.clip import build_clip

from .world import COLOURS, PALETTE, POSITIONS, SHAPES, SIZES, World, full_caption, muted_background, to_tensor

NEGATIVE_KINDS = ("shuffle", "confetti", "vqgan")


def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Rotate +-10 degrees, shift +-6%, add noise: what the engine's cutout augmentations do."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.12
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border",
                      align_corners=False)
    return x + torch.rand(n, 1, 1, 1, generator=gen) * 0.06 * torch.randn(x.shape, generator=gen)


def tile_shuffle(x: torch.Tensor, gen: torch.Generator, tile: int = 8) -> torch.Tensor:
    n, c, h, w = x.shape
    tiles = x.unfold(2, tile, tile).unfold(3, tile, tile).reshape(n, c, -1, tile, tile)
    perm = torch.randperm(tiles.shape[2], generator=gen)
    tiles = tiles[:, :, perm].reshape(n, c, h // tile, w // tile, tile, tile)
    return tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def confetti(n: int, rng: random.Random) -> torch.Tensor:
    """Muted backgrounds strewn with 6-25 small blobs of palette colours."""
    out = np.empty((n, 64, 64, 3), np.uint8)
    colours = list(PALETTE.values())
    for i in range(n):
        img = np.empty((64, 64, 3), np.uint8)
        img[:] = muted_background(rng)
        for _ in range(rng.randint(6, 25)):
            x, y, r = rng.randrange(64), rng.randrange(64), rng.randint(1, 4)
            img[max(0, y - r):y + r, max(0, x - r):x + r] = rng.choice(colours)
        out[i] = img
    return to_tensor(out)


class RandomCodes:
    """Images decoded from uniformly random codes of a trained VQGAN (what the loop starts from)."""

    def __init__(self, path: str):
        from generator.models import load_vqgan

        self.model = load_vqgan(path)[0].eval()

    @torch.no_grad()
    def __call__(self, n: int, gen: torch.Generator) -> torch.Tensor:
        book = self.model.codebook
        idx = torch.randint(len(book), (n, 16, 16), generator=gen)
        return self.model.decode(book[idx].permute(0, 3, 1, 2)).add(1).div(2).clamp(0, 1)


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, n_pos: int, captions: list[str], scale) -> torch.Tensor:
    """Symmetric InfoNCE; identical captions count as positives; images and captions past the first
    n_pos are negatives only (fragment images; captions with one attribute changed)."""
    logits = scale * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T  # [n_txt, n_img]
    same = torch.tensor([[a == b for b in captions] for a in captions], dtype=torch.float32)
    t2i = -(F.log_softmax(logits[:n_pos], 1)[:, :n_pos] * same / same.sum(1, keepdim=True)).sum(1).mean()
    i2t = -(F.log_softmax(logits[:, :n_pos].T, 1)[:, :n_pos] * same / same.sum(1, keepdim=True)).sum(1).mean()
    return (t2i + i2t) / 2


def altered_captions(scenes, rng: random.Random, attributes=("position", "shape", "colour")) -> list[str]:
    """For each scene, its full caption with one attribute of its first thing changed: in a random batch
    colour alone tells most captions apart, so without these, shape and position are barely learned."""
    values = {"colour": COLOURS, "shape": SHAPES, "position": tuple(POSITIONS)}
    out = []
    for s in scenes:
        first, rest = s.things[0], list(s.things[1:])
        for attribute in attributes:
            taken = {getattr(t, attribute) for t in rest} if attribute == "position" else set()
            options = [v for v in values[attribute] if v != getattr(first, attribute) and v not in taken]
            out.append(full_caption([dataclasses.replace(first, **{attribute: rng.choice(options)})] + rest))
    return out


def train(arch: str, minutes: float, batch: int, n_neg: int, negatives: list[str], seed: int,
          vqgan: str | None, init: str | None, lr: float, text_negatives: bool = True):
    torch.manual_seed(seed)
    gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    state = None
    if init:
        from generator.checkpoint import read_state_dict

        state = {k: v.float() for k, v in read_state_dict(init).items()}
    clip = build_clip(arch, state, seed=seed)
    model = clip.model.train().requires_grad_(True)
    random_codes = RandomCodes(vqgan) if "vqgan" in negatives else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    world = World("train", seed=seed)
    start, step, index, budget = time.time(), 0, 0, minutes * 60
    while (elapsed := time.time() - start) < budget:
        warm = min(1.0, (step + 1) / 30)
        for group in opt.param_groups:
            group["lr"] = lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * elapsed / budget)))
        images, scenes = world.batch(index, batch)
        index += batch
        x = to_tensor(images)
        parts = [jitter(x, gen)]
        kinds = [k for k in negatives if k != "none"]
        for j, kind in enumerate(kinds):
            k = n_neg // len(kinds) + (j < n_neg % len(kinds))
            if kind == "shuffle":
                parts.append(tile_shuffle(x[:k], gen, rng.choice([4, 8, 16])))
            elif kind == "confetti":
                parts.append(confetti(k, rng))
            elif kind == "vqgan":
                parts.append(random_codes(k, gen))
        img = torch.cat(parts)
        captions = [s.caption for s in scenes]
        img_emb = model.encode_image((img - clip.mean) / clip.std)
        hard = altered_captions(scenes, rng) if text_negatives else []
        txt_emb = model.encode_text(clip.tokenizer(captions + hard))
        loss = contrastive_loss(img_emb, txt_emb, len(captions), captions, model.logit_scale.exp().clamp(max=100))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} {elapsed:.0f}s loss {loss.item():.3f} scale {model.logit_scale.exp().item():.1f}", flush=True)
    print(f"trained {step} steps of {batch}+{n_neg} in {time.time() - start:.0f}s", flush=True)
    return clip


def variants(thing, attribute: str) -> list[str]:
    """Full captions of `thing` with `attribute` set to each of its values (the true one first)."""
    values = {"colour": COLOURS, "shape": SHAPES, "size": tuple(SIZES), "position": tuple(POSITIONS)}[attribute]
    own = getattr(thing, attribute)
    return [full_caption([thing.__class__(**{**thing.__dict__, attribute: v})]) for v in [own] + [v for v in values if v != own]]


@torch.no_grad()
def evaluate(clip, n: int = 300) -> dict:
    """Held-out caption retrieval top-1 (among the unique captions of n held-out scenes), per-attribute
    top-1 among captions differing in that attribute only (one-shape scenes), and how often a caption
    prefers its scene to the same scene tile-shuffled."""
    model = clip.model.eval()
    images, scenes = World("heldout", seed=0, two_shape_fraction=0.0).batch(0, n)
    x = to_tensor(images)
    img = F.normalize(clip.encode_image(x), dim=-1)
    captions = sorted({s.full_caption for s in scenes})
    txt = F.normalize(clip.encode_text(captions), dim=-1)
    top = (img @ txt.T).argmax(1)
    retrieval = np.mean([captions[i] == s.full_caption for i, s in zip(top.tolist(), scenes)])
    result = {"retrieval_top1": float(retrieval), "n_captions": len(captions)}
    for attribute in ("colour", "shape", "position", "size"):
        hits = []
        for e, s in zip(img, scenes):
            t = F.normalize(clip.encode_text(variants(s.things[0], attribute)), dim=-1)
            hits.append(int((t @ e).argmax()) == 0)
        result[attribute] = float(np.mean(hits))
    shuffled = F.normalize(clip.encode_image(tile_shuffle(x, torch.Generator().manual_seed(0))), dim=-1)
    own = txt[[captions.index(s.full_caption) for s in scenes]]
    result["beats_shuffled"] = float(((own * img).sum(1) > (own * shuffled).sum(1)).float().mean())
    return result


def used_token_ids(tokenizer) -> torch.Tensor:
    """Every token id the world's captions can produce (with start/end/padding)."""
    words = list(COLOURS) + list(SHAPES) + list(SIZES) + ["a an picture of on the plain background and left right "
                                                           "top bottom centre in at"]
    return tokenizer(words).flatten().unique()


def save(clip, arch: str, out: Path) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in clip.model.state_dict().items()}
    keep = torch.zeros(state["token_embedding.weight"].shape[0], dtype=torch.bool)
    keep[used_token_ids(clip.tokenizer)] = True
    state["token_embedding.weight"][~keep] = 0
    path = out / f"clip_{arch.replace('vqclip-', '').replace('-', '_')}.safetensors"
    save_file(state, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vqclip-shapes")
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--negatives", default="shuffle,confetti", help=f"comma-separated of {NEGATIVE_KINDS}, or none")
    parser.add_argument("--n-neg", type=int, default=16)
    parser.add_argument("--vqgan", help="VQGAN checkpoint for the 'vqgan' negatives")
    parser.add_argument("--init", help="fine-tune from this checkpoint")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--no-text-negatives", action="store_true", help="no captions with one attribute changed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-only", type=Path, help="measure this checkpoint of --arch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.eval_only:
        from generator.checkpoint import read_state_dict

        clip = build_clip(args.arch, read_state_dict(args.eval_only))
    else:
        clip = train(args.arch, args.minutes, args.batch, args.n_neg, args.negatives.split(","), args.seed,
                     args.vqgan, args.init, args.lr,
                     not args.no_text_negatives)
        print("saved", save(clip, args.arch, args.out), flush=True)
    print("held-out:", evaluate(clip), flush=True)


if __name__ == "__main__":
    main()
