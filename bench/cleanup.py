"""Benchmark cleanup.run's batched deletes on SQLite and PostgreSQL.

Seeds ``--rows`` expired events (default 1,000,000) plus one fresh event in every eleven
(kept: the keyset scan has to step over them), runs the ``events`` retention rule and prints
rows deleted per second and the longest single transaction (target: under 1 s).

    uv run python bench/cleanup.py [--rows N] [--batch N] [--only sqlite|postgresql]

PostgreSQL: a scratch database is created on ``TASKAPP_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, func, select, text

from taskapp import db
from taskapp.cleanup.service import run_cleanup
from taskapp.sample import events

NOW = datetime(2024, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=90)
TARGET_TRANSACTION_S = 1.0
POSTGRES_ADMIN_URL = os.environ.get(
    "TASKAPP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def rows_to_seed(expired: int) -> Iterator[tuple[int, str, str, datetime]]:
    """``expired`` old events, with a fresh one after every ten."""
    ident = 0
    for i in range(expired):
        ident += 1
        yield ident, "view", '{"n": 1}', OLD + timedelta(seconds=i % 86400)
        if i % 10 == 9:
            ident += 1
            yield ident, "login", '{"n": 2}', NOW - timedelta(days=1)


@contextmanager
def sqlite_database() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="bench-cleanup-")
    url = f"sqlite:///{directory}/bench.db"
    db.upgrade(url)
    yield url
    db.engine(url).dispose()


def seed_sqlite(url: str, expired: int) -> None:
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    # SQLAlchemy stores SQLite date-times as 'YYYY-MM-DD HH:MM:SS.ffffff'.
    conn.executemany(
        "INSERT INTO events (id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
        ((i, k, p, t.strftime("%Y-%m-%d %H:%M:%S.%f")) for i, k, p, t in rows_to_seed(expired)),
    )
    conn.commit()
    conn.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"bench_cleanup_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        db.upgrade(url)
        yield url
    finally:
        db.engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed_postgres(url: str, expired: int) -> None:
    raw = db.engine(url).raw_connection()
    try:
        with raw.cursor() as cur:  # type: ignore[attr-defined]
            with cur.copy("COPY events (id, kind, payload, created_at) FROM STDIN") as copy:
                for row in rows_to_seed(expired):
                    copy.write_row(row)
            cur.execute("ANALYZE events")
        raw.commit()
    finally:
        raw.close()


def bench(label: str, url: str, seed: object, expired: int, batch: int) -> None:
    started = time.perf_counter()
    seed(url, expired)  # type: ignore[operator]
    seeded_s = time.perf_counter() - started
    report = run_cleanup(["events"], url=url, now=NOW, batch_size=batch)
    result = report["rules"]["events"]
    with db.engine(url).connect() as conn:
        left = conn.scalar(select(func.count()).select_from(events))
    rate = result["count"] / result["duration_s"]
    longest = result["longest_batch_s"]
    print(
        f"{label:10} seeded {expired:,} expired (+{expired // 10:,} fresh) in {seeded_s:.1f}s | "
        f"deleted {result['count']:,} in {result['duration_s']:.1f}s = {rate:,.0f} rows/s | "
        f"{result['batches']} batches of {batch} | longest transaction {longest:.3f}s "
        f"({longest / TARGET_TRANSACTION_S:.2f}x the 1 s target) | rows left {left:,}"
    )
    assert result["count"] == expired
    assert left == expired // 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only in (None, "sqlite"):
        with sqlite_database() as url:
            bench("sqlite", url, seed_sqlite, args.rows, args.batch)
    if args.only in (None, "postgresql"):
        with postgres_database() as url:
            bench("postgresql", url, seed_postgres, args.rows, args.batch)


if __name__ == "__main__":
    main()
