"""The weights registry and its verified cache: `vqclip weights list | download | import | verify`.

One `WeightRecord` per checkpoint (open_clip's pretrained.py, with the hash an explicit field).
Files live in `cache_dir()`; a file only gets its final name after its size and sha256 match, and
`path_for` checks the hash again on use (remembering the result per (size, mtime) so a 1 GB file
is not rehashed for every job). Records whose sha256 could not be found when they were written
(sha256=None) are trusted on first use: the hash of the first complete download or import is
recorded in `trusted.json` in the cache and enforced from then on.

Sources and hashes of every record: weights/README.md.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from generator.download import FetchError, fetch, sha256_file
from generator.errors import WeightsError
from generator.weight_records import RECORDS, ConfigFile, WeightRecord

__all__ = [
    "ConfigFile", "WeightRecord", "REGISTRY", "get", "clip_record_names", "cache_dir", "path_for", "sha256_for", "config_path_for",
    "download", "import_file", "verify", "status", "OK", "RECORDED", "BAD", "MISSING", "BUILT_IN",
]

# The one registry, by name. Tests add records with monkeypatch.setitem(REGISTRY, ...).
REGISTRY: dict[str, WeightRecord] = {r.name: r for r in RECORDS}

# verify() states
OK = "ok"              # present, hash matches the registry or the hash recorded on first use
RECORDED = "recorded"  # present, no hash known before: its hash has just been recorded
BAD = "bad"            # present, wrong size or hash
MISSING = "missing"    # not in the cache (a .part may be waiting to be resumed)
BUILT_IN = "built-in"  # the tiny test models: built in memory, nothing on disk
BUNDLED_DIR = Path(__file__).parent / "pretrained"  # weights shipped inside the package

TRUSTED_FILE = "trusted.json"    # hashes recorded on first use, for records with sha256=None
VERIFIED_FILE = "verified.json"  # (size, mtime_ns) -> sha256 of files already hashed


@dataclass(frozen=True)
class _Target:
    """A file of a record: its checkpoint or its config."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    bundled: bool = False  # lives in BUNDLED_DIR, not in the cache

    @property
    def path(self) -> Path:
        return (BUNDLED_DIR if self.bundled else cache_dir()) / self.filename


def get(name: str) -> WeightRecord:
    """The record called `name`; WeightsError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def recommended_settings(vqgan: str) -> dict:
    """Generation settings that suit the VQGAN called `vqgan` (the shapes demo's size, steps, cutouts...),
    for front ends to start from; {} for models without any."""
    record = REGISTRY.get(vqgan)
    return dict(record.recommended or {}) if record is not None else {}


def clip_record_names(name: str) -> tuple[str, ...]:
    """The CLIP records `name` stands for: itself, or the CLIPs made for the VQGAN called `name`
    (`--clip shapes` guides with both shapes CLIPs)."""
    record = REGISTRY.get(name)
    if record is not None and record.kind == "vqgan" and record.clips:
        return record.clips
    return (name,)


def cache_dir() -> Path:
    """$VQCLIP_WEIGHTS_DIR, else weights/ of a source checkout, else ~/.cache/vqclip/weights."""
    env = os.environ.get("VQCLIP_WEIGHTS_DIR")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[1] / "weights"
    if checkout.is_dir():
        return checkout
    return Path.home() / ".cache" / "vqclip" / "weights"


def _mirrored(urls: tuple[str, ...], filename: str) -> tuple[str, ...]:
    """$VQCLIP_WEIGHTS_MIRROR (a base URL holding files by name) goes before the registry's URLs."""
    mirror = os.environ.get("VQCLIP_WEIGHTS_MIRROR", "").strip()
    return ((f"{mirror.rstrip('/')}/{filename}",) if mirror else ()) + tuple(urls)


def _targets(record: WeightRecord) -> list[_Target]:
    """Config first: it is small, and a VQGAN is useless without it."""
    if record.kind == "tiny":
        return []
    targets = []
    if record.config is not None:
        c = record.config
        targets.append(_Target(c.filename, _mirrored(c.urls, c.filename), c.sha256, c.size, record.bundled))
    targets.append(_Target(record.filename, _mirrored(record.urls, record.filename), record.sha256, record.size,
                           record.bundled))
    return targets


def _how_to_get(name: str, target: _Target) -> str:
    urls = "\n  ".join(target.urls) or "(no download address)"
    return (
        f"download it with `vqclip weights download {name}`, or fetch {target.filename} from\n  {urls}\n"
        f"elsewhere and place it by hand with `vqclip weights import {name} FILE`"
    )


# --- small JSON files in the cache -------------------------------------------------------------

def _read_json(name: str) -> dict:
    try:
        return json.loads((cache_dir() / name).read_text())
    except (OSError, ValueError):
        return {}


def _write_json(name: str, data: dict) -> None:
    path = cache_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def _expected_sha256(target: _Target) -> str | None:
    return target.sha256 or _read_json(TRUSTED_FILE).get(target.filename, {}).get("sha256")


def _trust(target: _Target, sha256: str, size: int, source: str) -> None:
    """Record the hash of a file whose hash the registry does not know (trust on first use)."""
    trusted = _read_json(TRUSTED_FILE)
    trusted[target.filename] = {"sha256": sha256, "size": size, "source": source}
    _write_json(TRUSTED_FILE, trusted)


def _remember_verified(path: Path, sha256: str) -> None:
    st = path.stat()
    verified = _read_json(VERIFIED_FILE)
    verified[path.name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    _write_json(VERIFIED_FILE, verified)


# --- checking files ----------------------------------------------------------------------------

def _check(target: _Target, *, rehash: bool = False) -> tuple[str, str]:
    """(state, detail) of a target's file in the cache; hashes only when size or mtime changed."""
    path = target.path
    if target.bundled:  # a few MB: hashed on every use, nothing recorded in the cache
        if not path.is_file():
            return MISSING, f"{path} is missing from the package"
        actual = sha256_file(path).hexdigest()
        if actual != target.sha256:
            return BAD, f"{path} sha256 mismatch: expected {target.sha256}, actual {actual}"
        return OK, f"{path} (bundled) sha256 {actual} ok"
    if not path.is_file():
        return MISSING, f"{path} is missing"
    st = path.stat()
    if target.size is not None and st.st_size != target.size:
        return BAD, f"{path} has {st.st_size} bytes, expected {target.size}"
    expected = _expected_sha256(target)
    seen = _read_json(VERIFIED_FILE).get(target.filename, {})
    if (
        not rehash and expected is not None and seen.get("sha256") == expected
        and seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns
    ):
        return OK, f"{path} verified earlier, unchanged since"
    actual = sha256_file(path).hexdigest()
    if expected is None:
        _trust(target, actual, st.st_size, f"found in the cache as {path}")
        _remember_verified(path, actual)
        return RECORDED, f"{path}: no published hash; recorded sha256 {actual} on first use"
    if actual != expected:
        return BAD, f"{path} sha256 mismatch: expected {expected}, actual {actual}"
    _remember_verified(path, actual)
    return OK, f"{path} sha256 {actual} ok"


def _verified_path(name: str, target: _Target, verify: bool) -> Path:
    state, detail = _check(target) if verify else (OK if target.path.is_file() else MISSING, "")
    if target.bundled and state != OK:
        raise WeightsError(f"{name}: {detail}; reinstall vqclip")
    if state == MISSING:
        raise WeightsError(f"{name}: {target.filename} is not in {cache_dir()}; {_how_to_get(name, target)}")
    if state == BAD:
        raise WeightsError(f"{name}: {detail}. Delete it and {_how_to_get(name, target)}")
    return target.path


def path_for(name: str, verify: bool = True) -> Path:
    """The cached checkpoint file of `name`, its hash checked (cached per size and mtime).

    Raises:
        WeightsError: unknown name, missing file (with the download/import commands) or bad hash.
    """
    record = get(name)
    if record.kind == "tiny":
        raise WeightsError(f"{name} is built in memory by the engine; it has no file")
    return _verified_path(name, _targets(record)[-1], verify)


def sha256_for(name: str) -> str | None:
    """The sha256 `name`'s checkpoint is checked against (published, or recorded on first use);
    outputs record it so a run can be reproduced with the same weights."""
    record = get(name)
    return _expected_sha256(_targets(record)[-1]) if record.kind != "tiny" else None


def config_path_for(name: str, verify: bool = True) -> Path:
    """The cached taming model.yaml of VQGAN `name`, checked like path_for."""
    record = get(name)
    if record.config is None:
        raise WeightsError(f"{name} has no config file")
    return _verified_path(name, _targets(record)[0], verify)


def status(name: str, *, rehash: bool = False) -> list[tuple[str, str, str]]:
    """(filename, state, detail) of each file of `name`."""
    record = get(name)
    if record.kind == "tiny":
        return [("", BUILT_IN, "built in memory by the engine")]
    return [(t.filename, *_check(t, rehash=rehash)) for t in _targets(record)]


def verify(name: str | None = None, *, rehash: bool = True) -> list[tuple[str, str]]:
    """(name, state) for `name` or every record: the worst state of its files, rehashed."""
    names = [name] if name is not None else sorted(REGISTRY)
    order = [BAD, MISSING, RECORDED, OK, BUILT_IN]
    results = []
    for n in names:
        states = [state for _, state, _ in status(n, rehash=rehash)]
        results.append((n, min(states, key=order.index)))
    return results


# --- getting files -----------------------------------------------------------------------------

def _tqdm_progress(label: str) -> Callable[[int, int | None], None]:
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=label)
        if done < bar.n:  # the server ignored Range: the transfer started again
            bar.reset(total=total)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return update


def download(
    name: str,
    *,
    progress: bool | Callable[[int, int | None], None] = True,
    timeout: float = 10.0,
) -> Path:
    """Download the files of `name` that are not already verified in the cache.

    Args:
        progress: True for a tqdm bar on stderr, False for none, or callback(bytes_done, total).
        timeout: seconds allowed to connect and for each read; an offline machine fails at once.
    Returns:
        the checkpoint path, as path_for(name) would.
    Raises:
        WeightsError: every URL failed (each is named, with the `vqclip weights import` command),
            or the bytes did not match the expected size/sha256 (the partial file is deleted).
    """
    record = get(name)
    if record.kind == "tiny":
        raise WeightsError(f"{name} is built in memory by the engine; there is nothing to download")
    if record.bundled:  # shipped with the package: nothing to fetch, only to verify
        return path_for(name)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    failures = []
    for target in _targets(record):
        final = cache / target.filename
        state, _ = _check(target)
        if state in (OK, RECORDED):
            continue
        if state == BAD:
            final.unlink()
        part = final.with_name(final.name + ".part")
        callback = _tqdm_progress(target.filename) if progress is True else (progress or None)
        try:
            got = fetch(
                target.urls, part, expected_sha256=_expected_sha256(target),
                expected_size=target.size, timeout=timeout, progress=callback,
            )
        except FetchError as exc:
            tried = "\n".join(f"  {url}: {reason}" for url, reason in exc.attempts)
            kept = f"\n  the partial file {part} is kept; run the command again to resume" if part.exists() else ""
            failures.append(f"{target.filename}, tried:\n{tried}{kept}")
            continue
        if _expected_sha256(target) is None:
            _trust(target, got.sha256, got.size, got.url)
        part.replace(final)
        _remember_verified(final, got.sha256)
    if failures:
        raise WeightsError(
            f"could not download {name}: " + "\n".join(failures) + "\n"
            f"To place a file by hand, fetch it elsewhere and run `vqclip weights import {name} FILE` "
            "(a .yaml file is taken as the config)"
        )
    return cache / record.filename


def import_file(name: str, path: str | Path) -> Path:
    """Verify a file fetched by hand and copy it atomically into the cache.

    A .yaml/.yml file is taken as the config of a VQGAN record, anything else as its checkpoint.
    Raises:
        WeightsError: the file does not match the record's size or sha256; nothing is left behind.
    """
    record = get(name)
    src = Path(path)
    if not src.is_file():
        raise WeightsError(f"{src} is not a file")
    targets = _targets(record)
    if not targets:
        raise WeightsError(f"{name} is built in memory by the engine; there is nothing to import")
    if record.bundled:
        raise WeightsError(f"{name} is bundled with vqclip; there is nothing to import")
    is_config = record.config is not None and src.suffix.lower() in (".yaml", ".yml")
    target = targets[0] if is_config else targets[-1]
    size = src.stat().st_size
    if target.size is not None and size != target.size:
        raise WeightsError(f"{src} has {size} bytes; {name} needs {target.filename} of {target.size} bytes")
    final = cache_dir() / target.filename
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.import")
    try:
        shutil.copyfile(src, tmp)
        actual = sha256_file(tmp).hexdigest()
        expected = _expected_sha256(target)
        if expected is not None and actual != expected:
            raise WeightsError(
                f"{src} is not {target.filename} for {name}: sha256 expected {expected}, actual {actual}"
            )
        if expected is None:
            _trust(target, actual, size, f"imported from {src}")
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    _remember_verified(final, actual)
    return final
