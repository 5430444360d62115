"""The web UI's view of the weights registry: dropdown choices, the default pair, the models table, downloads.

Everything is read from `generator.weights.REGISTRY` when asked, so a record added to the registry shows up
in the dropdowns and the models panel without a change here. Users pick models by registry name only: a
file path or an `ARCH=FILE` CLIP spec from a browser is refused (it would name a path on disk).
"""
from __future__ import annotations

from typing import Callable

from generator import weights
from generator.config import GenerationConfig
from generator.errors import ConfigError, VqclipError

TINY_LABEL = "Tiny test models (random weights; for tests)"
STATE_TEXT = {
    weights.OK: "✅ present, verified",
    weights.RECORDED: "✅ present (hash recorded on first use)",
    weights.BAD: "⚠️ damaged: download again",
    weights.MISSING: "⬇️ not downloaded",
    weights.BUILT_IN: "🧪 built in (no file)",
}
READY = (weights.OK, weights.RECORDED, weights.BUILT_IN)


def _records(kind: str) -> list[weights.WeightRecord]:
    """Records usable as `kind` ("vqgan" or "clip"): their own kind, and pairs (like the tiny models)
    that serve as both."""
    return [r for r in weights.REGISTRY.values() if r.kind == kind or r.kind not in ("vqgan", "clip")]


def label(record: weights.WeightRecord) -> str:
    if record.kind == "tiny":
        return TINY_LABEL
    if record.bundled:  # "Shapes demo (works offline)": the head of its description
        return record.description.split(":")[0]
    if record.kind not in ("vqgan", "clip"):
        return record.description.split(";")[0] or record.name
    return record.name if state(record.name) in READY else f"{record.name} (not downloaded)"


def choices(kind: str) -> list[tuple[str, str]]:
    """(label, registry name) pairs for a dropdown, models that are ready first."""
    records = _records(kind)
    records.sort(key=lambda r: (state(r.name) not in READY, r.kind != kind, r.name))
    return [(label(r), r.name) for r in records]


def state(name: str) -> str:
    """The worst state of a record's files (hashes only files not verified before)."""
    order = [weights.BAD, weights.MISSING, weights.RECORDED, weights.OK, weights.BUILT_IN]
    return min((s for _, s, _ in weights.status(name)), key=order.index)


# bundled with the package: always there, no download; the demo guides with both of its CLIPs
DEMO_PAIR = ("shapes", ",".join(weights.REGISTRY["shapes"].clips))


def default_pair() -> tuple[str, str, bool]:
    """(vqgan, clip, real): the engine's default models when both are ready, else the shapes demo (the tiny
    test pair if even that is damaged)."""
    config = GenerationConfig()
    for pair in ((config.vqgan, config.clip), DEMO_PAIR):
        if all(n in weights.REGISTRY and state(n) in READY for n in (pair[0], *pair[1].split(","))):
            return *pair, pair == (config.vqgan, config.clip)
    return "tiny", "tiny", False


def banner(real: bool, vqgan: str = DEMO_PAIR[0]) -> str:
    """A plain note when the UI starts on the demo (or tiny) models; empty when the real ones are here."""
    if real:
        return ""
    config = GenerationConfig()
    if vqgan == DEMO_PAIR[0]:
        picked = (f"so the **{label(weights.REGISTRY[vqgan])}** is selected, with its recommended settings. It is "
                  f"a small VQGAN and two small CLIPs trained only on drawn shapes (circles, squares, triangles, "
                  f"stars and crosses in eight colours): try \"a large blue circle on the left\". It cannot draw "
                  f"anything else, and its shapes are still rough.")
    else:
        picked = "so the tiny test models are selected: they run anywhere but make meaningless images."
    return (f"**The real models are not downloaded yet**, {picked} To get the real ones, use the **Models** tab "
            f"or run `vqclip weights download {config.vqgan}` and `vqclip weights download {config.clip}`, "
            f"then reload this page.")


def check_names(vqgan: str, clips: list[str]) -> None:
    """Refuse anything but registry names of the right kind."""
    if vqgan not in {r.name for r in _records("vqgan")}:
        raise ConfigError(f"unknown VQGAN model {vqgan!r}; pick one from the list")
    if not clips:
        raise ConfigError("pick at least one CLIP model")
    known = {r.name for r in _records("clip")}
    for name in clips:
        if name not in known:
            raise ConfigError(f"unknown CLIP model {name!r}; pick one from the list")


def check_present(names: list[str]) -> None:
    """A clear message, naming the command, for a model whose weights are not here (for local workers)."""
    for name in dict.fromkeys(names):
        found = state(name)
        if found not in READY:
            what = "is damaged" if found == weights.BAD else "is not downloaded yet"
            raise ConfigError(f"the model {name} {what}: download it in the Models tab, or run "
                              f"`vqclip weights download {name}` on this machine")


def table() -> list[list[str]]:
    """Rows of the models panel: name, kind, state, size, description."""
    rows = []
    for record in weights.REGISTRY.values():
        size = f"{record.size / 1e6:,.0f} MB" if record.size else ("-" if record.kind == "tiny" else "?")
        name = TINY_LABEL if record.kind == "tiny" else record.name
        rows.append([name, record.kind, STATE_TEXT.get(state(record.name), state(record.name)), size,
                     record.description])
    return rows


def downloadable() -> list[str]:
    """Names whose files can be fetched and are not ready yet."""
    return [r.name for r in weights.REGISTRY.values() if r.urls and state(r.name) not in READY]


def download(name: str, progress: Callable[[int, int | None], None]) -> str:
    """Fetch `name` into the cache; a sentence saying how it went (never a traceback)."""
    if name not in weights.REGISTRY:
        return f"Unknown model {name!r}."
    try:
        path = weights.download(name, progress=progress)
    except VqclipError as exc:
        return f"Download of {name} failed: {exc}"
    return f"{name} downloaded and verified: {path.name}."
