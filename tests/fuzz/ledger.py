"""Where fuzz tasks record each execution: one row per run, in the application database.

Kept apart from ``tests.fuzz.tasks`` so the harness can read runs without registering tasks in
its own process (only the worker subprocess imports the tasks, through ``--include``).
"""

from __future__ import annotations

import re
import time

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, func, insert, select

from taskapp.db import engine

__all__ = [
    "TOKEN",
    "fuzz_runs",
    "create_table",
    "record_run",
    "runs_since",
    "count_runs",
    "tokens_in",
]

#: Every generated message carries its token ``fz<32 hex>`` in its arguments and, as the UUID
#: spelling of the same hex, in its task id; one field broken at a time leaves one of the two.
TOKEN = re.compile(
    r"fz([0-9a-f]{32})|([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})"
)

metadata = MetaData()
fuzz_runs = Table(
    "fuzz_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("tokens", Text, nullable=False),  # space-separated hex tokens found in the request
    Column("task_name", String(200), nullable=False),
    Column("task_id", Text, nullable=False),  # repr() of the id, whatever its type
    Column("pid", Integer, nullable=False),
    Column("at", Float, nullable=False),
)


def tokens_in(text: str) -> set[str]:
    """The 32-hex tokens in ``text``, in either spelling."""
    found = set()
    for match in TOKEN.finditer(text):
        found.add(match.group(1) or "".join(match.groups()[1:]))
    return found


def create_table(url: str) -> None:
    metadata.create_all(engine(url))


def record_run(tokens: set[str], task_name: str, task_id: str, pid: int) -> None:
    """One row for one execution of a fuzz task."""
    with engine().begin() as conn:
        conn.execute(
            insert(fuzz_runs).values(
                tokens=" ".join(sorted(tokens)),
                task_name=task_name,
                task_id=task_id[:2000],
                pid=pid,
                at=time.time(),
            )
        )


def runs_since(url: str, since: float) -> list[dict[str, object]]:
    """Every run recorded at or after ``since`` (epoch seconds)."""
    with engine(url).connect() as conn:
        rows = conn.execute(select(fuzz_runs).where(fuzz_runs.c.at >= since))
        return [dict(row._mapping) for row in rows]


def count_runs(url: str, since: float) -> int:
    """How many runs were recorded at or after ``since``."""
    with engine(url).connect() as conn:
        query = select(func.count()).select_from(fuzz_runs).where(fuzz_runs.c.at >= since)
        return int(conn.execute(query).scalar_one())
