"""The loop's own attack, run on the CLIP being trained: what VQGAN+CLIP makes of the right answer.

Started from a clean scene, the loop wears a star's points away: its guides score the eroded star above
the star (benchmarks/RESULTS.md, "Ninth round"). Fixed files of such images do not teach them otherwise:
a guide fine-tuned on them is fooled by the next erosion. So `train_clip --attack-weight` finds them
while it trains: each step, a few scenes of one thing are encoded by the VQGAN and their latents moved
by the loop itself (straight-through quantisation, decoding, the loop's augmented cutouts, Adam at the
loop's learning rate) towards what the model being trained scores highest for their captions. Each
result the checker no longer reads as the scene's thing is a pair: its caption must rank the scene above
it (`clip_losses.pair_loss`). As the model learns, the attack follows it, as in adversarial training.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from generator.clip import spherical_distance
from generator.cutouts import MakeCutouts
from generator.vqgan import vector_quantize
from generator.weight_records import SHAPES_RECOMMENDED

from .loop_negatives import wrong
from .world import World, render, to_tensor


class LoopAttack:
    """Callable: (clip, model, n) -> (scenes, attacked, captions) or None when every attack failed.

    scenes and attacked are float [m, 3, 64, 64] in [0, 1] (the scenes reconstructed by the VQGAN, so a
    pair differs in what the loop changed alone); captions are the m scenes' captions."""

    def __init__(self, vqgan, steps: int = 12, lr: float = SHAPES_RECOMMENDED["lr"], cutn: int = 4,
                 seed: int = 0):
        self.vqgan = vqgan.eval().requires_grad_(False)
        self.steps, self.lr = steps, lr
        self.cutouts = MakeCutouts(64, cutn, 1.0, SHAPES_RECOMMENDED["augmentations"],
                                   padding=SHAPES_RECOMMENDED["augment_padding"])
        codebook = vqgan.codebook.detach()
        self.codebook, self.low, self.high = codebook, codebook.min(0).values.view(1, -1, 1, 1), \
            codebook.max(0).values.view(1, -1, 1, 1)
        self.world, self.index = World("train", seed=seed, two_shape_fraction=0.0), 0
        self.gen = torch.Generator().manual_seed(seed)
        self.tried = self.found = 0

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vqgan.decode(vector_quantize(z, self.codebook)).add(1).div(2).clamp(0, 1)

    def __call__(self, clip, encode_text, n: int):
        scenes = [self.world.scene(self.index + i) for i in range(n)]
        self.index += n
        captions = [s.caption for s in scenes]
        clean, attacked = self.attack(clip, encode_text, scenes)
        pixels = attacked.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
        keep = [i for i in range(n) if wrong(pixels[i], scenes[i].things[0])]
        self.tried, self.found = self.tried + n, self.found + len(keep)
        if not keep:
            return None
        return clean[keep], attacked[keep], [captions[i] for i in keep]

    def attack(self, clip, encode_text, scenes) -> tuple[torch.Tensor, torch.Tensor]:
        """The scenes through the VQGAN, and what `steps` steps of the loop made of them, both [n, 3, 64, 64]."""
        x = to_tensor(np.stack([np.asarray(render(s.things, s.background)) for s in scenes]))
        with torch.no_grad():
            target = F.normalize(encode_text(clip.tokenizer([s.caption for s in scenes])), dim=-1)
            z = self.vqgan.encode(x * 2 - 1)
            clean = self.decode(z)
        z = z.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=self.lr)
        for _ in range(self.steps):
            images = self.decode(z)
            loss = 0
            for i in range(len(scenes)):
                embeds = clip.encode_image(self.cutouts(images[i:i + 1], self.gen))
                loss = loss + spherical_distance(embeds, target[i:i + 1]).mean()
            (grad,) = torch.autograd.grad(loss, z)  # the CLIP's weights get no gradient from the attack
            z.grad = grad
            opt.step()
            with torch.no_grad():
                z.copy_(torch.maximum(torch.minimum(z, self.high), self.low))
        with torch.no_grad():
            return clean, self.decode(z)
