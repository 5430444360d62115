"""The losses a shapes CLIP trains with, and the views of images they see (`train_clip`).

`jitter` and `noised` do to training images what the engine's cutout augmentations do to the loop's;
`tile_shuffle` keeps an image's colours and destroys its shapes. `contrastive_loss` and
`hard_negative_loss` are CLIP's objective with fragment images and altered captions as negatives;
`pair_loss` ranks a caption's clean scene above images that must score below it (what the loop drew, a
mirror, a scene's things in grey); `adversarial` moves positives to where the model is weakest, which
makes a robust guide.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from generator.vit import _block


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


def noised(x: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """Add Gaussian noise to every image, at a standard deviation drawn uniformly from [0, sigma] per image
    (positives and negatives alike, so noise tells nothing): a model accurate under noise, whose gradient
    averaged over noise (the loop's `Gn` cutouts) follows outlines rather than pixel texture."""
    if not sigma:
        return x
    return x + torch.rand(len(x), 1, 1, 1, generator=gen) * sigma * torch.randn(x.shape, generator=gen)


def tile_shuffle(x: torch.Tensor, gen: torch.Generator, tile: int = 8) -> torch.Tensor:
    n, c, h, w = x.shape
    tiles = x.unfold(2, tile, tile).unfold(3, tile, tile).reshape(n, c, -1, tile, tile)
    perm = torch.randperm(tiles.shape[2], generator=gen)
    tiles = tiles[:, :, perm].reshape(n, c, h // tile, w // tile, tile, tile)
    return tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def encode_text(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text, batch-first through generator.vit's block, on the tokens up to the
    longest caption's end token only: with the causal mask, padding after it changes nothing."""
    length = int(tokens.argmax(1).max()) + 1  # the end token has the highest id
    tokens = tokens[:, :length]
    x = model.token_embedding(tokens) + model.positional_embedding[:length]
    for block in model.transformer.resblocks:
        x = _block(block, x, cls_only=False, causal=True)
    x = model.ln_final(x)
    return x[torch.arange(len(x)), tokens.argmax(1)] @ model.text_projection


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, tokens: torch.Tensor, n_pos: int, scale) -> torch.Tensor:
    """Symmetric InfoNCE: image i < n_pos goes with caption i; images and captions past the first n_pos
    are negatives only (fragment images; captions with one attribute changed); identical captions (same
    tokens) count as positives."""
    logits = scale * F.normalize(txt, dim=-1) @ F.normalize(img, dim=-1).T  # [n_txt, n_img]
    same = (tokens[None, :] == tokens[:n_pos, None]).all(-1).float()  # [n_pos, n_txt]
    t2i = -(F.log_softmax(logits[:n_pos], 1)[:, :n_pos] * same[:, :n_pos] / same[:, :n_pos].sum(1, keepdim=True)).sum(1).mean()
    i2t = -(F.log_softmax(logits[:, :n_pos].T, 1) * same / same.sum(1, keepdim=True)).sum(1).mean()
    return (t2i + i2t) / 2


def hard_negative_loss(img: torch.Tensor, txt: torch.Tensor, n_pos: int, scale) -> torch.Tensor:
    """Each scene's image against its own caption and only its altered captions (txt[n_pos:], k per
    scene in order): the fine distinctions (shape, position) that a random batch rarely asks for."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    candidates = torch.cat([txt[:n_pos, None], txt[n_pos:].view(n_pos, -1, txt.shape[-1])], 1)  # [n, 1+k, d]
    logits = scale * (candidates @ img[:, :, None]).squeeze(-1)
    return F.cross_entropy(logits, torch.zeros(n_pos, dtype=torch.long))


def pair_loss(scene: torch.Tensor, loop: torch.Tensor, caption: torch.Tensor, scale) -> torch.Tensor:
    """Each loop image's prompt (caption i) must rank the prompt's clean scene (scene i) above every loop
    image of the step: what the loop maximises must be higher for the thing than for its blobs."""
    c, s, b = (F.normalize(e, dim=-1) for e in (caption, scene, loop))
    logits = scale * torch.cat([(c * s).sum(-1, keepdim=True), c @ b.T], 1)
    return F.cross_entropy(logits, torch.zeros(len(c), dtype=torch.long))


def jittered_pair_loss(clip, both: torch.Tensor, tokens: torch.Tensor, scale, gen: torch.Generator):
    """`pair_loss` on jittered views of `both` (m clean scenes, then the m loop images of them) for their
    m captions' `tokens`: the loop negatives' pairs and the loop attack's alike."""
    views = clip.encode_image(jitter(both, gen))
    m = len(tokens)
    return pair_loss(views[:m], views[m:], encode_text(clip.model, tokens), scale)


def adversarial(clip, x: torch.Tensor, txt: torch.Tensor, tokens: torch.Tensor, n_pos: int, scale, eps: float,
                steps: int, gen: torch.Generator) -> torch.Tensor:
    """x moved, within an L2 ball of radius eps per image, to where the model ranks its own captions lowest
    (projected gradient ascent on the contrastive and hard-caption losses, from a random start). Training
    on these makes the image tower robust, and a robust model's pixel gradients point at what the caption
    names (Santurkar et al. 2019): what the loop follows. txt: the step's caption embeddings, detached."""
    def norm(d):  # per image, shaped to broadcast over it
        return d.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)

    def project(d):
        return d * (eps / norm(d)).clamp(max=1)

    delta = project(torch.randn(x.shape, generator=gen) * eps / math.sqrt(x[0].numel()))
    alpha = 2.5 * eps / steps
    for _ in range(steps):
        delta.requires_grad_(True)
        img = clip.encode_image((x + delta).clamp(0, 1))
        loss = contrastive_loss(img, txt[:n_pos], tokens[:n_pos], n_pos, scale)
        if len(txt) > n_pos:
            loss = loss + hard_negative_loss(img, txt, n_pos, scale)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = project(delta.detach() + alpha * grad / norm(grad))
    return (x + delta).clamp(0, 1).detach()
