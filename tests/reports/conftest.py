"""Reports fixtures: the migrated session database, the bucket, and seeded sample orders."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from config.settings import Settings
from taskapp import db
from taskapp.sample import orders, seed
from taskapp.sqs.provision import ensure_bucket

#: The seed spreads orders over the 90 days before NOW (2025-01-01 .. 2025-03-31).
NOW = datetime(2025, 3, 31, 23, 0, tzinfo=UTC)
N_ORDERS = 600


@pytest.fixture(scope="session", autouse=True)
def session_db(settings: Settings) -> str:
    """The session database (the worker's default) carries every migration, reports' included."""
    db.upgrade(settings.database_url.get_secret_value())
    return settings.database_url.get_secret_value()


@pytest.fixture(scope="session")
def bucket(s3: Any, settings: Settings) -> str:
    ensure_bucket(s3, settings.bucket)
    return settings.bucket


@pytest.fixture
def orders_db(database_url: str) -> str:
    """A fresh SQLite or PostgreSQL database with N_ORDERS deterministic sample orders."""
    seed(database_url, n_orders=N_ORDERS, now=NOW)
    return database_url


@pytest.fixture
def app_db(orders_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``orders_db`` as the application database: tasks (and the in-process worker) use it."""
    monkeypatch.setenv("TASKAPP_DATABASE_URL", orders_db)
    yield orders_db


def order_count(url: str) -> int:
    with db.engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(orders)).scalar_one())


def s3_body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
