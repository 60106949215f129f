"""Throw-away databases: PostgreSQL ones on 127.0.0.1, and narrowing ``database_url`` to SQLite."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

__all__ = ["POSTGRES_ADMIN_URL", "SQLITE_ONLY", "postgres_database"]

POSTGRES_ADMIN_URL = os.environ.get(
    "TASKAPP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: For a test that needs a migrated database of its own but not both backends (the database is a
#: side record there), e.g. cleanup recording its runs: ``database_url`` on SQLite only.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database's URL; the database is dropped (forcefully) on exit."""
    from sqlalchemy import create_engine, text

    from taskapp.db import engine

    name = f"taskapp_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
