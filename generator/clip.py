"""CLIP models through open_clip: any open_clip architecture, one model or a weighted ensemble.

A CLIP spec is ``NAME[:weight]``; several are joined by commas (``"ViT-B-32/openai,RN50/openai:0.5"``).
NAME is a registry entry (``ARCH/TAG``), ``tiny`` (the seeded test model), or ``ARCH=FILE`` for a local
open_clip checkpoint of that architecture.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .errors import ConfigError, WeightsError
from .vit import fast_image_encoder

CONFIG_DIR = Path(__file__).parent / "configs" / "open_clip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ClipSpec:
    name: str  # as the user wrote it, without the weight
    weight: float = 1.0

    @property
    def local_file(self) -> tuple[str, str] | None:
        """(arch, path) for an ``ARCH=FILE`` spec."""
        if "=" in self.name:
            arch, path = self.name.split("=", 1)
            return arch.strip(), path.strip()
        return None


def parse_clip_specs(text: str) -> list[ClipSpec]:
    """Parse ``"NAME[:weight],NAME[:weight]"``; raises ConfigError naming the bad part."""
    specs = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(.+?)(?::([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?))?", part)
        if not part or not match:
            raise ConfigError(f"clip spec {part!r}: expected NAME[:weight] (specs are separated by commas)")
        name, weight = match.group(1).strip(), float(match.group(2) or 1.0)
        if weight <= 0:
            raise ConfigError(f"clip spec {part!r}: weight must be positive")
        spec = ClipSpec(name, weight)
        if spec.local_file and not Path(spec.local_file[1]).is_file():
            raise ConfigError(f"clip spec {part!r}: no such file {spec.local_file[1]!r}")
        specs.append(spec)
    return specs


class ClipModel:
    """An open_clip model with its tokenizer and input normalisation; frozen, for guidance."""

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, sha256: str):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.sha256 = sha256
        size = model.visual.image_size
        self.input_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        mean = getattr(model.visual, "image_mean", None) or OPENAI_MEAN
        std = getattr(model.visual, "image_std", None) or OPENAI_STD
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self._fast_encode = fast_image_encoder(model.visual)  # None: open_clip's own forward

    def to(self, device) -> "ClipModel":
        self.model.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        device = self.mean.device
        return self.model.encode_text(self.tokenizer(texts).to(device)).float()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at `input_size` -> embeddings (not normalised), float32."""
        if self._fast_encode is not None:
            return self._fast_encode(images, self.mean, self.std).float()
        return self.model.encode_image((images - self.mean) / self.std).float()


def _open_clip():
    import open_clip

    open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def build_clip(arch: str, state: dict[str, torch.Tensor] | None, *, quick_gelu: bool = False,
               seed: int = 0, name: str | None = None, sha256: str = "") -> ClipModel:
    """Build an open_clip architecture and load `state` strictly (random seeded weights when None)."""
    open_clip = _open_clip()
    if arch not in open_clip.list_models():
        raise ConfigError(f"unknown CLIP architecture {arch!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, RN50")
    with torch.random.fork_rng(devices=[]), quiet():
        torch.manual_seed(seed)
        model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu)
    if state is not None:
        state = _strip_wrappers(state)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            key = missing[0] if missing else unexpected[0]
            what = "lacks weight" if missing else "has unexpected weight"
            raise WeightsError(f"CLIP checkpoint for {arch} {what} {key!r} ({len(missing)} missing, {len(unexpected)} unexpected)")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"CLIP checkpoint does not fit {arch}: {str(exc).splitlines()[-1].strip()}") from None
    return ClipModel(model, open_clip.get_tokenizer(arch), name or arch, sha256)


@contextlib.contextmanager
def quiet():
    """Silence the prints and log warnings that model constructors emit; the engine reports nothing itself."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _strip_wrappers(state: dict) -> dict:
    """Accept `{"state_dict": ...}` and DataParallel `module.` prefixes, as open_clip's own loader does."""
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between rows of a [N, D] and b [M, D], as a [N, M] matrix."""
    a = F.normalize(a, dim=-1).unsqueeze(1)
    b = F.normalize(b, dim=-1).unsqueeze(0)
    return (a - b).norm(dim=-1).div(2).arcsin().pow(2).mul(2)
