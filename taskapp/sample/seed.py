"""Deterministic sample data for the demo business, including rows old enough to expire."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, delete

from taskapp import db
from taskapp.sample.models import REGIONS, customers, events, orders
from taskapp.sample.schema import install

__all__ = ["seed", "EVENT_KINDS"]

EVENT_KINDS = ("login", "view", "checkout", "refund")
_CHUNK = 10_000


def seed(
    engine: Engine | str | None,
    n_orders: int = 1000,
    now: datetime | None = None,
    n_events: int | None = None,
) -> dict[str, int]:
    """Create the sample tables if need be and fill them with fixed data; return rows per table.

    Shape (the same for the same arguments): one customer per 20 orders (at least 8), a
    quarter of them inactive for over a year; orders spread over the last 90 days across
    ``REGIONS``; ``n_events`` (default ``n_orders``) events over the last 60 days, so about
    half are older than 30 days.
    """
    eng = engine if isinstance(engine, Engine) else db.engine(engine)
    install(eng.url.render_as_string(hide_password=False))
    now = (now or datetime.now(UTC)).astimezone(UTC)
    n_events = n_orders if n_events is None else n_events
    n_customers = max(8, n_orders // 20)
    rng = random.Random(20240607)
    people = list(_customers(rng, n_customers, now))
    active = [c for c in people if c["last_active_at"] > now - timedelta(days=365)]
    with eng.begin() as conn:
        for table in (orders, events, customers):
            conn.execute(delete(table))
        _insert(conn, customers, iter(people))
        _insert(conn, orders, _orders(rng, n_orders, active, now))
        _insert(conn, events, _events(rng, n_events, now))
    return {"customers": n_customers, "orders": n_orders, "events": n_events}


def _insert(conn: Any, table: Table, rows: Iterator[dict[str, Any]]) -> None:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            conn.execute(table.insert(), chunk)
            chunk = []
    if chunk:
        conn.execute(table.insert(), chunk)


def _customers(rng: random.Random, n: int, now: datetime) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        created = now - timedelta(days=400 + rng.randrange(400))
        inactive = i % 4 == 0  # every fourth customer went quiet more than a year ago
        idle_days = 366 + rng.randrange(30) if inactive else rng.randrange(90)
        yield {
            "id": i,
            "name": f"Customer {i:05d}",
            "email": f"customer{i}@example.com",
            "region": REGIONS[rng.randrange(len(REGIONS))],
            "created_at": created,
            "last_active_at": max(created, now - timedelta(days=idle_days)),
        }


def _orders(
    rng: random.Random, n: int, active: list[dict[str, Any]], now: datetime
) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        buyer = active[rng.randrange(len(active))]
        yield {
            "id": i,
            "customer_id": buyer["id"],
            "region": buyer["region"],
            "amount_cents": 500 + rng.randrange(49_500),
            "created_at": now - timedelta(seconds=rng.randrange(90 * 86400)),
        }


def _events(rng: random.Random, n: int, now: datetime) -> Iterator[dict[str, Any]]:
    for i in range(1, n + 1):
        yield {
            "id": i,
            "kind": EVENT_KINDS[rng.randrange(len(EVENT_KINDS))],
            "payload": {"n": i},
            "created_at": now - timedelta(seconds=rng.randrange(60 * 86400)),
        }
