"""Train a small CLIP on the shapes world, contrastively, with fragment images as hard negatives.

    python -m generator.shapes.train_clip --arch vqclip-shapes --minutes 28 --batch 64 --n-neg 8 \
        --text-negatives 3 --hard-weight 1 --out runs/clip
    python -m generator.shapes.train_clip --arch vqclip-shapes-judge-rn --split all --seed 21 ... --out runs/judge

(the shipped models' exact commands: benchmarks/RESULTS.md, "Quality (shapes)").

The training scenes are rendered once into a cache of uint8 tensors (--cache-dir; images, tokenized
captions, tokenized hard text negatives, pools of negative images), so a step is only the model's
forward and backward. Positives are scenes with their captions, lightly shifted/rotated and noised (as
the engine's cutouts are). Captions of the scene with one attribute of its first thing changed are extra
text negatives. Negatives are extra images that no caption matches, so every caption must rank its scene
above them: `shuffle` (a scene cut into tiles and shuffled: its colours, not its shapes), `confetti`
(many small blobs), `blobs` (a few jagged blobs of one colour: what the loop draws when it fools its
guide), with --vqgan NAME|FILE, images decoded from random codes, and with --loop-negatives FILE, images
the loop drew and the checker rejected (`generator.shapes.loop_negatives`); with --pair-weight, each step
also asks the prompts of --n-pair of those images to rank the prompt's clean scene above the step's loop
images (`pair_loss`), so the blobs that fooled the guide score below the thing itself. With
--attack-weight, such pairs are found as the model trains: the loop itself attacks clean scenes through
the VQGAN, against the model as it is (`loop_attack`). With --adv-eps,
the positives are moved adversarially first (`adversarial`), which makes a robust model
(`shapes-robust`); --adv-clean trains on the clean positives too. With --path-weight, each step asks
--n-path scenes' captions to score the scene's way in from flat grey (the loop's start) in order
(`path.path_loss`); with --tint-weight, to score each scene's faint first fade above the same fade with
its colours turned round through grey (`path.tint_loss`). With --recolour F, a fraction F of the
scenes has its shapes redrawn in random colours off the palette and captions without colour words
(`recoloured`), so shape is learnt apart from colour (held-out shape accuracy 73% -> 96%). Writes
OUT/clip_<arch>.safetensors (fp16; token embeddings of words the world never uses are zeroed, so the
file compresses well) at every evaluation, and prints the held-out figures of `evaluate`.

The parts: `clip_data` (the cache and its negatives), `clip_losses` (the losses and views), `clip_eval`
(the held-out measures); here `TrainOptions` (what one run optimises), `train` and the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import random
from pathlib import Path

import torch

from generator.clip import build_clip

from . import backdrops, loop_negatives, path
from .budget import Budget
from .clip_data import NEGATIVE_KINDS, add_blobs, load_cache
from .clip_eval import evaluate, heldout_order, pair_preference, relation_top1
from .clip_losses import (adversarial, contrastive_loss, encode_text, hard_negative_loss, jitter, jittered_pair_loss,
                          noised, tile_shuffle)
from .world import COLOURS, VOCABULARY, to_tensor


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """One run of `train`: how long, the batch and its negatives, and the weight of each extra loss (0: off).
    The command line's options of the same names (see their help); each is checked on construction."""
    minutes: float = 0.0  # wall-clock budget, unless `steps` is given
    steps: int | None = None
    batch: int = 128
    n_neg: int = 16  # negative images per step, shared among `negatives`
    negatives: tuple[str, ...] = ("shuffle", "confetti", "vqgan", "blobs")
    seed: int = 0
    lr: float = 1e-3
    text_negatives: int = 1  # altered captions per scene and step, 0-3
    hard_weight: float = 0.0
    eval_every: float = 0.0  # minutes between checkpoints and evaluations; 0: none
    adv_eps: float = 0.0
    adv_steps: int = 3
    adv_clean: bool = False
    n_pair: int = 8  # pairs per step for `pair_weight`, `contrast_weight` and `mirror_weight`
    pair_weight: float = 0.0
    attack_n: int = 4
    attack_weight: float = 0.0
    noise_sigma: float = 0.0
    path_weight: float = 0.0
    n_path: int = 8  # scenes per step for `path_weight` and `tint_weight`
    path_things: bool = False
    backgrounds: float = 0.0
    contrast_weight: float = 0.0
    tint_weight: float = 0.0
    text_only: bool = False  # the text tower alone: the image tower, so the loop's pixel gradients, stay as they are
    mirror_weight: float = 0.0
    mirror_parts: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.negatives) - set(NEGATIVE_KINDS))
        if unknown:
            raise ValueError(f"unknown negatives {unknown}: choose from {NEGATIVE_KINDS}")
        if self.text_negatives not in (0, 1, 2, 3):
            raise ValueError(f"text_negatives is 0, 1, 2 or 3, not {self.text_negatives}")
        if self.steps is not None and self.steps < 0:
            raise ValueError(f"steps must be >= 0, not {self.steps}")
        for name in ("batch", "n_pair", "n_path", "attack_n", "adv_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        for name in ("minutes", "lr", "n_neg", "hard_weight", "eval_every", "adv_eps", "pair_weight",
                     "attack_weight", "noise_sigma", "path_weight", "contrast_weight", "tint_weight", "mirror_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if not 0 <= self.backgrounds <= 1:
            raise ValueError(f"backgrounds is a fraction in [0, 1], not {self.backgrounds}")
        if self.n_neg and not self.negatives:
            raise ValueError(f"{self.n_neg} negative images a step (n_neg) need a kind of negatives")


def train(clip, cache: dict, o: TrainOptions, out: Path | None = None, arch: str = "vqclip-shapes",
          pairs: dict | None = None, attack=None):
    """Train `clip` in place on `cache` (`clip_data.render_cache`); `pairs`: loop images with their prompts'
    scenes (`loop_negatives.read`), for `o.pair_weight`; `attack`: a `loop_attack.LoopAttack`, for
    `o.attack_weight`. With `o.eval_every`, saves to `out` and prints the held-out figures as it goes."""
    if o.eval_every and out is None:
        raise ValueError("eval_every saves checkpoints: give out")
    if "loop" in o.negatives and "loop" not in cache:
        raise ValueError("'loop' negatives need cache['loop'] (loop_negatives.read)")
    if o.pair_weight and pairs is None:
        raise ValueError("pair_weight needs pairs (loop_negatives.read)")
    if o.attack_weight and attack is None:
        raise ValueError("attack_weight needs an attack")
    torch.manual_seed(o.seed)
    gen, rng = torch.Generator().manual_seed(o.seed), random.Random(o.seed)
    model = clip.model.train().requires_grad_(True)
    if o.text_only:
        model.visual.requires_grad_(False)
        model.logit_scale.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=o.lr, weight_decay=0.05)
    images, tokens, hard, batch = cache["images"], cache["tokens"], cache["hard"], o.batch
    colour_ids = clip.tokenizer(list(COLOURS))[:, 1]  # each colour word is one token
    kinds = list(o.negatives)
    order, pos = torch.randperm(len(images), generator=gen), 0
    budget, step, next_eval = Budget(o.minutes, o.steps), 0, o.eval_every * 60
    while not budget.done(step):
        warm = min(1.0, (step + 1) / 30)
        for group in opt.param_groups:
            group["lr"] = o.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * budget.progress(step))))
        if pos + batch > len(order):
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos:pos + batch]
        pos += batch
        x = to_tensor(images[idx].numpy())
        if o.backgrounds:
            x = backdrops.new_backgrounds(x, o.backgrounds, gen)
        parts = [jitter(x, gen)]
        for j, kind in enumerate(kinds):
            k = o.n_neg // len(kinds) + (j < o.n_neg % len(kinds))
            if kind == "shuffle":
                parts.append(tile_shuffle(x[:k], gen, rng.choice([4, 8, 16])))
            else:
                parts.append(to_tensor(cache[kind][torch.randint(len(cache[kind]), (k,), generator=gen)].numpy()))
        # text negatives: `text_negatives` of the three altered captions of each scene, at random
        pick = torch.rand(batch, 3, generator=gen).argsort(1)[:, :o.text_negatives]
        txt_tokens = torch.cat([tokens[idx], hard[idx[:, None], pick].flatten(0, 1)])
        scale = model.logit_scale.exp().clamp(max=100)
        if o.adv_eps:
            with torch.no_grad():
                txt_fixed = encode_text(model, txt_tokens)
            moved = adversarial(clip, parts[0], txt_fixed, txt_tokens, batch, scale.detach(), o.adv_eps, o.adv_steps,
                                gen)
            parts = parts + [moved] if o.adv_clean else [moved] + parts[1:]
        img_emb = clip.encode_image(noised(torch.cat(parts), o.noise_sigma, gen))
        txt_emb = encode_text(model, txt_tokens)
        # with adv_clean, the clean positives and then the moved ones, each beside the same negatives
        views = [img_emb[:-batch], torch.cat([img_emb[-batch:], img_emb[batch:-batch]])] \
            if o.adv_eps and o.adv_clean else [img_emb]
        loss = 0
        for view in views:
            loss = loss + contrastive_loss(view, txt_emb, txt_tokens, batch, scale)
            if o.hard_weight and o.text_negatives:
                loss = loss + o.hard_weight * hard_negative_loss(view[:batch], txt_emb, batch, scale)
        loss = loss + extra_losses(clip, o, cache, idx, x, txt_emb, scale, gen, pairs, attack, colour_ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} {budget.elapsed():.0f}s {step / budget.elapsed():.2f} steps/s loss {loss.item():.3f} "
                  f"scale {model.logit_scale.exp().item():.1f}"
                  + (f" attacks that fooled the checker {attack.found}/{attack.tried}" if o.attack_weight else ""),
                  flush=True)
        if o.eval_every and budget.elapsed() > next_eval:
            next_eval += o.eval_every * 60
            save(clip, arch, out)
            print(f"step {step} {budget.elapsed():.0f}s held-out:", evaluate(clip, 200), flush=True)
            if pairs is not None:
                print(f"step {step} scene above loop image: {pair_preference(clip, pairs):.1%}", flush=True)
            if o.path_weight:
                print(f"step {step} way in from grey in order: {heldout_order(clip):.1%}", flush=True)
            model.train()
    print(f"trained {step} steps of {batch}+{o.n_neg} images, {batch}x{1 + o.text_negatives} captions "
          f"in {budget.elapsed():.0f}s", flush=True)
    return clip


def extra_losses(clip, o: TrainOptions, cache: dict, idx: torch.Tensor, x: torch.Tensor, txt_emb: torch.Tensor,
                 scale, gen: torch.Generator, pairs: dict | None, attack, colour_ids: torch.Tensor):
    """A step's losses beyond CLIP's own, each weighted by its option (0: skipped, drawing no random numbers):
    the step's scenes `x` (cache rows `idx`) and their captions' embeddings `txt_emb` ranked above what must
    score below them."""
    images, tokens = cache["images"], cache["tokens"]
    loss = 0
    if pairs is not None and o.pair_weight:  # each loop image's prompt ranks the prompt's scene above it
        j = torch.randint(len(pairs["images"]), (o.n_pair,), generator=gen)
        both = to_tensor(torch.cat([pairs["scenes"][j], pairs["images"][j]]).numpy())
        loss = loss + o.pair_weight * jittered_pair_loss(clip, both, pairs["tokens"][j], scale, gen)
    if o.contrast_weight:  # captions that name a colour rank their scene above its grey things
        named = torch.isin(tokens[idx], colour_ids).any(1).nonzero().squeeze(1)[:o.n_pair]
        if len(named):
            both = torch.cat([x[named], backdrops.greyed_things(x[named], gen)])
            loss = loss + o.contrast_weight * jittered_pair_loss(clip, both, tokens[idx][named], scale, gen)
    if o.mirror_weight:  # captions that place two things rank their scene above its mirror
        placed = idx[cache["mirror_ok"][idx]][:o.n_pair]
        scenes, mirrored, captions = images[placed], cache["mirror"][placed], tokens[placed]
        if o.mirror_parts:  # for each thing's own caption: the image tower learns where is which
            scenes, mirrored = scenes.repeat(2, 1, 1, 1), mirrored.repeat(2, 1, 1, 1)
            captions = cache["mirror_parts"][placed].transpose(0, 1).flatten(0, 1)
        if len(placed):
            both = to_tensor(torch.cat([scenes, mirrored]).numpy())
            loss = loss + o.mirror_weight * jittered_pair_loss(clip, both, captions, scale, gen)
    if o.path_weight:  # the first n_path scenes' way in from grey, each level jittered like a cutout
        views = jitter(path.path_views(x[:o.n_path], o.path_things).flatten(0, 1), gen)
        loss = loss + o.path_weight * path.path_loss(clip.encode_image(views), txt_emb[:o.n_path], scale)
    if o.tint_weight:  # the first n_path scenes' faint fade above the same fade with its colours turned round
        views = jitter(path.tint_views(x[:o.n_path]).flatten(0, 1), gen)
        loss = loss + o.tint_weight * path.tint_loss(clip.encode_image(views), txt_emb[:o.n_path], scale)
    found = attack(clip, lambda t: encode_text(clip.model, t), o.attack_n) if o.attack_weight else None
    if found is not None:
        scenes, attacked, captions = found
        loss = loss + o.attack_weight * jittered_pair_loss(clip, torch.cat([scenes, attacked]),
                                                           clip.tokenizer(captions), scale, gen)
    return loss


def used_token_ids(tokenizer) -> torch.Tensor:
    """Every token id the world's captions can produce (with start/end/padding)."""
    return tokenizer(sorted(VOCABULARY)).flatten().unique()


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
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--steps", type=int, help="train exactly this many steps (repeatable) instead of --minutes")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--negatives", default="shuffle,confetti,vqgan,blobs", help=f"comma-separated of {NEGATIVE_KINDS}, or none")
    parser.add_argument("--n-neg", type=int, default=16, help="negative images per step")
    parser.add_argument("--text-negatives", type=int, default=1, choices=(0, 1, 2, 3),
                        help="captions with one attribute changed, per scene and step")
    parser.add_argument("--hard-weight", type=float, default=1.0,
                        help="weight of the loss of each image against its own altered captions only")
    parser.add_argument("--vqgan", default="shapes", help="VQGAN (name or checkpoint) for the 'vqgan' negatives")
    parser.add_argument("--scenes", type=int, default=40000, help="training scenes in the cache")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    parser.add_argument("--data-seed", type=int, default=0, help="the training world's seed")
    parser.add_argument("--split", default="train", choices=("train", "all"),
                        help="the world's split to train on: 'all' (every colour/shape pair) only for the judge, "
                             "which scores held-out prompts and guides nothing")
    parser.add_argument("--recolour", type=float, default=0.0,
                        help="fraction of scenes redrawn off the palette and captioned without colour words")
    parser.add_argument("--swap-places", action="store_true",
                        help="a two-thing caption's position negative is the two things swapped ('a red star on the "
                             "right and a blue circle on the left'): teaches which thing is where")
    parser.add_argument("--mirror-weight", type=float, default=0.0,
                        help="weight of ranking each two-thing scene above its mirror (the things swapped) for its "
                             "caption, where the caption places them; --n-pair scenes a step")
    parser.add_argument("--mirror-parts", action="store_true",
                        help="--mirror-weight ranks for each thing's own caption ('a large red star on the left') "
                             "instead of the scene's")
    parser.add_argument("--text-only", action="store_true",
                        help="train the text tower alone (e.g. to teach a guide new wording without moving its image tower)")
    parser.add_argument("--relational", type=float, default=0.0,
                        help="fraction of two-thing scenes captioned in one another's terms ('a blue square above "
                             "a yellow triangle'); 0 leaves every caption as before")
    parser.add_argument("--init", help="fine-tune from this checkpoint")
    parser.add_argument("--loop-negatives", type=Path, nargs="+",
                        help="files of generator.shapes.loop_negatives: adds the 'loop' negatives")
    parser.add_argument("--pair-weight", type=float, default=0.0,
                        help="weight of the loss that ranks each loop image's prompt scene above the loop images "
                             "(needs loop negatives written with their prompts)")
    parser.add_argument("--n-pair", type=int, default=8,
                        help="loop images (and their scenes) per step for --pair-weight")
    parser.add_argument("--path-weight", type=float, default=0.0,
                        help="weight of the loss that ranks each scene's way in from flat grey in order (path.py)")
    parser.add_argument("--n-path", type=int, default=8, help="scenes per step for --path-weight and --tint-weight")
    parser.add_argument("--tint-weight", type=float, default=0.0,
                        help="weight of the loss that ranks each scene's faint fade from grey above the same fade "
                             "with its colours turned round through grey (path.tint_loss)")
    parser.add_argument("--path-things", action="store_true",
                        help="--path-weight fades in each scene's things on grey, not the whole scene")
    parser.add_argument("--backgrounds", type=float, default=0.0,
                        help="fraction of scenes whose background is repainted in a random colour far from their things")
    parser.add_argument("--contrast-weight", type=float, default=0.0,
                        help="weight of the loss that ranks --n-pair scenes above their things in grey, for captions "
                             "that name a colour (backdrops.py)")
    parser.add_argument("--attack-weight", type=float, default=0.0,
                        help="weight of the pairs the loop's own attack finds as the model trains (loop_attack)")
    parser.add_argument("--attack-n", type=int, default=4, help="scenes the loop attacks per step")
    parser.add_argument("--attack-steps", type=int, default=12, help="loop steps of each attack")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--noise-sigma", type=float, default=0.0,
                        help="add Gaussian noise of standard deviation up to this to every training image")
    parser.add_argument("--adv-eps", type=float, default=0.0,
                        help="train on adversarial positives within this L2 radius per 64x64 image (0: off)")
    parser.add_argument("--adv-steps", type=int, default=3, help="gradient steps of each adversarial search")
    parser.add_argument("--adv-clean", action="store_true",
                        help="train on the clean positives too, beside the adversarial ones (keeps clean accuracy)")
    parser.add_argument("--eval-every", type=float, default=10.0, help="minutes between checkpoints + evaluations")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and batch order")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-only", type=Path, help="measure this checkpoint of --arch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from generator.checkpoint import read_state_dict
    from generator.models import load_vqgan

    from .loop_attack import LoopAttack

    if args.eval_only:
        clip = build_clip(args.arch, read_state_dict(args.eval_only))
    else:
        negatives = () if args.negatives == "none" else tuple(args.negatives.split(","))
        if args.loop_negatives and "loop" not in negatives:
            negatives += ("loop",)
        if "loop" in negatives and not args.loop_negatives:
            parser.error("'loop' negatives need --loop-negatives FILE")
        try:
            options = TrainOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions)
                                      if f.name != "negatives"}, negatives=negatives)
        except ValueError as e:
            parser.error(str(e))
        state = {k: v.float() for k, v in read_state_dict(args.init).items()} if args.init else None
        clip = build_clip(args.arch, state, seed=args.seed)
        cache = load_cache(args.cache_dir, args.scenes, args.data_seed, clip.tokenizer,
                           args.vqgan if "vqgan" in negatives else None, args.split, args.recolour, args.relational,
                           args.swap_places, args.mirror_weight > 0)
        if "blobs" in negatives:
            add_blobs(cache, args.data_seed)
        pairs = None
        if args.loop_negatives:
            cache["loop"], pairs = loop_negatives.read(args.loop_negatives, clip.tokenizer)
        if args.pair_weight and pairs is None:
            parser.error("--pair-weight needs --loop-negatives files written with their prompts")
        if pairs is not None:
            print(f"{len(pairs['images'])} loop images with their prompts; scene above loop image: "
                  f"{pair_preference(clip, pairs):.1%}", flush=True)
        if args.path_weight:
            print(f"way in from grey in order: {heldout_order(clip):.1%}", flush=True)
        attack = LoopAttack(load_vqgan(args.vqgan)[0], args.attack_steps, seed=args.seed) if args.attack_weight else None
        train(clip, cache, options, args.out, args.arch, pairs=pairs, attack=attack)
        if pairs is not None:
            print(f"scene above loop image: {pair_preference(clip, pairs):.1%}", flush=True)
        if args.path_weight:
            print(f"way in from grey in order: {heldout_order(clip):.1%}", flush=True)
        if args.tint_weight:
            print(f"faint fade above the turned-round one: {heldout_order(clip, path.tint_order):.1%}", flush=True)
        print("saved", save(clip, args.arch, args.out), flush=True)
    print("held-out:", evaluate(clip), flush=True)
    print(f"held-out relation (caption above the one turned round): {relation_top1(clip):.1%}", flush=True)


if __name__ == "__main__":
    main()
