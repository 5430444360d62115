"""A fresh, empty job database per test, on SQLite and on PostgreSQL (one schema per test)."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa


@pytest.fixture
def pg_store_url(pg_url) -> str:
    """URL of an empty PostgreSQL schema, dropped after the test."""
    base = sa.make_url(pg_url)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, pool_pre_ping=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """URL of an empty job database; tests open as many stores on it as they need."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("pg_store_url")
