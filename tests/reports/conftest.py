"""Reports fixtures: seeded sample orders in a fresh database, alone or as the app's database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from taskapp import db
from taskapp.sample import orders, seed

#: The seed spreads orders over the 90 days before NOW (2025-01-01 .. 2025-03-31).
NOW = datetime(2025, 3, 31, 23, 0, tzinfo=UTC)
N_ORDERS = 600


@pytest.fixture
def orders_db(database_url: str) -> str:
    """A fresh SQLite or PostgreSQL database with N_ORDERS deterministic sample orders."""
    seed(database_url, n_orders=N_ORDERS, now=NOW)
    return database_url


@pytest.fixture
def app_db(orders_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``orders_db`` as the application database: tasks (and the in-process worker) use it."""
    monkeypatch.setenv("TASKAPP_DATABASE_URL", orders_db)
    return orders_db


def order_count(url: str) -> int:
    with db.engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(orders)).scalar_one())


def s3_body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
