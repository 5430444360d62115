"""`vqclip generate` and `vqclip batch`: run the engine here, with a progress bar per prompt."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from generator.config import AUGMENTATIONS, COMPILE_MODES, OPTIMIZERS, PADDINGS, PRECISIONS, GenerationConfig

DEFAULTS = GenerationConfig()


def add_generation_options(p: argparse.ArgumentParser, local: bool = True) -> None:
    """The settings shared by generate, batch and submit (local=False: no --device, the worker picks it).
    Unset flags keep the config's values."""
    d, S = DEFAULTS, argparse.SUPPRESS
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), default=S,
                   help=f"image size in pixels, a multiple of the VQGAN's factor (default: {d.width} {d.height})")
    p.add_argument("--steps", type=int, default=S, help=f"optimisation steps (default: {d.steps})")
    p.add_argument("--seed", type=int, default=S, help=f"random seed (default: {d.seed})")
    p.add_argument("--starts", type=int, default=S,
                   help=f"run N starts side by side for the first --start-steps steps, then keep the one with the "
                        f"lowest loss: slower first steps, fewer runs stuck in a poor start (default: {d.starts})")
    p.add_argument("--start-steps", type=int, default=S,
                   help=f"steps the starts run before the best is kept (default: {d.start_steps})")
    p.add_argument("--cutn", type=int, default=S, help=f"cutouts per step (default: {d.cutn})")
    p.add_argument("--cut-pow", type=float, default=S, help=f"cutout size power (default: {d.cut_pow})")
    p.add_argument("--lr", type=float, default=S, help=f"learning rate (default: {d.lr})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=S, help=f"optimiser (default: {d.optimizer})")
    p.add_argument("--augment", nargs="*", choices=AUGMENTATIONS, default=S, dest="augmentations",
                   help=f"cutout augmentations (default: {' '.join(d.augmentations)})")
    p.add_argument("--augment-padding", choices=PADDINGS, default=S,
                   help=f"what rotated and shifted cutouts show past the image edge (default: {d.augment_padding})")
    p.add_argument("--augment-noise", type=float, default=S,
                   help=f"largest standard deviation of the 'Gn' noise on cutouts, pixels in [0, 1] (default: {d.augment_noise})")
    p.add_argument("--vqgan", default=S, metavar="NAME|FILE",
                   help=f"VQGAN: registry name, 'tiny' (test model) or a checkpoint file (default: {d.vqgan})")
    p.add_argument("--clip", default=S, metavar="NAME[:W][,...]",
                   help=f"CLIP model(s) with optional weights; 'tiny' is the test model (default: {d.clip})")
    p.add_argument("--init-image", default=S, metavar="FILE", help="start from this image (default: random codes)")
    p.add_argument("--init-colour", default=S, metavar="#RRGGBB", help="start from a flat image of this colour")
    p.add_argument("--init-weight", type=float, default=S, help=f"MSE pull to the initial image (default: {d.init_weight})")
    p.add_argument("--image-prompt", action="append", default=S, dest="image_prompts", metavar="FILE[:W]",
                   help="an image to steer towards, repeatable (default: none)")
    p.add_argument("--noise-prompt", action="append", default=S, dest="noise_prompts", metavar="SEED:W",
                   help="a random embedding to steer towards, repeatable (default: none)")
    p.add_argument("--tv-weight", type=float, default=S, help=f"smoothness loss weight (default: {d.tv_weight})")
    p.add_argument("--save-every", type=int, default=S, metavar="N",
                   help=f"keep a frame every N steps (default: {d.save_every}, none)")
    p.add_argument("--video", action="store_true", default=S, help="write a timelapse MP4 of the frames (default: off)")
    p.add_argument("--precision", choices=PRECISIONS, default=S,
                   help=f"model arithmetic: auto picks bf16/fp16 on a GPU, bf16 on a CPU with native bf16, "
                        f"else fp32; the loss is always fp32 (default: {d.precision})")
    p.add_argument("--checkpoint-decoder", action="store_true", default=S,
                   help="recompute the decoder's finest levels in the backward pass: less memory at large "
                        "sizes, slower steps (default: off)")
    p.add_argument("--compile", choices=COMPILE_MODES, default=S,
                   help="torch.compile the decoder, CLIP and cutouts (CUDA graphs on a GPU): auto does on a GPU "
                        "when the command runs at least 3000 steps in all (compiling takes 70-90 s once; then a "
                        "256x256 step takes 14 ms on an H100) and never on the CPU; a failed compile falls back "
                        f"to eager with a warning (default: {d.compile})")
    p.add_argument("--config", metavar="FILE", help="read settings from a JSON or TOML file; flags override it (default: none)")
    p.add_argument("--from-png", metavar="FILE",
                   help="re-run exactly the settings stored in a vqclip PNG; flags override them (default: none)")
    p.add_argument("--out", default="outputs", metavar="DIR", help="output folder (default: outputs)")
    if local:
        p.add_argument("--device", default="auto", help="auto, cpu or cuda:N (default: auto)")


def config_from_args(args: argparse.Namespace, prompt: str | None) -> GenerationConfig:
    """Defaults < the VQGAN's recommended settings < --config < --from-png < explicit flags < the prompt."""
    from generator.output import read_png_config
    from generator.weights import recommended_settings

    data: dict = {}
    if args.config:
        data.update(GenerationConfig.from_file(args.config).to_dict())
    if args.from_png:
        data.update(read_png_config(args.from_png).to_dict())
    fields = set(DEFAULTS.to_dict())
    for key, value in vars(args).items():
        if key in fields:
            data[key] = value
    if "size" in vars(args):
        data["width"], data["height"] = args.size
    if prompt is not None:
        data["prompts"] = prompt
    recommended = {k: v for k, v in recommended_settings(data.get("vqgan", DEFAULTS.vqgan)).items() if k not in data}
    if recommended:
        shown = ", ".join(f"{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in recommended.items())
        _note_once(f"vqgan {data['vqgan']!r}: its recommended settings apply where not given: {shown}")
        data = {**recommended, **data}
    if data.get("video") and not data.get("save_every"):
        data["save_every"] = max(1, data.get("steps", DEFAULTS.steps) // 100)
    return GenerationConfig.from_dict(data)


def advise(config: GenerationConfig) -> GenerationConfig:
    """Note on stderr (once per text) when the Shapes demo is asked for words or things it was not taught:
    called where a job runs or is queued."""
    from generator.shapes.advice import prompt_advice

    advice = prompt_advice(config.prompts, config.vqgan)
    if advice:
        _note_once(advice)
    return config


_NOTED: set[str] = set()


def _note_once(text: str) -> None:
    """A note on stderr, once per process (a batch builds one config per prompt)."""
    if text not in _NOTED:
        _NOTED.add(text)
        print(text, file=sys.stderr)


def check_out_dir(folder: str) -> Path:
    """Create the output folder and prove it writable before any work starts."""
    from generator.errors import ConfigError

    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"output folder {folder!r} is not writable: {exc.strerror}") from None
    return path


def run_one(config: GenerationConfig, out: Path, models, device: str, label: str = "",
            expected_steps: int | None = None) -> Path:
    """Run one generation with a progress bar; write the PNG (and frames, video) only when it completes.
    `expected_steps`: the steps this command runs in all (compile="auto" weighs them; default: this one's)."""
    from tqdm import tqdm

    from generator import Generation

    gen = Generation(advise(config), device=device, models=models, expected_steps=expected_steps)
    with tqdm(total=config.steps, desc=label or "generating", unit="step", file=sys.stderr,
              dynamic_ncols=True, leave=True) as bar:
        for step in gen:
            bar.set_postfix(loss=f"{step.loss:.4f}", refresh=False)
            bar.update(1)
    return save_outputs(gen, out)


def run_together(configs: list[GenerationConfig], out: Path, models, device: str, label: str = "",
                 expected_steps: int | None = None) -> list[Path]:
    """Run generations as one batch (`generator.batch`: same models, size and cutouts), one progress bar
    over all their steps; write each one's PNG (and frames, video) once all are done."""
    from tqdm import tqdm

    from generator import Generation
    from generator.batch import GenerationBatch

    gens = [Generation(advise(config), device=device, models=models, expected_steps=expected_steps)
            for config in configs]
    batch = GenerationBatch(gens)
    with tqdm(total=sum(c.steps for c in configs), desc=label or "generating", unit="step", file=sys.stderr,
              dynamic_ncols=True, leave=True) as bar:
        while batch:
            bar.update(len(batch.step()))
    return [save_outputs(gen, out) for gen in gens]


def save_outputs(gen, out: Path) -> Path:
    """Write a finished generation's PNG, and its frames and video when it has them; the PNG's path."""
    from generator.output import output_name, save_frames, save_png, save_video

    stem = output_name(gen.config)
    path = save_png(gen, out / f"{stem}.png")
    if gen.frames:
        save_frames(gen.frames, out / f"{stem}_frames")
    if gen.config.video:
        save_video(gen.frames, out / f"{stem}.mp4")
    return path


def cmd_generate(args: argparse.Namespace) -> int:
    from app.cli_logo import plan, run_sheet
    from generator import ModelCache

    prompt = args.prompt
    if prompt is None and args.prompt_set:  # the prompt set gives the prompts; validate with the first
        from app.cli_logo import parse_prompt_set

        prompt = parse_prompt_set(args.prompt_set)[0]
    config = config_from_args(args, prompt)
    out = check_out_dir(args.out)
    if args.variations is not None or args.seeds or args.prompt_set or args.batch is not None:
        prompts, seeds = plan(args, config)  # checks the options before anything runs
        if len(prompts) * len(seeds) > 1:
            return run_sheet(args, config, out, prompts, seeds)
        config = config.replace(prompts=prompts[0], seed=seeds[0])
    path = run_one(config, out, ModelCache(args.device), args.device)
    print(path)
    return 0


def read_prompt_file(path: str) -> list[tuple[int, str]]:
    """(line number, prompt) for each line that is not blank or a `#` comment."""
    from generator.errors import ConfigError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read prompt file {path!r}: {exc}") from None
    prompts = [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"prompt file {path!r} has no prompts")
    return prompts


def cmd_batch(args: argparse.Namespace) -> int:
    from generator import ModelCache, VqclipError
    from generator.output import output_name

    if args.db is not None:
        from app.cli_jobs import submit_batch

        return submit_batch(args)
    prompts = read_prompt_file(args.prompt_file)
    base = config_from_args(args, None) if (args.config or args.from_png) else None
    out = check_out_dir(args.out)
    models = ModelCache(args.device)
    done, skipped, failed = 0, 0, []
    for i, (line_no, prompt) in enumerate(prompts, 1):
        where = f"{args.prompt_file}:{line_no}"
        try:
            config = config_from_args(args, prompt) if base is None else base.replace(prompts=prompt)
            target = out / f"{output_name(config)}.png"
            if target.exists():
                print(f"{where}: already done, {target}", file=sys.stderr)
                skipped += 1
                continue
            path = run_one(config, out, models, args.device, label=f"[{i}/{len(prompts)}]",
                           expected_steps=config.steps * len(prompts))
            print(path)
            done += 1
        except VqclipError as exc:
            print(f"vqclip: {where}: {exc}", file=sys.stderr)
            failed.append(where)
    print(f"batch: {done} made, {skipped} already done, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("generate", help="make one image from a prompt", formatter_class=fmt,
                       description="Make one image from a text prompt: 'text[:weight[:stop]] | ...'.")
    p.add_argument("prompt", nargs="?", help="text prompt, e.g. 'a red circle:1 | blurry:-0.5'")
    add_generation_options(p)
    from app.cli_logo import add_variation_options

    add_variation_options(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("batch", help="make one image per line of a prompt file", formatter_class=fmt,
                       description="One prompt per line; '#' comments and blank lines are skipped. "
                                   "Prompts already made (same settings) are skipped on a rerun.")
    p.add_argument("prompt_file", metavar="PROMPTS.txt", help="file of prompts")
    add_generation_options(p)
    p.add_argument("--db", metavar="URL", default=None,
                   help="submit the prompts to this job queue (sqlite:///path or postgresql://...) "
                        "instead of running them here (default: run here)")
    p.add_argument("--priority", type=int, default=0, help="with --db: priority of the jobs (default: 0)")
    p.set_defaults(func=cmd_batch)
