"""The job store's tables, one definition for SQLite and PostgreSQL, and their versioned migrations.

`migrate(engine)` runs at every open: it applies, in order and each in its own transaction, the entries of
MIGRATIONS that the database has not seen, and records the version in `schema_version`. To change the
schema, append a function to MIGRATIONS (never edit a released one) and update the `jobs` table below.
"""
from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles

from generator.errors import VqclipError

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("owner", sa.String(200)),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("step", sa.Integer),
    sa.Column("total", sa.Integer),
    sa.Column("loss", sa.Double),
    sa.Column("error", sa.Text),
    sa.Column("preview", sa.LargeBinary),
    sa.Column("result", sa.LargeBinary),
    sa.Column("timelapse", sa.LargeBinary),
    # claim scans queued jobs by priority then id; the UI lists by state or owner, newest first
    sa.Index("jobs_line", "state", sa.desc("priority"), "id"),
    sa.Index("jobs_owner", "owner", "id"),
    sqlite_autoincrement=True,  # never reuse an id, even of a deleted job
)

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)

BLOBS = ("preview", "result", "timelapse")
LIGHT_COLUMNS = [c for c in jobs.c if c.name not in BLOBS]


class epoch_now(sa.sql.functions.FunctionElement):
    """Seconds since the epoch by the database server's clock, so that leases of workers on different
    machines are compared on one clock."""

    type = sa.Double()
    inherit_cache = True


@compiles(epoch_now, "sqlite")
def _epoch_now_sqlite(element, compiler, **kw):
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(epoch_now, "postgresql")
def _epoch_now_postgresql(element, compiler, **kw):
    return "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"


def _v1_create_jobs(conn: sa.Connection) -> None:
    """Version 1: the jobs table. While this is the only version, the live `jobs` table above *is* the v1
    shape; the first later migration must freeze a copy of it here, or a fresh database gets v2's columns
    from this step and v2's ALTER fails (loudly, in every test)."""
    jobs.create(conn)


Migration = Callable[[sa.Connection], None]
MIGRATIONS: list[Migration] = [_v1_create_jobs]


class SchemaError(VqclipError):
    """The database was written by a newer vqclip than this one."""


def current_version(conn: sa.Connection) -> int:
    return conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def migrate(engine: sa.Engine, migrations: list[Migration] = MIGRATIONS) -> int:
    """Bring the database up to len(migrations), keeping its jobs; returns the version.

    Safe when several processes open a fresh database at once: each step runs under a write lock
    (SQLite: BEGIN IMMEDIATE on the engine given; PostgreSQL: a transaction-scoped advisory lock)."""
    with engine.begin() as conn:
        _lock(conn)
        schema_version.create(conn, checkfirst=True)
    while True:
        with engine.begin() as conn:
            _lock(conn)
            version = current_version(conn)
            if version > len(migrations):
                raise SchemaError(f"job database schema version {version} is newer than this vqclip "
                                  f"understands ({len(migrations)}); upgrade vqclip")
            if version == len(migrations):
                return version
            migrations[version](conn)
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(version=version + 1))


def _lock(conn: sa.Connection) -> None:
    if conn.dialect.name == "postgresql":
        # One lock per schema, so that tests in separate schemas do not wait for each other.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('vqclip.jobs.' || current_schema()))"))
