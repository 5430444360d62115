"""The VQGAN: taming-transformers' Encoder/Decoder and quantisers, built from the checkpoint's YAML.

We never import `taming.models` (it needs pytorch-lightning internals that current releases removed and
the training script's `main`); only `taming.modules`, which are plain torch.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from .errors import ConfigError, WeightsError

# The `target` of a taming config -> (quantiser kind, prefix of the first-stage keys in its checkpoint).
_TARGETS = {
    "taming.models.vqgan.VQModel": ("vq", ""),
    "taming.models.vqgan.GumbelVQ": ("gumbel", ""),
    "taming.models.cond_transformer.Net2NetTransformer": (None, "first_stage_model."),
}
_IGNORED_PREFIXES = ("loss.",)
NORMS = ("group32", "none")
QUANTIZER_KINDS = ("nearest", "cosine")  # `quantizer_kind` in params: vqclip's options, not taming's  # discriminator and perceptual-loss weights in training checkpoints


@dataclass(frozen=True)
class VQGANConfig:
    """A taming first-stage model: `ddconfig` plus the quantiser."""

    quantizer: str  # "vq" (nearest code), "gumbel" (Gumbel-softmax trained, used by nearest code) or
    # "cosine" (vqclip's own: l2-normalised codebook, matched by cosine similarity)
    embed_dim: int  # codebook vector size
    n_embed: int  # number of codes
    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    z_channels: int
    in_channels: int = 3
    out_ch: int = 3
    double_z: bool = False
    dropout: float = 0.0
    norm: str = "group32"  # one of NORMS: taming's GroupNorm(32), or "none" (Identity: keeps flat colours)
    key_prefix: str = ""  # where the first stage sits in the checkpoint's state dict
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def factor(self) -> int:
        """Pixels per latent token along each side."""
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_yaml(cls, text: str, source: str = "config") -> "VQGANConfig":
        try:
            data = yaml.safe_load(text)
            model = data["model"]
            target, params = model["target"], model["params"]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise ConfigError(f"{source}: not a taming model config ({exc})") from None
        if target not in _TARGETS:
            raise ConfigError(f"{source}: unsupported model target {target!r}; supported: {', '.join(_TARGETS)}")
        kind, prefix = _TARGETS[target]
        if kind is None:  # a transformer config wraps the first stage we want
            first = params.get("first_stage_config") or {}
            inner = {"model": {"target": first.get("target"), "params": first.get("params")}}
            return cls.from_yaml(yaml.safe_dump(inner), source).with_prefix(prefix)
        if params.get("remap"):
            raise ConfigError(f"{source}: codebook remapping is not supported")
        dd = params["ddconfig"]
        norm, quantizer_kind = params.get("norm", "group32"), params.get("quantizer_kind", "nearest")
        if norm not in NORMS:
            raise ConfigError(f"{source}: unknown norm {norm!r}; known: {', '.join(NORMS)}")
        if quantizer_kind not in QUANTIZER_KINDS:
            raise ConfigError(f"{source}: unknown quantizer_kind {quantizer_kind!r}; known: {', '.join(QUANTIZER_KINDS)}")
        if quantizer_kind == "cosine":
            if kind != "vq":
                raise ConfigError(f"{source}: quantizer_kind cosine needs target taming.models.vqgan.VQModel")
            kind = "cosine"
        try:
            return cls(
                quantizer=kind, norm=norm, embed_dim=int(params["embed_dim"]), n_embed=int(params["n_embed"]),
                ch=int(dd["ch"]), ch_mult=tuple(dd["ch_mult"]), num_res_blocks=int(dd["num_res_blocks"]),
                attn_resolutions=tuple(dd["attn_resolutions"]), resolution=int(dd["resolution"]),
                z_channels=int(dd["z_channels"]), in_channels=int(dd.get("in_channels", 3)),
                out_ch=int(dd.get("out_ch", 3)), double_z=bool(dd.get("double_z", False)),
                dropout=float(dd.get("dropout", 0.0)),
            )
        except KeyError as exc:
            raise ConfigError(f"{source}: missing key {exc.args[0]!r} in the model config") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "VQGANConfig":
        return cls.from_yaml(Path(path).read_text(), str(path))

    def with_prefix(self, prefix: str) -> "VQGANConfig":
        return VQGANConfig(**{**self.__dict__, "key_prefix": prefix})

    def ddconfig(self) -> dict:
        return dict(
            ch=self.ch, out_ch=self.out_ch, ch_mult=list(self.ch_mult), num_res_blocks=self.num_res_blocks,
            attn_resolutions=list(self.attn_resolutions), dropout=self.dropout, in_channels=self.in_channels,
            resolution=self.resolution, z_channels=self.z_channels, double_z=self.double_z,
        )


class VQGAN(nn.Module):
    """Encoder, decoder and codebook of a taming VQGAN; what VQGAN+CLIP needs and nothing else."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2

        self.config = config
        dd = config.ddconfig()
        with _norm_layers(config.norm):
            self.encoder = Encoder(**dd)
            self.decoder = Decoder(**dd)
        if config.quantizer == "gumbel":
            self.quantize = GumbelQuantize(config.z_channels, config.embed_dim, n_embed=config.n_embed)
        elif config.quantizer == "cosine":
            self.quantize = CosineQuantizer(config.n_embed, config.embed_dim)
        else:
            self.quantize = VectorQuantizer2(config.n_embed, config.embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)

    @property
    def codebook(self) -> torch.Tensor:
        """[n_embed, embed_dim] code vectors."""
        if self.config.quantizer == "gumbel":
            return self.quantize.embed.weight
        if self.config.quantizer == "cosine":
            # unit vectors: the engine's nearest-code search and range clamp then match by cosine
            return F.normalize(self.quantize.embedding.weight, dim=1)
        return self.quantize.embedding.weight

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> latent [B, embed_dim, h, w] made of codebook vectors."""
        h = self.quant_conv(self.encoder(image))
        if self.config.quantizer == "gumbel":
            idx = self.quantize.proj(h).argmax(1)
            return self.codebook[idx].permute(0, 3, 1, 2)
        if self.config.quantizer == "cosine":
            h = F.normalize(h, dim=1)
        return vector_quantize(h, self.codebook)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent [B, embed_dim, h, w] -> image in about [-1, 1]."""
        return self.decoder(self.post_quant_conv(z))

    def load_checkpoint_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load the first-stage weights strictly: any missing or unexpected key is an error naming it."""
        prefix = self.config.key_prefix
        picked = {}
        for key, value in state.items():
            if prefix:
                if not key.startswith(prefix):
                    continue  # the transformer and conditioning stages of a Net2Net checkpoint
                key = key[len(prefix):]
            if key.startswith(_IGNORED_PREFIXES):
                continue
            picked[key] = value
        expected = self.state_dict()
        missing = sorted(set(expected) - set(picked))
        unexpected = sorted(set(picked) - set(expected))
        if missing:
            raise WeightsError(f"{source}: checkpoint lacks {len(missing)} weight(s) the model needs, first {prefix + missing[0]!r}")
        if unexpected:
            raise WeightsError(f"{source}: checkpoint has {len(unexpected)} unexpected weight(s), first {prefix + unexpected[0]!r}")
        for key, value in picked.items():
            if value.shape != expected[key].shape:
                raise WeightsError(f"{source}: weight {prefix + key!r} has shape {tuple(value.shape)}, the config says {tuple(expected[key].shape)}")
        self.load_state_dict(picked, strict=True)


class CosineQuantizer(nn.Module):
    """A codebook of `n_embed` vectors used l2-normalised (Yu et al. 2022, ViT-VQGAN's factorised codes).

    Only the codebook lives here (key `quantize.embedding.weight`, as in taming); `VQGAN.encode` and the
    engine normalise the latent and pick the nearest unit code, which is the code of highest cosine.
    """

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)


_NORM_LOCK = threading.Lock()


@contextlib.contextmanager
def _norm_layers(norm: str):
    """Build taming's Encoder/Decoder with `norm` layers: for "none", its `Normalize` factory returns
    Identity while they are built (also allowing widths that GroupNorm(32) could not divide)."""
    if norm == "group32":
        yield
        return
    from taming.modules.diffusionmodules import model as taming_model

    with _NORM_LOCK:
        original = taming_model.Normalize
        taming_model.Normalize = lambda in_channels: nn.Identity()
        try:
            yield
        finally:
            taming_model.Normalize = original


def vector_quantize(z: torch.Tensor, codebook: torch.Tensor, codebook_sqnorm: torch.Tensor | None = None) -> torch.Tensor:
    """Nearest codebook vector per position, with a straight-through gradient. z: [B, C, h, w].

    `codebook_sqnorm` is `codebook.pow(2).sum(1)`, passed in by callers that quantise every step.
    """
    b, c, h, w = z.shape
    if codebook_sqnorm is None:
        codebook_sqnorm = codebook.pow(2).sum(1)
    # |z - e|^2 = |z|^2 - 2 z.e + |e|^2; |z|^2 is the same for every code, so it does not change the argmin.
    # One addmm over [B*h*w, C] positions; for B=1 the flattening is a transposed view, not a copy.
    with torch.no_grad():
        flat = z.detach().flatten(2).transpose(1, 2).reshape(-1, c)
        scores = torch.addmm(codebook_sqnorm, flat, codebook.T, alpha=-2)
        quantized = codebook[scores.argmin(1)].view(b, h * w, c).transpose(1, 2).view(b, c, h, w)
    return z + (quantized - z.detach())
