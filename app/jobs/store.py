"""The job store interface: a durable queue of generation jobs shared by the web UI, the CLI and workers.

`JobStore` is the small interface the rest of `app/` programs against; `app.jobs.sql.SqlJobStore` implements
it on SQLite and PostgreSQL, and `tests/app/test_job_store.py` is the contract both must pass.

Life of a job::

    submit -> QUEUED -> claim -> RUNNING -> finish -> SUCCEEDED
                 ^                 |  |---> fail ----> FAILED
                 |  release,       |  '---> cancel + mark_cancelled -> CANCELLED
                 '- lease expired -'
    cancel on a QUEUED job -> CANCELLED;  retry(FAILED or CANCELLED job) -> a new QUEUED job

A worker holds a claimed job through a lease: it calls `renew` well before the lease runs out. When a worker
dies its lease expires, and the next `claim` puts the job back in line, counting one attempt; a job whose
worker was lost `max_attempts` times fails. Every time is seconds since the epoch by the database's clock,
so workers on several machines agree about leases.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from generator.errors import VqclipError

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)


class JobError(VqclipError):
    """A job does not exist or is in the wrong state for the request (e.g. retrying a running job)."""


@dataclass
class Job:
    """One generation job. Listings leave the three image/video fields as None."""

    id: int
    state: str  # one of STATES
    config: dict[str, Any]  # GenerationConfig.to_dict(); opaque to the store
    priority: int  # higher runs first; ties run oldest first
    owner: str | None  # who submitted it, for per-user limits
    created_at: float
    started_at: float | None  # set by claim
    finished_at: float | None  # set on reaching a final state
    attempts: int  # runs that ended with the worker lost (lease expired)
    max_attempts: int  # fail the job once attempts reaches this
    worker_id: str | None  # who holds it while RUNNING; who finished it after
    lease_expires_at: float | None
    cancel_requested: bool
    step: int | None  # progress reported by the worker
    total: int | None
    loss: float | None
    error: str | None  # why it failed
    preview: bytes | None = None  # latest preview, PNG
    result: bytes | None = None  # final image, PNG
    timelapse: bytes | None = None  # optional MP4 of the optimisation

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES


class JobStore:
    """A durable, multi-process job queue. Subclasses implement every method; all are safe to call from
    several threads and processes at once.

    Methods that a worker calls take its `worker_id` and change nothing (returning False) unless that worker
    still holds the job, so a worker that lost its lease cannot overwrite the job's new owner.
    """

    # -- submitting and watching -------------------------------------------------------------------------

    def submit(self, config: dict[str, Any], priority: int = 0, owner: str | None = None,
               max_attempts: int = 3) -> int:
        """Queue a job and return its id.

        Args:
            config: the generation settings as JSON-able data (`GenerationConfig.to_dict()`).
            priority: higher runs first; jobs of equal priority run in submission order.
            owner: user name, kept for listing and per-user limits.
            max_attempts: how many lost workers the job survives before it fails.
        """
        raise NotImplementedError

    def get(self, job_id: int) -> Job | None:
        """The job with everything in it (preview, result, timelapse), or None when there is none."""
        raise NotImplementedError

    def list(self, state: str | None = None, limit: int = 50, offset: int = 0,
             owner: str | None = None) -> list[Job]:
        """Jobs newest first, optionally of one state and/or one owner, without their images."""
        raise NotImplementedError

    def position(self, job_id: int) -> int | None:
        """Place in line of a QUEUED job (1 = the next one claimed), or None when it is not queued."""
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state, every state present."""
        raise NotImplementedError

    def cancel(self, job_id: int) -> bool:
        """Cancel a job: a QUEUED one becomes CANCELLED at once; a RUNNING one gets `cancel_requested`,
        its worker sees `renew` return False and calls `mark_cancelled`. False when the job is unknown or
        already final."""
        raise NotImplementedError

    def retry(self, job_id: int) -> int:
        """Queue a FAILED or CANCELLED job again as a new job (same config, priority, owner and
        max_attempts) and return the new id; the old job stays as it was, as history.
        Raises JobError for an unknown job or one in another state."""
        raise NotImplementedError

    # -- worker side -------------------------------------------------------------------------------------

    def claim(self, worker_id: str, lease_seconds: float,
              match: Callable[[dict[str, Any]], bool] | None = None) -> Job | None:
        """Atomically take the next job (highest priority, then oldest) and mark it RUNNING for this worker
        until the lease expires; None when nothing is queued.

        With `match`, take the next job only when match(its config) is true, and leave it queued (None)
        otherwise: a worker filling a batch takes compatible jobs in turn and never jumps the line.

        First puts back in line the RUNNING jobs whose lease expired (attempts + 1), failing those whose
        attempts reached max_attempts with "worker lost N times (lease expired)".
        """
        raise NotImplementedError

    def renew(self, job_id: int, worker_id: str, lease_seconds: float) -> bool:
        """Extend the lease to now + lease_seconds. False when the worker no longer holds the job or a
        cancel was requested: the worker must then stop working on it."""
        raise NotImplementedError

    def progress(self, job_id: int, worker_id: str, step: int, total: int, loss: float | None,
                 preview: bytes | None = None) -> bool:
        """Record progress and, when given, the latest preview PNG. False when the worker lost the job."""
        raise NotImplementedError

    def finish(self, job_id: int, worker_id: str, result_png: bytes, timelapse: bytes | None = None) -> bool:
        """Store the result and mark the job SUCCEEDED in one transaction. Idempotent: repeating it returns
        True without rewriting. False (and nothing written) when another worker holds or finished it.
        A result wins over a cancel requested while the last step ran."""
        raise NotImplementedError

    def fail(self, job_id: int, worker_id: str, message: str) -> bool:
        """Mark a held job FAILED with a message for the user. Idempotent like finish."""
        raise NotImplementedError

    def mark_cancelled(self, job_id: int, worker_id: str) -> bool:
        """The worker stopped a job whose cancel was requested: mark it CANCELLED. Idempotent like finish."""
        raise NotImplementedError

    def release(self, job_id: int, worker_id: str) -> bool:
        """Give a held job back to the queue without counting an attempt (graceful worker shutdown); its
        progress is cleared. A job whose cancel was requested becomes CANCELLED instead."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
