"""How jobs look in the web UI: the progress card, speed and ETA, captions, and the files behind downloads.

All of it is computed from what the job store holds, so any number of workers, tabs and server restarts
see the same thing.
"""
from __future__ import annotations

import html
import threading
import time
from collections import deque
from pathlib import Path

from app.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, Job

STATE_WORDS = {QUEUED: "Queued", RUNNING: "Running", SUCCEEDED: "Done", FAILED: "Failed", CANCELLED: "Cancelled"}


class RateTracker:
    """Steps per second of running jobs, from the (time, step) pairs seen while polling the store; shared by
    every session of this server."""

    WINDOW = 30.0  # seconds of samples kept per job

    def __init__(self):
        self._samples: dict[int, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def observe(self, job: Job) -> float | None:
        """Record the job's step now; its rate in steps/s once two different steps were seen."""
        if job.state != RUNNING or job.step is None:
            with self._lock:
                self._samples.pop(job.id, None)
            return None
        now = time.monotonic()
        with self._lock:
            samples = self._samples.setdefault(job.id, deque())
            if not samples or samples[-1][1] != job.step:
                samples.append((now, job.step))
            while len(samples) > 2 and now - samples[0][0] > self.WINDOW:
                samples.popleft()
            (t0, s0), (t1, s1) = samples[0], samples[-1]
        if s1 > s0 and t1 > t0:
            return (s1 - s0) / (t1 - t0)
        return None


def caption(config: dict) -> str:
    """Gallery caption: prompt, seed and size."""
    prompt = str(config.get("prompts") or "image prompt")
    short = prompt if len(prompt) <= 60 else prompt[:57] + "..."
    return f"{short} · seed {config.get('seed', 0)} · {config.get('width')}×{config.get('height')}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def job_card(job: Job | None, position: int | None, rate: float | None) -> str:
    """The current job as HTML: title, a progress bar, step/total, it/s, ETA, loss, or why it ended."""
    if job is None:
        return ('<div class="vq-card vq-empty" data-state="none">No job yet. Write a prompt and press '
                '<b>Generate</b>; your jobs stay here while they run, even if you reload the page.</div>')
    steps = job.config.get("steps") or job.total or 0
    done = job.step or 0
    fraction = 1.0 if job.state == SUCCEEDED else (done / steps if steps else 0.0)
    word = STATE_WORDS.get(job.state, job.state)
    if job.state == RUNNING and job.cancel_requested:
        detail = "Stopping after the current step…"
    elif job.state == QUEUED:
        detail = f"#{position} in line" if position else "waiting for a worker"
    elif job.state == RUNNING and job.step is None:
        detail = "Starting: the worker is loading the models"
    elif job.state == RUNNING:
        parts = [f"step {done}/{steps}"]
        if rate:
            parts += [f"{rate:.2f} it/s", f"ETA {_duration((steps - done) / rate)}"]
        if job.loss is not None:
            parts.append(f"loss {job.loss:.4f}")
        detail = " · ".join(parts)
    elif job.state == SUCCEEDED:
        took = (job.finished_at or 0) - (job.started_at or job.created_at)
        detail = f"{steps} steps in {_duration(took)}"
    elif job.state == FAILED:
        detail = html.escape(job.error or "failed")
    else:
        detail = f"stopped at step {done}/{steps}" if job.step else "cancelled before it started"
    prompt = html.escape(str(job.config.get("prompts") or "image prompt"))
    size = f"{job.config.get('width')}×{job.config.get('height')}"
    return (
        f'<div class="vq-card vq-{job.state}" data-state="{job.state}" data-job="{job.id}">'
        f'<div class="vq-card-head"><span class="vq-pill vq-pill-{job.state}">{word}</span>'
        f'<span class="vq-job-id">job #{job.id} · {size} · seed {job.config.get("seed", 0)}</span></div>'
        f'<div class="vq-prompt">{prompt}</div>'
        f'<div class="vq-bar"><div style="width:{100 * fraction:.1f}%"></div></div>'
        f'<div class="vq-detail">{detail}</div></div>'
    )


def job_rows(jobs: list[Job], positions: dict[int, int]) -> list[list]:
    """Rows of the "my jobs" table."""
    rows = []
    for job in jobs:
        if job.state == QUEUED:
            status = f"#{positions[job.id]} in line" if job.id in positions else "queued"
        elif job.state == RUNNING:
            status = f"{job.step or 0}/{job.total or job.config.get('steps')}"
        else:
            status = STATE_WORDS.get(job.state, job.state).lower()
        prompt = str(job.config.get("prompts") or "image prompt")
        rows.append([job.id, status, prompt[:48] + ("…" if len(prompt) > 48 else ""),
                     f"{job.config.get('width')}×{job.config.get('height')}"])
    return rows


class FileCache:
    """Results and timelapses written once as files for the browser to download (Gradio serves files, not
    bytes); a job's outputs never change once it has succeeded."""

    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, job_id: int, name: str, data: bytes) -> str:
        path = self.folder / f"job-{job_id}" / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(path)

    def stem(self, job: Job) -> str:
        from generator import GenerationConfig
        from generator.output import output_name

        try:
            return f"vqclip-{job.id}-{output_name(GenerationConfig.from_dict(job.config))}"
        except Exception:  # a config the current version no longer reads (or whose upload is gone)
            return f"vqclip-{job.id}"

    def result(self, job: Job) -> str | None:
        """Path of the job's PNG (with its metadata), or None before it has one."""
        return self.write(job.id, f"{self.stem(job)}.png", job.result) if job.result else None

    def timelapse(self, job: Job) -> str | None:
        return self.write(job.id, f"{self.stem(job)}.mp4", job.timelapse) if job.timelapse else None

    def cached_result(self, job_id: int) -> str | None:
        """The PNG written earlier for this job, without reading the store."""
        folder = self.folder / f"job-{job_id}"
        found = sorted(folder.glob("*.png")) if folder.is_dir() else []
        return str(found[0]) if found else None
