"""The durable job queue: `open_store()` gives the JobStore every part of the service shares.

    from app.jobs import open_store, QUEUED
    store = open_store()            # SQLite at $VQCLIP_DATA_DIR/jobs.db
    store = open_store("postgresql://vqclip:pw@db-host/vqclip")   # read as postgresql+psycopg://
"""
from __future__ import annotations

import os
from pathlib import Path

from .sql import SqlJobStore
from .store import (CANCELLED, FAILED, FINAL_STATES, QUEUED, RUNNING, STATES, SUCCEEDED, Job, JobError,
                    JobStore)

__all__ = ["open_store", "data_dir", "normalise_url", "Job", "JobStore", "SqlJobStore", "JobError",
           "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "STATES", "FINAL_STATES"]


def data_dir() -> Path:
    """Where the service keeps its data: $VQCLIP_DATA_DIR, else `data/` of a source checkout, else
    ~/.local/share/vqclip."""
    if os.environ.get("VQCLIP_DATA_DIR"):
        return Path(os.environ["VQCLIP_DATA_DIR"]).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file():
        return checkout / "data"
    return Path.home() / ".local" / "share" / "vqclip"


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` URLs use the psycopg 3 driver the project installs."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def open_store(url: str | None = None) -> JobStore:
    """The job store at a SQLAlchemy URL (sqlite:///path, postgresql://... or postgresql+psycopg://...);
    None means the SQLite file jobs.db in data_dir(), created when missing."""
    if url is not None:
        url = normalise_url(url)
    else:
        folder = data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{folder / 'jobs.db'}"
    return SqlJobStore(url)
