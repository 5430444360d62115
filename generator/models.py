"""Loading models by name, and a cache that keeps them loaded between generations.

VQGAN names: a registry entry (`vqclip weights list`), ``tiny``, or a checkpoint file with its taming
YAML config beside it. CLIP specs: see `generator.clip`.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from .clip import ClipModel, build_clip, parse_clip_specs, quiet
from .download import sha256_file
from .errors import ConfigError, WeightsError
from .vqgan import VQGAN, VQGANConfig

CONFIG_DIR = Path(__file__).parent / "configs"
TINY = "tiny"
TINY_NOTE = "tiny test model: seeded random weights, for tests and offline smoke runs; images are not meaningful"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU; else the named device, checked."""
    if str(device) == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available here")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type != "cpu":
        raise ConfigError(f"unsupported device {device!r}; use auto, cpu or cuda:N")
    return dev


def state_dict_sha256(module: torch.nn.Module) -> str:
    """A sha256 over a module's tensors (names, dtypes, shapes, bytes), for models built in memory."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def load_vqgan(name: str) -> tuple[VQGAN, str]:
    """(model on the CPU, sha256 of its weights) for a VQGAN name."""
    if name == TINY:
        config = VQGANConfig.from_file(CONFIG_DIR / "vqgan_tiny.yaml")
        with torch.random.fork_rng(devices=[]), quiet():
            torch.manual_seed(0)
            model = VQGAN(config)
            torch.nn.init.normal_(model.codebook)  # taming's +-1/n init leaves a toy codebook too narrow
        return model, state_dict_sha256(model)
    from . import weights
    from .checkpoint import read_state_dict

    path = Path(name)
    if name in weights.REGISTRY:
        record = weights.REGISTRY[name]
        if record.kind != "vqgan":
            raise ConfigError(f"{name!r} is a {record.kind} model, not a VQGAN")
        config = VQGANConfig.from_file(weights.config_path_for(name))
        path = weights.path_for(name)
        sha256 = weights.sha256_for(name) or ""
    elif path.suffix in (".ckpt", ".pt", ".pth", ".safetensors") and path.is_file():
        config = VQGANConfig.from_file(_config_beside(path))
        sha256 = sha256_file(path).hexdigest()
    else:
        known = ", ".join([TINY] + sorted(k for k, r in weights.REGISTRY.items() if r.kind == "vqgan"))
        raise ConfigError(f"unknown VQGAN {name!r}: not a registry name ({known}) nor a checkpoint file")
    with quiet():
        model = VQGAN(config)
    model.load_checkpoint_state(read_state_dict(path), name)
    return model, sha256


def _config_beside(path: Path) -> Path:
    candidates = [path.with_suffix(".yaml"), path.parent / "model.yaml", path.parent / "config.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"VQGAN checkpoint {str(path)!r} needs its taming config YAML beside it: "
                      f"one of {', '.join(c.name for c in candidates)}")


def load_clip(name: str) -> ClipModel:
    """A CLIP model (on the CPU) for one spec name (without weight)."""
    if name == TINY:
        return build_clip("vqclip-tiny", None, seed=0, name=TINY, sha256="")
    from . import weights
    from .checkpoint import read_state_dict

    if "=" in name:
        arch, file = (s.strip() for s in name.split("=", 1))
        return build_clip(arch, read_state_dict(file), name=name, sha256=sha256_file(Path(file)).hexdigest())
    names = weights.clip_record_names(name)
    if len(names) != 1:
        raise ConfigError(f"{name!r} names {len(names)} CLIP models ({', '.join(names)}); load them one by one")
    name = names[0]
    if name not in weights.REGISTRY or weights.REGISTRY[name].kind != "clip":
        known = ", ".join([TINY] + sorted(k for k, r in weights.REGISTRY.items() if r.kind == "clip"))
        raise ConfigError(f"unknown CLIP model {name!r}; known: {known}, or ARCH=FILE")
    record = weights.REGISTRY[name]
    path = weights.path_for(name)
    return build_clip(record.arch, read_state_dict(path), quick_gelu=record.quick_gelu, name=name,
                      sha256=weights.sha256_for(name) or "")


class ModelCache:
    """Keeps models loaded on one device, keyed by name, so consecutive jobs reuse them."""

    def __init__(self, device: str | torch.device = "auto"):
        self.device = resolve_device(device)
        self._vqgans: dict[str, tuple[VQGAN, str]] = {}
        self._clips: dict[str, ClipModel] = {}

    def vqgan(self, name: str) -> VQGAN:
        if name not in self._vqgans:
            model, sha256 = load_vqgan(name)
            model.sha256 = sha256
            self._vqgans[name] = (model.eval().requires_grad_(False).to(self.device), sha256)
        return self._vqgans[name][0]

    def add_vqgan(self, name: str, model: VQGAN, sha256: str = "") -> None:
        """Put an already built VQGAN in the cache under `name` (benchmarks build random full-size ones)."""
        model.sha256 = sha256
        self._vqgans[name] = (model.eval().requires_grad_(False).to(self.device), sha256)

    def add_clip(self, name: str, clip: ClipModel) -> None:
        """Put an already built CLIP model in the cache under `name`."""
        self._clips[name] = clip.to(self.device)

    def clips(self, specs: str) -> list[tuple[ClipModel, float]]:
        from . import weights

        out = []
        for spec in parse_clip_specs(specs):
            # a VQGAN's name stands for all the CLIPs made for it, each with the spec's weight
            for name in weights.clip_record_names(spec.name):
                if name not in self._clips:
                    self._clips[name] = load_clip(name).to(self.device)
                out.append((self._clips[name], spec.weight))
        return out

    def clear(self) -> None:
        """Drop every model (e.g. after running out of GPU memory)."""
        self._vqgans.clear()
        self._clips.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
