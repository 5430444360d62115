"""The VQGAN+CLIP loop: one iterator that every front end drives.

    gen = Generation(config, device="cpu")
    for step in gen:            # one StepRecord per optimisation step
        print(step.index, step.loss)
    gen.image().save("out.png")

Each step: 1. quantise the latent (straight-through); 2. decode; 3. cut out and augment; 4. embed with
each CLIP model; 5. sum the prompt losses; 6. one optimiser step; 7. clamp the latent to the codebook's
range. `cancel()` (from any thread) ends the iteration at the top of the next step.

With `starts` > 1 the latent holds that many starts for the first `start_steps` steps. Each start draws its
own cutouts and gets only its own gradient (Adam and the other optimisers work element by element), so it
moves as it would alone. After the last of those steps the start with the lowest mean loss over their
second half is kept, with its optimiser state, and the run goes on with it alone. Until then a step's
record, loss and image are the leading start's. (With `compile`, each of the two latent shapes compiles once.)
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from PIL import Image

from . import acceleration, decoder
from .config import GenerationConfig
from .cutouts import MakeCutouts
from .errors import ConfigError
from .losses import ClipLoss, build_prompts
from .memory import check_memory
from .models import ModelCache, resolve_device
from .precision import autocast, resolve_precision
from .vqgan import vector_quantize

_OPTIMIZERS = {
    "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "adagrad": torch.optim.Adagrad,
    "adamax": torch.optim.Adamax, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD,
}


@dataclass
class StepRecord:
    """One step's index and losses; the losses are read from the device only when asked for."""

    index: int  # 1-based step number
    total: int  # steps in the run
    _values: torch.Tensor = field(repr=False, default=None)  # [total loss, each term], detached
    _labels: tuple[str, ...] = field(repr=False, default=())
    _image: Callable[[], Image.Image] = field(repr=False, default=None)

    @cached_property
    def _floats(self) -> list[float]:
        return self._values.tolist()  # the one host sync of a step, and only when reported

    @property
    def loss(self) -> float:
        """Total loss of this step."""
        return self._floats[0]

    @property
    def losses(self) -> dict[str, float]:
        """Loss per prompt (and regulariser), by label."""
        return dict(zip(self._labels, self._floats[1:]))

    def image(self) -> Image.Image:
        """The image as it stood after this step (decoded on first call)."""
        return self._image()


class Generation:
    """One VQGAN+CLIP run of `config`; iterate it to optimise, then `image()` for the result."""

    def __init__(self, config: GenerationConfig, device: str = "auto", models: ModelCache | None = None,
                 expected_steps: float | None = None):
        """`expected_steps`: the steps this process expects to run at this run's shapes, which
        ``compile="auto"`` weighs the compile time against (default: this run's own steps; a worker that
        runs job after job passes infinity)."""
        config.validate()
        self.config = config
        self.device = resolve_device(device)
        self.models = models or ModelCache(self.device)
        self.vqgan = self.models.vqgan(config.vqgan)
        self.clips = self.models.clips(config.clip)
        self.precision = resolve_precision(config.precision, self.device)
        check_memory(config, self.vqgan, self.clips, self.device, self.precision)
        self._fast_decoder = decoder.supported(self.vqgan.decoder)
        acceleration.configure(self.device)
        self._channels_last = acceleration.channels_last(self.device)
        if self._channels_last:
            self.vqgan.to(memory_format=torch.channels_last)
        self.compiled = acceleration.resolve_compile(config.compile, self.device, expected_steps or config.steps)
        self._first_compiled_step = self.compiled  # the step that compiles, run with a fallback to eager
        self._decode_models = (acceleration.compiled(self._decode_eager, self.device) if self.compiled
                               else self._decode_eager)
        factor = self.vqgan.config.factor
        if config.width % factor or config.height % factor:
            raise ConfigError(
                f"size {config.width}x{config.height} is not a multiple of {factor}, the VQGAN's factor; "
                f"try {_round(config.width, factor)}x{_round(config.height, factor)}"
            )
        self._loss_history: list[torch.Tensor] = []  # each finished step's total loss, on the device
        self.frames: list[Image.Image] = []
        self._cancel = threading.Event()
        self._rng = torch.Generator().manual_seed(config.seed)

        codebook = self.vqgan.codebook.detach()
        self._codebook = codebook
        self._codebook_sqnorm = codebook.pow(2).sum(1)
        self._z_min = codebook.min(0).values.view(1, -1, 1, 1)
        self._z_max = codebook.max(0).values.view(1, -1, 1, 1)
        self.z = self._initial_latent().requires_grad_(True)  # [starts, C, h, w] until the best start is kept
        self._z_init = self.z.detach().clone()
        self._lead = 0  # the start whose image and loss the steps report
        self.kept_start: int | None = None  # which start was kept, once it is
        self._start_scores = torch.zeros(config.starts, device=self.device)
        self.optimizer = self._new_optimizer()
        several = len(self.clips) > 1
        self.losses = [
            ClipLoss(clip, weight, build_prompts(config, clip, self._encode_image_prompt_fn(clip)),
                     self._make_cutouts(clip),
                     label_prefix=f"{clip.name}: " if several else "", autocast=self._autocast,
                     encode=acceleration.compiled(clip.encode_image, self.device) if self.compiled else None)
            for clip, weight in self.clips
        ]
        if self.compiled:  # the cutouts' pooling and augmentations too (run on the GPU path only)
            for loss in self.losses:
                loss.cutouts.transform = acceleration.compiled(loss.cutouts.device_transform, self.device)
        # With compile scope "step": a one-start step's stages 1-4 as one compiled function (one forward and
        # one backward graph); batches and several starts use the compiled parts above.
        self._fused = (acceleration.compiled(self._guide_forward, self.device)
                       if self.compiled and acceleration.SCOPE == "step" else None)
        self._fused_ran = False  # whether a step has run (and so compiled) it

    # ---- set-up ----------------------------------------------------------------------------------
    def _initial_latent(self) -> torch.Tensor:
        cfg, factor = self.config, self.vqgan.config.factor
        h, w, n = cfg.height // factor, cfg.width // factor, cfg.starts
        if cfg.init_image or cfg.init_colour:
            if cfg.init_image:
                image = load_image(cfg.init_image, cfg.width, cfg.height).to(self.device)
            else:
                rgb = torch.tensor([int(cfg.init_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)], device=self.device)
                image = rgb.view(1, 3, 1, 1).expand(1, 3, cfg.height, cfg.width).contiguous()
            with torch.no_grad():
                return self.vqgan.encode(image * 2 - 1).repeat(n, 1, 1, 1)  # the starts part by their cutouts
        tokens = torch.randint(self._codebook.shape[0], (n * h * w,), generator=self._rng).to(self.device)
        return self._codebook[tokens].view(n, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def _make_cutouts(self, clip) -> MakeCutouts:
        """Cutouts for `clip` as the config asks: the loop's and the image prompts' are made alike."""
        cfg = self.config
        return MakeCutouts(clip.input_size, cfg.cutn, cfg.cut_pow, cfg.augmentations,
                           noise=cfg.augment_noise, padding=cfg.augment_padding)

    def _encode_image_prompt_fn(self, clip):
        cfg = self.config
        cutouts = self._make_cutouts(clip)

        def encode(path: str) -> torch.Tensor:
            image = load_image(path, cfg.width, cfg.height).to(self.device)
            with torch.no_grad():
                return clip.encode_image(cutouts(image, self._rng))

        return encode

    # ---- the loop --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the loop to stop before its next step (thread-safe)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def step_index(self) -> int:
        """Steps finished so far."""
        return len(self._loss_history)

    @property
    def start_scores(self) -> list[float]:
        """Each start's summed loss over the scored start steps (see the module docstring); the lowest is
        kept. Empty for a run of one start."""
        return self._start_scores.tolist() if self.config.starts > 1 else []

    @property
    def loss_history(self) -> list[float]:
        """Total loss of every finished step, in order (step i at position i - 1)."""
        return torch.stack(self._loss_history).tolist() if self._loss_history else []

    def __iter__(self) -> Iterator[StepRecord]:
        cfg = self.config
        while self.step_index < cfg.steps and not self._cancel.is_set():
            yield self.step()

    def step(self) -> StepRecord:
        """Run one optimisation step and return its record (see `_step`)."""
        # A step that compiles runs with a fallback: the first compiled step, and (with several starts) the
        # first step of the one-start function, after the starts ran on the compiled parts.
        if not (self._first_compiled_step or (self._runs_fused and not self._fused_ran)):
            return self._step()
        rng_state = self._rng.get_state()
        try:
            record = self._step()
        except BaseException as exc:
            if not acceleration.is_fallback_error(exc):
                raise
            acceleration.warn_fallback(exc)
            self._use_eager()
            self._rng.set_state(rng_state)  # redo the step exactly as an eager run would have made it
            self.optimizer.zero_grad(set_to_none=True)
            record = self._step()
        self._first_compiled_step = False
        return record

    @property
    def _runs_fused(self) -> bool:
        """Whether the next step runs stages 1-4 as the one compiled function (scope "step", one start)."""
        return self._fused is not None and self.z.shape[0] == 1

    def _use_eager(self) -> None:
        self.compiled = False
        self._fused = None
        self._decode_models = self._decode_eager
        for loss in self.losses:
            loss.encode = loss.clip.encode_image
            loss.cutouts.transform = loss.cutouts.device_transform

    def _step(self) -> StepRecord:
        """Run one optimisation step and return its record.

        `step_index` advances only once the step is complete, so an interrupted step is simply redone. It
        and `loss_history` move together in one list append, so an interrupt cannot leave them apart.
        `generator.batch` runs the same stages for several generations at once.
        """
        index = self.step_index + 1
        acceleration.mark_step_begin(self.compiled, self.device)
        if self._runs_fused:
            # 1-4 as one compiled function of the latent and the step's cutout draws.
            cfg = self.config
            draws = [loss.cutouts.draw((1, 3, cfg.height, cfg.width), self._rng, self.device) for loss in self.losses]
            image, embeds = self._fused(self.z, draws)
            self._fused_ran = True
        else:
            # 1-2. Quantise with a straight-through gradient, decode, clamp to [0, 1] keeping the gradient.
            image = self._decode(self.z)
            # 3-4. Each CLIP model embeds its own cutouts.
            embeds = [loss.embed(cutouts) for loss, cutouts in zip(self.losses, self._cutouts(image))]
        # 5. Each CLIP model's cutouts against its prompts, and the regularisers.
        terms = self._terms(index, image, embeds)
        total = torch.stack(list(terms.values())).sum()
        # 6-7. Optimiser step, then keep the latent inside the codebook's range.
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        return self._update(index, total, terms)

    def _cutouts(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Stage 3: one batch of cutouts per CLIP model, drawn from this run's random stream (with several
        starts, each start's cutouts in turn)."""
        if image.shape[0] == 1:
            return [loss.cutouts(image, self._rng) for loss in self.losses]
        return [torch.cat([loss.cutouts(one, self._rng) for one in image.split(1)]) for loss in self.losses]

    def _terms(self, index: int, image: torch.Tensor, embeds: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Stage 5: the loss terms of step `index`, from the cutout embeddings of each CLIP model; with
        several starts each term is a vector of one value per start."""
        n = image.shape[0]
        if n == 1:
            return self._start_terms(index, image, embeds, self.z, self._z_init)
        chunks = [embed.chunk(n) for embed in embeds]
        per_start = [self._start_terms(index, image[i:i + 1], [c[i] for c in chunks], self.z[i:i + 1],
                                       self._z_init[i:i + 1]) for i in range(n)]
        return {label: torch.stack([terms[label] for terms in per_start]) for label in per_start[0]}

    def _start_terms(self, index: int, image, embeds, z, z_init) -> dict[str, torch.Tensor]:
        cfg = self.config
        terms: dict[str, torch.Tensor] = {}
        for loss, embed in zip(self.losses, embeds):
            for label, value in loss.terms(embed):
                terms[label] = terms[label] + value if label in terms else value
        if cfg.init_weight:
            terms["init image"] = F.mse_loss(z, z_init) * self._init_weight(index) / 2
        if cfg.tv_weight:
            terms["smoothness"] = cfg.tv_weight * _total_variation(image)
        return terms

    def _guide_forward(self, z: torch.Tensor, draws: list[tuple]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Stages 1-4 of a one-start step on the eager models, from the latent and each CLIP's cutout draws
        (`MakeCutouts.draw`): the image and each CLIP's cutout embeddings. This is what compile scope "step"
        compiles as one function. The loss terms stay outside it, so that nothing of a job's own (prompts,
        weights, regularisers) is traced in: one compiled function serves every job of a worker, where a
        prompt traced in would recompile it for each new prompt, and past dynamo's limit run it eagerly."""
        image = self._decode(z, self._decode_eager)
        embeds = [loss.embed(loss.cutouts.device_transform(image, *d), loss.clip.encode_image)
                  for loss, d in zip(self.losses, draws)]
        return image, embeds

    def _update(self, index: int, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> StepRecord:
        """Stages 6-7 once the gradient is in `z.grad`: optimiser step, clamp, and the step's record."""
        cfg = self.config
        self.optimizer.step()
        with torch.no_grad():
            self.z.copy_(torch.maximum(torch.minimum(self.z, self._z_max), self._z_min))
        if self.z.shape[0] > 1:
            total, terms = self._follow_starts(index, terms)
        self._loss_history.append(total.detach())  # this append is what marks the step as finished
        if cfg.save_every and index % cfg.save_every == 0:
            self.frames.append(self.image())
        snapshot = self._lead_latent().clone()
        values = torch.stack([total.detach(), *(v.detach() for v in terms.values())])
        return StepRecord(index=index, total=cfg.steps, _values=values, _labels=tuple(terms),
                          _image=_once(lambda: self._to_pil(snapshot)))

    def _follow_starts(self, index: int, terms: dict[str, torch.Tensor]):
        """With several starts: score them, pick the leader, and after the last start step keep it alone.
        Returns the leader's total and terms, for the step's record."""
        cfg = self.config
        per_start = torch.stack(list(terms.values())).detach()  # [terms, starts]
        totals = per_start.sum(0)
        last = min(cfg.start_steps, cfg.steps)
        scored = index > last - (last + 1) // 2  # the second half of the start steps (at least the last one)
        if scored:
            self._start_scores += totals
        self._lead = lead = int((self._start_scores if scored else totals).argmin())
        if index >= last:
            self.kept_start = lead
            self._keep_start(lead)
        return totals[lead], {label: value[lead] for label, value in terms.items()}

    def _keep_start(self, i: int) -> None:
        """Go on with start `i` alone: its latent, its initial latent and its optimiser state."""
        old = self.z
        self.z = old.detach()[i:i + 1].clone().requires_grad_(True)
        self._z_init = self._z_init[i:i + 1]
        state = {key: value[i:i + 1].clone() if torch.is_tensor(value) and value.shape == old.shape else value
                 for key, value in self.optimizer.state[old].items()}
        self.optimizer = self._new_optimizer()
        self.optimizer.state[self.z] = state
        self._lead = 0

    def _new_optimizer(self) -> torch.optim.Optimizer:
        """The configured optimiser over the latent; on CUDA, Adam and AdamW in their fused form (one kernel
        for the update instead of a dozen launched from the host; the same update up to float rounding)."""
        cfg, extra = self.config, {}
        if self.device.type == "cuda" and cfg.optimizer in ("adam", "adamw"):
            extra["fused"] = True
        return _OPTIMIZERS[cfg.optimizer]([self.z], lr=cfg.lr, **extra)

    def _lead_latent(self) -> torch.Tensor:
        return self.z.detach()[self._lead:self._lead + 1]

    def _init_weight(self, index: int) -> float:
        cfg = self.config
        if not cfg.init_weight_decay_steps:
            return cfg.init_weight
        return cfg.init_weight * max(0.0, 1 - (index - 1) / cfg.init_weight_decay_steps)

    def _autocast(self):
        return autocast(self.precision, self.device)

    def _decode(self, z: torch.Tensor, models: Callable | None = None) -> torch.Tensor:
        z_q = vector_quantize(z, self._codebook, self._codebook_sqnorm)
        if self._channels_last:
            z_q = z_q.contiguous(memory_format=torch.channels_last)
        if models is None:  # (an explicit test: dynamo cannot trace the truth of a function before torch 2.14)
            models = self._decode_models
        with self._autocast():
            out = models(z_q)
        return _clamp_with_grad(out.float().add(1).div(2), 0, 1)

    def _decode_eager(self, z_q: torch.Tensor) -> torch.Tensor:
        if self._fast_decoder:
            h = self.vqgan.post_quant_conv(z_q)
            return decoder.decode(self.vqgan.decoder, h, checkpoint=self.config.checkpoint_decoder)
        return self.vqgan.decode(z_q)

    def image(self) -> Image.Image:
        """The current image, decoded from the current latent (the leading start's)."""
        return self._to_pil(self._lead_latent())

    @torch.no_grad()
    def _to_pil(self, z: torch.Tensor) -> Image.Image:
        pixels = self._decode(z)[0].clamp(0, 1).mul(255).round().byte()
        return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())

    def run(self) -> Image.Image:
        """Iterate to the end and return the final image."""
        for _ in self:
            pass
        return self.image()


class _ClampWithGrad(torch.autograd.Function):
    """Clamp in the forward pass; in the backward pass let through gradients that point back inside."""

    @staticmethod
    def forward(ctx, x, low, high):
        ctx.low, ctx.high = low, high
        ctx.save_for_backward(x)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        outside = ((x < ctx.low) & (grad > 0)) | ((x > ctx.high) & (grad < 0))
        return grad.masked_fill(outside, 0), None, None


def _clamp_with_grad(x, low, high):
    return _ClampWithGrad.apply(x, low, high)


def _total_variation(image: torch.Tensor) -> torch.Tensor:
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean()
    return dx + dy


def _once(fn):
    cache = []

    def wrapper():
        if not cache:
            cache.append(fn())
        return cache[0]

    return wrapper


def _round(value: int, factor: int) -> int:
    return max(factor, round(value / factor) * factor)


def load_image(path: str, width: int, height: int) -> torch.Tensor:
    """An RGB image file resized (Lanczos) to width x height, as [1, 3, H, W] in [0, 1]."""
    import numpy as np

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((width, height), Image.LANCZOS)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read image {path!r}: {exc}") from None
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255).unsqueeze(0)
