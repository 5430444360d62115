"""Train the shapes VQGAN on the shapes world (CPU, minutes), then measure it on held-out scenes.

    python -m generator.shapes.train_vqgan --minutes 15 --out runs/vqgan

Recipe: the f4 architecture of generator/pretrained/shapes/vqgan_shapes.yaml (no normalisation layers),
Adam lr 1e-3 with a cosine decay over the time budget, gradient clipping 1.0, L1 + MSE reconstruction
(no GAN, no perceptual loss), an 8-d l2-normalised codebook matched by cosine, initialised from encoder
outputs, with unused codes restarted from encoder outputs every 100 steps. Seeds are fixed. The shipped
model: 17 minutes on full 64x64 scenes, then `--init runs/vqgan/vqgan_shapes.safetensors --crop 32 --seed 1`,
then 80 minutes more with `--init <that> --seed 2 --lr 5e-4` (benchmarks/RESULTS.md, "Third round"),
then two fine-tunes with the outline loss, `--edge-weight` 4 and 8 (RESULTS, "Fifth round"). `--recolour`
redraws a fraction of the scenes in off-palette colours (RESULTS, "Sixth round").
Writes OUT/vqgan_shapes.safetensors (fp16) and prints PSNR and checker agreement on held-out scenes.
"""
from __future__ import annotations

import argparse
import math
import random
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F

from generator.clip import quiet
from generator.vqgan import VQGAN, VQGANConfig

from .budget import Budget
from .world import World, redrawn_off_palette, to_tensor

CONFIG = Path(__file__).resolve().parents[1] / "pretrained" / "shapes" / "vqgan_shapes.yaml"


def quantise(model: VQGAN, images: torch.Tensor):
    """(decoded image, unit latent, unit codes, code indices, quantisation loss) for images in [-1, 1]."""
    z = F.normalize(model.quant_conv(model.encoder(images)), dim=1)
    codebook = model.codebook
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    idx = (flat @ codebook.T).argmax(1)
    q = codebook[idx].view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    # VQ-VAE codebook + commitment losses, on the unit sphere
    q_loss = F.mse_loss(q, z.detach()) + 0.25 * F.mse_loss(z, q.detach())
    z_q = z + (q - z).detach()
    return model.decode(z_q), flat, idx, q_loss


def edge_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 between the images' horizontal and vertical pixel differences: the loss lives on the outlines,
    where a shape's corners and points are (plain L1 + MSE barely notices a blunted star point)."""
    return (F.l1_loss(y.diff(dim=-1), x.diff(dim=-1)) + F.l1_loss(y.diff(dim=-2), x.diff(dim=-2))) / 2


def restart_codes(model: VQGAN, usage: torch.Tensor, flat: torch.Tensor, gen: torch.Generator) -> int:
    """Move every code unused since the last restart onto a random encoder output of this batch."""
    dead = (usage == 0).nonzero().flatten()
    if len(dead):
        pick = torch.randint(len(flat), (len(dead),), generator=gen)
        with torch.no_grad():
            model.quantize.embedding.weight[dead] = F.normalize(flat[pick].detach(), dim=1)
    return len(dead)


def scenes(world: World, index: int, n: int, recolour: float) -> torch.Tensor:
    """Scenes index..index+n-1 in [-1, 1]; each, with probability `recolour`, redrawn with its shapes in
    random colours off the palette (`off_palette_colour`), so that outlines are learnt apart from the
    palette colours they come in (and a held-out pair is still never seen)."""
    images, records = world.batch(index, n)
    if recolour:
        images = images.copy()
        for i, scene in enumerate(records):
            rng = random.Random(f"recolour:{world.seed}:{index + i}")
            if rng.random() < recolour:
                images[i] = redrawn_off_palette(scene, rng)
    return to_tensor(images) * 2 - 1


def train(minutes: float, batch: int, seed: int, init: str | None = None, lr_max: float = 1e-3,
          crop: int = 64, edge_weight: float = 0.0, recolour: float = 0.0, log_every: int = 50,
          steps: int | None = None) -> VQGAN:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    world = World("train", seed=seed)
    n_codes = 1024
    if init:  # continue a run (a new stretch of the world, a new cosine schedule)
        from generator.models import load_vqgan

        model = load_vqgan(init)[0].train()
        index = 10_000_000 * (seed + 1)
    else:
        with quiet():
            model = VQGAN(VQGANConfig.from_file(CONFIG))
        with torch.no_grad():  # codebook from encoder outputs, so every code starts where the data is
            x = to_tensor(world.batch(0, 64)[0]) * 2 - 1
            flat = F.normalize(model.quant_conv(model.encoder(x)), dim=1).permute(0, 2, 3, 1).reshape(-1, 8)
            model.quantize.embedding.weight.copy_(flat[torch.randperm(len(flat), generator=gen)[:n_codes]])
        index = 64
    opt = torch.optim.Adam(model.parameters(), lr=lr_max)
    usage = torch.zeros(n_codes)
    budget, step = Budget(minutes, steps), 0
    while not budget.done(step):
        lr = lr_max * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * budget.progress(step))))
        for group in opt.param_groups:
            group["lr"] = lr
        x = scenes(world, index, batch, recolour)
        index += batch
        if crop < 64:  # the model is convolutional: crops teach it the same for a quarter of the compute
            top, left = torch.randint(0, 64 - crop + 1, (2,), generator=gen).tolist()
            x = x[:, :, top:top + crop, left:left + crop]
        y, flat, idx, q_loss = quantise(model, x)
        rec = F.l1_loss(y, x) + F.mse_loss(y, x)
        if edge_weight:
            rec = rec + edge_weight * edge_loss(y, x)
        loss = rec + q_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        usage += torch.bincount(idx, minlength=n_codes).float()
        step += 1
        if step % 100 == 0:
            restarted = restart_codes(model, usage, flat, gen)
            usage.zero_()
        else:
            restarted = None
        if step % log_every == 0:
            psnr = -10 * math.log10(F.mse_loss(y.detach(), x).item() / 4)
            print(f"step {step} {budget.elapsed():.0f}s lr {lr:.2e} loss {loss.item():.4f} psnr {psnr:.1f} "
                  f"codes in batch {len(idx.unique())}" + (f" restarted {restarted}" if restarted is not None else ""),
                  flush=True)
    print(f"trained {step} steps of {batch} in {budget.elapsed():.0f}s", flush=True)
    return model


@torch.no_grad()
def evaluate(model: VQGAN, n: int = 256) -> dict:
    """PSNR and checker agreement (original vs reconstruction) on held-out scenes."""
    from .checker import read_scene

    model.eval()
    images, _ = World("heldout").batch(0, n)
    x = to_tensor(images)
    y = model.decode(model.encode(x * 2 - 1)).add(1).div(2).clamp(0, 1)
    y8 = y.mul(255).round().byte().permute(0, 2, 3, 1).numpy()
    psnr = -10 * math.log10(F.mse_loss(y8_float := torch.from_numpy(y8).float() / 255,
                                        torch.from_numpy(images).float() / 255).item())
    del y8_float
    agree = {"colour": 0, "shape": 0, "position": 0}
    for original, recon in zip(images, y8):
        a, b = read_scene(original), read_scene(recon)
        for key in agree:
            agree[key] += bool(a and b and getattr(a[0], key) == getattr(b[0], key))
    return {"psnr": psnr, **{k: v / n for k, v in agree.items()}, "n": n}


def save(model: VQGAN, out: Path) -> Path:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    state["quantize.embedding.weight"] = model.codebook.detach().half().contiguous()
    path = out / "vqgan_shapes.safetensors"
    save_file(state, str(path))
    shutil.copyfile(CONFIG, out / "vqgan_shapes.yaml")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--steps", type=int, help="train exactly this many steps (repeatable) instead of --minutes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", help="continue training this checkpoint (its YAML beside it)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--crop", type=int, default=64, help="train on random crops of this side")
    parser.add_argument("--edge-weight", type=float, default=0.0,
                        help="weight of an L1 loss on pixel differences (outlines), beside L1 + MSE")
    parser.add_argument("--recolour", type=float, default=0.0,
                        help="fraction of scenes whose shapes are redrawn in random off-palette colours")
    parser.add_argument("--eval-only", action="store_true", help="measure OUT/vqgan_shapes.safetensors")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.eval_only:
        from generator.models import load_vqgan

        model, _ = load_vqgan(str(args.out / "vqgan_shapes.safetensors"))
    else:
        model = train(args.minutes, args.batch, args.seed, args.init, args.lr, args.crop, args.edge_weight,
                      args.recolour, steps=args.steps)
        print("saved", save(model, args.out), flush=True)
    print("held-out:", evaluate(model), flush=True)


if __name__ == "__main__":
    main()
