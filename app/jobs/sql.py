"""`SqlJobStore`: the JobStore on SQLAlchemy Core, one implementation for SQLite and PostgreSQL.

The two databases differ only in connection setup (SQLite: WAL, busy timeout, foreign keys, and every write
transaction opened with BEGIN IMMEDIATE so writers queue up instead of deadlocking) and in how claim locks
its row (PostgreSQL: SELECT ... FOR UPDATE SKIP LOCKED; SQLite ignores that clause and relies on holding
the database's single write lock).
"""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from .schema import BLOBS, LIGHT_COLUMNS, MIGRATIONS, Migration, epoch_now, jobs, migrate
from .store import CANCELLED, FAILED, QUEUED, RUNNING, STATES, SUCCEEDED, Job, JobError, JobStore

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Retry budget for idempotent operations when the database is unreachable (e.g. PostgreSQL restarting).
RECONNECT_SECONDS = 20.0

# What a job loses when it goes back in line.
_BACK_IN_LINE = dict(state=QUEUED, worker_id=None, lease_expires_at=None, started_at=None,
                     step=None, total=None, loss=None, preview=None)


def _with_retries(fn, *args, **kwargs):
    """Call fn, repeating it on OperationalError (connection lost, server restarting, database locked)
    with backoff for up to RECONNECT_SECONDS; the pool's pre-ping replaces dead connections meanwhile.
    Only for idempotent operations."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    delay = 0.05
    while True:
        try:
            return fn(*args, **kwargs)
        except OperationalError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _retrying(method):
    """Decorator: the method is idempotent, run it with _with_retries."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        return _with_retries(method, self, *args, **kwargs)

    return wrapper


class SqlJobStore(JobStore):
    """JobStore on a SQLAlchemy URL: `sqlite:///path/jobs.db` or `postgresql+psycopg://user:pw@host/db`.

    Args:
        url: the database; it is created (SQLite file) and migrated to the current schema on open.
        migrations: the schema steps to apply (tests pass extra steps to exercise an upgrade).
    """

    def __init__(self, url: str | sa.URL, migrations: list[Migration] = MIGRATIONS):
        url = sa.make_url(url)
        self.url = url
        if url.get_backend_name() == "sqlite":
            self.engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        elif url.get_backend_name() == "postgresql":
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        else:
            raise JobError(f"unsupported job database {url.get_backend_name()!r}; use sqlite or postgresql")
        # Writes take SQLite's write lock up front; on PostgreSQL the option is ignored.
        self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self.schema_version = _with_retries(migrate, self._writer, migrations)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- submitting and watching -------------------------------------------------------------------------

    def submit(self, config: dict[str, Any], priority: int = 0, owner: str | None = None,
               max_attempts: int = 3) -> int:
        # Not retried: a commit whose acknowledgement was lost would queue the job twice.
        with self._write() as conn:
            return _insert(conn, config, priority, owner, max_attempts)

    @_retrying
    def get(self, job_id: int) -> Job | None:
        with self._read() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return _job(row) if row else None

    @_retrying
    def list(self, state: str | None = None, limit: int = 50, offset: int = 0,
             owner: str | None = None) -> list[Job]:
        query = sa.select(*LIGHT_COLUMNS).order_by(jobs.c.id.desc()).limit(limit).offset(offset)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self._read() as conn:
            return [_job(row) for row in conn.execute(query).mappings()]

    @_retrying
    def position(self, job_id: int) -> int | None:
        with self._read() as conn:
            me = conn.execute(sa.select(jobs.c.priority).where(
                jobs.c.id == job_id, jobs.c.state == QUEUED)).first()
            if me is None:
                return None
            ahead = conn.execute(sa.select(sa.func.count()).where(
                jobs.c.state == QUEUED,
                sa.or_(jobs.c.priority > me.priority,
                       sa.and_(jobs.c.priority == me.priority, jobs.c.id < job_id)))).scalar()
        return ahead + 1

    @_retrying
    def counts(self) -> dict[str, int]:
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        with self._read() as conn:
            found = dict(conn.execute(query).all())
        return {state: found.get(state, 0) for state in STATES}

    @_retrying
    def cancel(self, job_id: int) -> bool:
        with self._write() as conn:
            now = _now(conn)
            if _update(conn, job_id, jobs.c.state == QUEUED, state=CANCELLED, finished_at=now):
                return True
            return _update(conn, job_id, jobs.c.state == RUNNING, cancel_requested=True)

    @_retrying
    def retry(self, job_id: int) -> int:
        with self._write() as conn:
            old = conn.execute(sa.select(*LIGHT_COLUMNS).where(jobs.c.id == job_id)).first()
            if old is None:
                raise JobError(f"no job {job_id}")
            if old.state not in (FAILED, CANCELLED):
                raise JobError(f"job {job_id} is {old.state}; only failed or cancelled jobs can be retried")
            return _insert(conn, old.config, old.priority, old.owner, old.max_attempts)

    # -- worker side -------------------------------------------------------------------------------------

    @_retrying
    def claim(self, worker_id: str, lease_seconds: float,
              match: Callable[[dict[str, Any]], bool] | None = None) -> Job | None:
        # Retried although not idempotent: a claim whose acknowledgement was lost leaves a job leased to
        # this worker, which the lease expiry hands back (counting an attempt).
        with self._write() as conn:
            now = _now(conn)
            _expire_leases(conn, now)
            line = (sa.select(jobs.c.id, jobs.c.config).where(jobs.c.state == QUEUED)
                    .order_by(jobs.c.priority.desc(), jobs.c.id).limit(1)
                    .with_for_update(skip_locked=True))
            head = conn.execute(line).first()
            if head is None or (match is not None and not match(head.config)):
                return None
            job_id = head.id
            if not _update(conn, job_id, jobs.c.state == QUEUED, state=RUNNING, worker_id=worker_id,
                           started_at=now, lease_expires_at=now + lease_seconds):
                return None  # cannot happen while the row is locked; never hand out a job twice
            return _job(conn.execute(sa.select(*LIGHT_COLUMNS).where(jobs.c.id == job_id)).mappings().one())

    @_retrying
    def renew(self, job_id: int, worker_id: str, lease_seconds: float) -> bool:
        with self._write() as conn:
            return _update(conn, job_id, _held_by(worker_id), ~jobs.c.cancel_requested,
                           lease_expires_at=epoch_now() + lease_seconds)

    @_retrying
    def progress(self, job_id: int, worker_id: str, step: int, total: int, loss: float | None,
                 preview: bytes | None = None) -> bool:
        values: dict[str, Any] = dict(step=step, total=total, loss=loss)
        if preview is not None:
            values["preview"] = preview
        with self._write() as conn:
            return _update(conn, job_id, _held_by(worker_id), **values)

    @_retrying
    def finish(self, job_id: int, worker_id: str, result_png: bytes, timelapse: bytes | None = None) -> bool:
        return self._end(job_id, worker_id, SUCCEEDED, result=result_png, timelapse=timelapse)

    @_retrying
    def fail(self, job_id: int, worker_id: str, message: str) -> bool:
        return self._end(job_id, worker_id, FAILED, error=message)

    @_retrying
    def mark_cancelled(self, job_id: int, worker_id: str) -> bool:
        return self._end(job_id, worker_id, CANCELLED)

    @_retrying
    def release(self, job_id: int, worker_id: str) -> bool:
        with self._write() as conn:
            if _update(conn, job_id, _held_by(worker_id), jobs.c.cancel_requested,
                       state=CANCELLED, lease_expires_at=None, finished_at=epoch_now()):
                return True
            return _update(conn, job_id, _held_by(worker_id), **_BACK_IN_LINE)

    def _end(self, job_id: int, worker_id: str, state: str, **values: Any) -> bool:
        """Move a held job to a final state; True again if this worker already did exactly that."""
        with self._write() as conn:
            if _update(conn, job_id, _held_by(worker_id), state=state, lease_expires_at=None,
                       finished_at=epoch_now(), **values):
                return True
            done = conn.execute(sa.select(jobs.c.state, jobs.c.worker_id).where(jobs.c.id == job_id)).first()
            return done is not None and tuple(done) == (state, worker_id)


def _now(conn: sa.Connection) -> float:
    return conn.execute(sa.select(epoch_now())).scalar()


def _held_by(worker_id: str):
    return sa.and_(jobs.c.state == RUNNING, jobs.c.worker_id == worker_id)


def _update(conn: sa.Connection, job_id: int, *where: Any, **values: Any) -> bool:
    """UPDATE one job when the conditions hold; True if it did."""
    return conn.execute(jobs.update().where(jobs.c.id == job_id, *where).values(**values)).rowcount == 1


def _insert(conn: sa.Connection, config: dict[str, Any], priority: int, owner: str | None,
            max_attempts: int) -> int:
    row = dict(state=QUEUED, config=config, priority=priority, owner=owner, created_at=epoch_now(),
               attempts=0, max_attempts=max_attempts, cancel_requested=False)
    return conn.execute(jobs.insert().values(**row).returning(jobs.c.id)).scalar_one()


def _expire_leases(conn: sa.Connection, now: float) -> None:
    """Put jobs of lost workers back in line, failing those lost max_attempts times (or cancelling them
    when a cancel was pending). Row conditions are re-checked under PostgreSQL's row locks, so two claimers
    never count the same loss twice."""
    expired = sa.and_(jobs.c.state == RUNNING, jobs.c.lease_expires_at < now)
    if conn.execute(sa.select(jobs.c.id).where(expired).limit(1)).first() is None:
        return  # the usual case: one read instead of three writes
    lost = jobs.c.attempts + 1
    conn.execute(jobs.update().where(expired, jobs.c.cancel_requested).values(
        state=CANCELLED, lease_expires_at=None, finished_at=now))
    conn.execute(jobs.update().where(expired, lost >= jobs.c.max_attempts).values(
        state=FAILED, attempts=lost, lease_expires_at=None, finished_at=now,
        error=sa.literal("worker lost ") + sa.cast(lost, sa.String) + " times (lease expired)"))
    conn.execute(jobs.update().where(expired).values(attempts=lost, **_BACK_IN_LINE))


def _job(row: Any) -> Job:
    fields = dict(row)
    for name in BLOBS:
        if fields.get(name) is not None:
            fields[name] = bytes(fields[name])
    return Job(**fields)


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the driver's own BEGINs are replaced by _sqlite_begin
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
    cursor.execute("PRAGMA synchronous = NORMAL")  # durable across process crashes; WAL keeps it consistent
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")
