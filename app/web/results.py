"""The results grid of a group of variations and the exports of one result (issue #7's logo workflow).

A group is the list of job ids one press of Generate queued; the browser keeps it (gr.BrowserState), so a
reload shows the same grid. Tiles are the group's finished images, each captioned with its seed.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from app.jobs import SUCCEEDED, Job
from app.logo import VARY_INIT_WEIGHT, export_one
from app.web import form
from app.web.jobs_view import STATE_WORDS, FileCache
from generator.errors import ConfigError

EXPORT_HELP = (
    "**Export** the selected result as a logo file. *SVG*: traced into filled paths after reducing the image "
    "to the colour count (the settings go in the SVG's metadata). *Transparent PNG*: the border colour and "
    "everything close to it (tolerance 0-1) that touches the border becomes see-through. *Resized PNG*: "
    "Lanczos resampling to the size given, labelled as resampled: it adds no detail."
)
VARY_HELP = (
    "**Use this seed** loads the selected result's settings and seed into the form. **Vary this one** keeps "
    "its settings and seed and starts from its image, pulled towards it with init weight "
    f"{VARY_INIT_WEIGHT} (under Advanced; lower it for bigger changes): the same composition with small "
    "changes. Press Generate after either; with Variations above 1 you get that many, one per seed."
)


def tiles(jobs: list[Job], files: FileCache) -> tuple[list, list[int], str]:
    """(gallery items, their job ids, a line on the jobs not finished yet) for a group's jobs."""
    items, shown, waiting = [], [], []
    for job in jobs:
        seed = job.config.get("seed", 0)
        if job.state == SUCCEEDED and job.result:
            items.append((files.result(job), f"seed {seed}"))
            shown.append(job.id)
        else:
            step = f" {job.step}/{job.total}" if job.step and not job.done else ""
            waiting.append(f"seed {seed}: {STATE_WORDS.get(job.state, job.state).lower()}{step}")
    note = f"{len(shown)} of {len(jobs)} done" + "".join(f" · {w}" for w in waiting) if jobs else ""
    return items, shown, note


def export(files: FileCache, job, kind: str, colors, transparent: bool, tolerance, size) -> list[str]:
    """Write one export of a finished job into a fresh folder; ConfigError with a message for bad values."""
    if job is None or not job.result:
        raise ConfigError("pick a finished result in the grid first")
    colors = form.whole(colors, "colour count")
    size = form.whole(size, "size") if kind == "resized" and size not in (None, "") else None
    try:
        tolerance = float(tolerance)
    except (TypeError, ValueError):
        raise ConfigError(f"tolerance must be a number between 0 and 1, got {tolerance!r}") from None
    folder = Path(files.folder) / f"job-{job.id}" / f"export-{secrets.token_hex(4)}"
    paths = export_one(files.result(job), folder, kind, colors=colors, transparent=bool(transparent),
                       tolerance=tolerance, size=size)
    return [str(p) for p in paths]
