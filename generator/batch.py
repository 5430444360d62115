"""Several generations stepped together: one decode and one CLIP pass per step for all of them.

    batch = GenerationBatch([Generation(a, models=cache), Generation(b, models=cache)])
    while batch:
        for gen, step in batch.step().items():   # one StepRecord per member that stepped
            print(gen.config.prompts, step.index, step.loss)

Members must share what the batched passes share: the VQGAN, the CLIP models, the image size, the number
of cutouts, the precision and the device (`batch_key`). Everything else stays each member's own: prompts,
seed and random stream, optimiser and its state, learning rate, step count, regularisers and frames. Each
member draws its cutouts from its own image with its own generator, so its random stream is exactly the
one it would draw alone; the members' gradients are independent (each latent reaches only its own
losses), so one backward pass over the sum of their losses gives each the gradient it would get alone.
Results match running alone up to floating-point rounding, which differs with the batch size (measured
in tests/generator/test_batch.py). Members may join and leave between steps; a member that has run all
its steps or was cancelled leaves at the top of the next step.
"""
from __future__ import annotations

from typing import Iterable

import torch

from . import acceleration, memory
from .clip import parse_clip_specs
from .config import GenerationConfig
from .engine import Generation, StepRecord
from .errors import ConfigError
from .weights import clip_record_names

BATCH_FIELDS = ("vqgan", "clip", "width", "height", "cutn", "precision", "checkpoint_decoder", "compile")


def batch_key(config: GenerationConfig) -> tuple:
    """What configs must share to run in one batch: same models, size, cutouts and precision.

    CLIP weights are left out (each member weighs its own losses); only the models and their order count,
    with a VQGAN's name for its CLIPs expanded (`--clip shapes` batches with `--clip shapes-clip,shapes-robust`).
    """
    return tuple(_key_value(config, name) for name in BATCH_FIELDS)


def _key_value(config: GenerationConfig, name: str):
    if name == "clip":
        return tuple(name for spec in parse_clip_specs(config.clip) for name in clip_record_names(spec.name))
    return getattr(config, name)


class GenerationBatch:
    """Generations that step together; see the module docstring.

    Args:
        members: the first members; more join with `add`, any leave with `remove`.
    """

    def __init__(self, members: Iterable[Generation] = ()):
        self.members: list[Generation] = []
        for gen in members:
            self.add(gen)

    def __len__(self) -> int:
        return len(self.members)

    def add(self, gen: Generation) -> None:
        """Join the batch (between steps); ConfigError when `gen` cannot share this batch's passes."""
        if any(gen is m for m in self.members):
            raise ConfigError("this generation is already in the batch")
        if self.members:
            why = incompatibility(self.members[0], gen)
            if why:
                raise ConfigError(f"cannot batch these generations: {why}")
            if not self.has_room():
                need = memory.estimate_memory(gen.config, gen.vqgan, gen.clips, gen.precision)
                raise ConfigError(
                    f"a batch of {len(self) + 1} needs about {(len(self) + 1) * need / memory.GIB:.1f} GiB; the "
                    f"device has {memory.free_memory(gen.device) / memory.GIB:.1f} GiB free")
        self.members.append(gen)

    def has_room(self) -> bool:
        """Whether one more member's step fits in the device's free memory (between steps, when only the
        models and latents are held): every member's step needs the same estimated memory."""
        if not self.members:
            return True
        first = self.members[0]
        return len(self) + 1 <= batch_capacity(first.config, first.vqgan, first.clips, first.device, first.precision)

    def remove(self, gen: Generation) -> None:
        """Leave the batch (between steps); the others go on as before."""
        self.members = [m for m in self.members if m is not gen]

    def step(self) -> dict[Generation, StepRecord]:
        """Drop the members that are finished or cancelled, then run one step of every other member."""
        self.members = [m for m in self.members if m.step_index < m.config.steps and not m.cancelled]
        if len(self.members) <= 1:
            return {gen: gen.step() for gen in self.members}  # alone: exactly the engine's own step
        members = self.members
        if not any(gen._first_compiled_step for gen in members):
            return self._step(members)
        # The step that compiles (as in Generation.step): a failed compile is redone eagerly, exactly.
        states = [gen._rng.get_state() for gen in members]
        try:
            records = self._step(members)
        except BaseException as exc:
            if not acceleration.is_fallback_error(exc):
                raise
            acceleration.warn_fallback(exc)
            for gen, state in zip(members, states):
                gen._use_eager()
                gen._rng.set_state(state)
                gen.optimizer.zero_grad(set_to_none=True)
            records = self._step(members)
        for gen in members:
            gen._first_compiled_step = False
        return records

    @staticmethod
    def _step(members: list[Generation]) -> dict[Generation, StepRecord]:
        first = members[0]
        indices = [gen.step_index + 1 for gen in members]
        acceleration.mark_step_begin(first.compiled, first.device)
        # 1-2. One decode of every member's latent (a member still running several starts has several).
        images = first._decode(torch.cat([gen.z for gen in members])).split([gen.z.shape[0] for gen in members])
        # 3. Each member's cutouts of its own image, from its own random stream.
        cutouts = [gen._cutouts(image) for gen, image in zip(members, images)]
        # 4. One forward pass of each CLIP model over every member's cutouts.
        embeds: list[list[torch.Tensor]] = [[] for _ in members]
        for j, loss in enumerate(first.losses):
            sizes = [c[j].shape[0] for c in cutouts]
            for mine, part in zip(embeds, loss.embed(torch.cat([c[j] for c in cutouts])).split(sizes)):
                mine.append(part)
        # 5. Each member's losses against its own prompts.
        terms = [gen._terms(i, image, e) for gen, i, image, e in zip(members, indices, images, embeds)]
        totals = [torch.stack(list(t.values())).sum() for t in terms]
        # 6-7. One backward pass (each latent gets only its own gradient); each member's own update.
        for gen in members:
            gen.optimizer.zero_grad(set_to_none=True)
        torch.stack(totals).sum().backward()
        return {gen: gen._update(i, total, t) for gen, i, total, t in zip(members, indices, totals, terms)}

    def run(self) -> None:
        """Step until every member has finished or been cancelled."""
        while self.step():
            pass


def batch_capacity(config: GenerationConfig, vqgan, clips, device: torch.device, precision: str) -> int:
    """How many steps of `config` fit side by side in the device's free memory (the estimate that refuses
    single jobs too big for the device); at least 1, and unlimited (a large number) when the free memory
    cannot be read."""
    free, need = memory.free_memory(device), memory.estimate_memory(config, vqgan, clips, precision)
    if free is None or need <= 0:
        return 1 << 16
    return max(1, int(free // need))


def incompatibility(a: Generation, b: Generation) -> str:
    """Why `b` cannot share a batch with `a`, or "" when it can."""
    for name, mine, theirs in zip(BATCH_FIELDS, batch_key(a.config), batch_key(b.config)):
        if mine != theirs:
            return f"{name} {theirs!r} differs from the batch's {mine!r}"
    if a.device != b.device:
        return f"device {b.device} differs from the batch's {a.device}"
    if b.vqgan is not a.vqgan or any(x is not y for (x, _), (y, _) in zip(a.clips, b.clips)):
        return "the models were loaded separately; build both generations with the same ModelCache"
    return ""
