"""What one user may ask of a shared service: size, steps and cutouts per job, jobs waiting per user and in
all, upload bytes and pixels. `vqclip serve --max-... N` sets them; each refusal says which limit and how to
get under it.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.jobs import QUEUED, RUNNING, JobStore
from generator.errors import VqclipError


class LimitError(VqclipError):
    """A request is over one of the service's limits; the message says which and by how much."""


@dataclass(frozen=True)
class Limits:
    max_side: int = 1024  # pixels, width and height each
    max_pixels: int = 1024 * 768  # width x height of one output
    max_steps: int = 2000
    max_cutn: int = 128
    max_queued_per_user: int = 8  # a user's jobs queued or running
    max_queued: int = 200  # everyone's jobs queued or running
    max_upload_bytes: int = 10 * 1024 * 1024
    max_upload_pixels: int = 4096 * 4096  # checked from the header, before the image is decoded
    max_image_prompts: int = 4

    def check_config(self, config: dict) -> None:
        """Refuse settings over the per-job limits (the engine checks the rest)."""
        width, height = int(config.get("width", 0)), int(config.get("height", 0))
        if width > self.max_side or height > self.max_side:
            raise LimitError(f"size {width}x{height} is over this server's limit of {self.max_side} pixels "
                             f"per side; choose a smaller size")
        if width * height > self.max_pixels:
            raise LimitError(f"size {width}x{height} is {width * height:,} pixels, over this server's limit of "
                             f"{self.max_pixels:,}; choose a smaller size")
        if int(config.get("steps", 0)) > self.max_steps:
            raise LimitError(f"{config['steps']} steps is over this server's limit of {self.max_steps}")
        if int(config.get("cutn", 0)) > self.max_cutn:
            raise LimitError(f"{config['cutn']} cutouts is over this server's limit of {self.max_cutn}")
        if len(config.get("image_prompts", [])) > self.max_image_prompts:
            raise LimitError(f"at most {self.max_image_prompts} image prompts per job")

    def check_queue(self, store: JobStore, owner: str, count: int = 1) -> None:
        """Refuse `count` new jobs when the user, or everyone together, would have too many waiting or running."""
        counts = store.counts()
        if counts[QUEUED] + counts[RUNNING] + count > self.max_queued:
            raise LimitError(f"the queue is full ({self.max_queued} jobs waiting or running); "
                             f"try again when some have finished")
        mine = _active_jobs(store, owner, self.max_queued_per_user)
        if mine + count > self.max_queued_per_user:
            if count == 1:
                raise LimitError(f"you already have {mine} jobs waiting or running, this server's limit per "
                                 f"user; wait for one to finish or cancel one")
            room = max(0, self.max_queued_per_user - mine)
            raise LimitError(f"{count} variations would make {mine + count} of your jobs waiting or running, over "
                             f"this server's limit of {self.max_queued_per_user} per user; ask for at most {room}, "
                             f"or wait for some to finish")


def _active_jobs(store: JobStore, owner: str, enough: int) -> int:
    """How many of `owner`'s jobs are queued or running (counting stops at `enough`)."""
    found = 0
    for state in (QUEUED, RUNNING):
        found += len(store.list(state=state, owner=owner, limit=enough))
    return found
