"""Shared fixtures: a PostgreSQL server for the tests, started by tests/services/postgres.sh when
VQCLIP_TEST_PG_URL is not set. If it cannot start, the tests that need it fail with the script's error."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

PG_SCRIPT = Path(__file__).parent / "services" / "postgres.sh"


def postgres_service(command: str) -> str:
    """Run tests/services/postgres.sh COMMAND; returns its stdout (the URL for start/restart)."""
    proc = subprocess.run(["bash", str(PG_SCRIPT), command], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"{PG_SCRIPT} {command} failed (exit {proc.returncode}):\n{proc.stderr}", pytrace=False)
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the test database: $VQCLIP_TEST_PG_URL, or the script's own server."""
    return os.environ.get("VQCLIP_TEST_PG_URL") or postgres_service("start").splitlines()[-1]


@pytest.fixture(scope="session")
def pg_control(pg_url):
    """postgres_service, for tests that stop or restart the server; only for the script's own server."""
    if pg_url != postgres_service("url"):
        pytest.skip("VQCLIP_TEST_PG_URL names a server that tests/services/postgres.sh does not manage")
    return postgres_service
