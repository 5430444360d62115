"""Read checkpoint files as tensors, never as code.

`read_state_dict(path)` returns a flat `{name: tensor}` dict from:
- `.safetensors` files (safetensors);
- `.pt` / `.pth` / `.bin` files (`torch.load(weights_only=True)`);
- taming `.ckpt` files, pytorch-lightning pickles that also hold callbacks, optimizer state and
  omegaconf hyper-parameters. These are read by a restricted unpickler: torch's tensor-rebuild
  functions resolve normally, an allow-list of known data classes (lightning, omegaconf, numpy
  scalars, argparse.Namespace...) resolves to inert stubs that only record their arguments, and
  any other global (os.system, builtins.eval, subprocess.Popen...) raises UnsafeCheckpointError
  before anything runs.

`convert_to_safetensors(src, dst)` does the one-time conversion; `vqclip weights` uses it.
"""
from __future__ import annotations

import _compat_pickle
import codecs
import collections
import pickle
import re
import zipfile
from pathlib import Path

import torch

from generator.errors import UnsafeCheckpointError, WeightsError

PICKLE_SUFFIXES = (".pt", ".pth", ".bin")
LIGHTNING_SUFFIXES = (".ckpt",)

# Modules whose classes only carry data in a lightning checkpoint; they become inert stubs.
STUB_MODULE_PREFIXES = (
    "pytorch_lightning.",
    "lightning_fabric.",
    "lightning.",
    "omegaconf.",
    "fsspec.",  # a ModelCheckpoint callback object holds its fsspec filesystem
)
# Single globals that also become stubs (numpy scalars and arrays in hyper-parameters, typing
# annotations stored by omegaconf, argparse hyper-parameter namespaces, paths of checkpoints).
STUB_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("typing", "Any"),
    ("argparse", "Namespace"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "Path"),
}
# Harmless builtins that are resolved to themselves.
SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "range"): range,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "object"): object,
    ("_codecs", "encode"): codecs.encode,  # how protocol 2 stores bytes (numpy arrays)
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
}
TORCH_REBUILD_FUNCTIONS = {
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_device_tensor_from_numpy",
}


class InertStub:
    """Stands in for an allow-listed class: records what the pickle passed, runs nothing."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<stub {self.qualname}>"


def _make_stub(module: str, name: str) -> type:
    return type(name, (InertStub,), {"qualname": f"{module}.{name}", "__module__": "stub." + module})


def _safe_reconstructor(cls, base, state):
    """copyreg._reconstructor without calling base.__init__: only stubs may be built this way."""
    if not (isinstance(cls, type) and issubclass(cls, InertStub)):
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r}")
    return cls()


def _torch_global(name: str):
    if name.endswith("Storage") or name == "Size" or name == "device":
        return getattr(torch, name, None)
    value = getattr(torch, name, None)
    return value if isinstance(value, torch.dtype) else None


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle.Unpickler whose find_class resolves only tensor rebuilders and an allow-list."""

    source = "<checkpoint>"
    _stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        # protocol 2 writes python 2 names (__builtin__.dict); map them as fix_imports would
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = (module, name)
        if key in SAFE_GLOBALS:
            return SAFE_GLOBALS[key]
        if module == "torch._utils" and name in TORCH_REBUILD_FUNCTIONS:
            return getattr(torch._utils, name)
        if module == "torch" and _torch_global(name) is not None:
            return _torch_global(name)
        if module == "copyreg" and name == "_reconstructor":
            return _safe_reconstructor
        if key in STUB_GLOBALS or module.startswith(STUB_MODULE_PREFIXES) or module in (
            "pytorch_lightning", "lightning_fabric", "omegaconf"
        ):
            if key not in self._stubs:
                self._stubs[key] = _make_stub(module, name)
            return self._stubs[key]
        raise UnsafeCheckpointError(
            f"{self.source} references {module}.{name}, which is not on the allow-list of data "
            "classes; refused without running it"
        )


def _restricted_pickle_module(source: str):
    """A stand-in for the `pickle` module, as torch.load(pickle_module=...) expects."""

    class Unpickler(RestrictedUnpickler):
        pass

    Unpickler.source = source

    class Module:
        pass

    module = Module()
    module.Unpickler = Unpickler
    module.load = lambda f, **kwargs: Unpickler(f, **kwargs).load()
    module.__name__ = "vqclip_restricted_pickle"
    return module


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.split("/", 1)[-1] == "constants.pkl" for n in archive.namelist())


def _state_dict_of(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors")
    return tensors


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint's tensors on the CPU without executing anything it contains.

    Args:
        path: a .safetensors, .pt/.pth/.bin (weights-only pickle) or .ckpt (lightning) file.
    Returns:
        the state dict (the inner "state_dict" of a lightning checkpoint).
    Raises:
        UnsafeCheckpointError: a pickle references code outside the allow-list.
        WeightsError: the file is missing, unreadable or of an unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file: {exc}") from exc
    if suffix not in PICKLE_SUFFIXES + LIGHTNING_SUFFIXES:
        raise WeightsError(
            f"{path}: unknown checkpoint type {suffix!r}; expected .safetensors, .pt, .pth, .bin or .ckpt"
        )
    if _is_torchscript(path):
        raise WeightsError(
            f"{path} is a TorchScript archive; loading it would run its code. "
            "Use a safetensors or state-dict copy of these weights."
        )
    if suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", str(exc))
            what = f"it references {found.group(1)}" if found else "it holds more than tensors"
            raise WeightsError(
                f"{path} is not a plain tensor file: {what}, and weights-only loading refuses "
                "anything but tensors. Convert it to safetensors where it was made."
            ) from exc
        except (RuntimeError, OSError, EOFError) as exc:
            raise WeightsError(f"{path} is not a readable torch checkpoint: {exc}") from exc
        return _state_dict_of(obj, path)
    try:
        obj = torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_restricted_pickle_module(str(path))
        )
    except UnsafeCheckpointError:
        raise
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path} is not a readable lightning checkpoint: {exc}") from exc
    return _state_dict_of(obj, path)


def convert_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Write the tensors of any checkpoint read_state_dict accepts as a .safetensors file."""
    from safetensors.torch import save_file

    tensors = read_state_dict(src)
    dst = Path(dst)
    # safetensors refuses shared storage; a contiguous copy per tensor is what it stores anyway.
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    tmp = dst.with_name(dst.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"converted_from": Path(src).name})
    tmp.replace(dst)
    return dst
