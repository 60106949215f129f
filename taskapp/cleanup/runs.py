"""The ``cleanup_runs`` table: one row per real cleanup run, with per-rule counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    insert,
    update,
)

from taskapp.db import metadata

__all__ = ["cleanup_runs", "start_run", "finish_run"]

cleanup_runs = Table(
    "cleanup_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False, index=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("dry_run", Boolean, nullable=False, default=False),
    # running -> succeeded | failed; a run killed mid-way stays "running" until the next
    # run marks it "interrupted" (its committed batches stay done: the next run resumes).
    Column("status", String(16), nullable=False),
    Column("rules", JSON, nullable=True),
    Column("results", JSON, nullable=True),
    Column("total", Integer, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("error", Text, nullable=True),
)


def start_run(engine: Engine, started_at: datetime, names: list[str], stale: timedelta) -> int:
    """Insert a "running" row and mark runs older than ``stale`` still "running" interrupted."""
    with engine.begin() as conn:
        conn.execute(
            update(cleanup_runs)
            .where(cleanup_runs.c.status == "running")
            .where(cleanup_runs.c.started_at < started_at - stale)
            .values(status="interrupted")
        )
        row = conn.execute(
            insert(cleanup_runs)
            .values(started_at=started_at, dry_run=False, status="running", rules=names)
            .returning(cleanup_runs.c.id)
        )
        return int(row.scalar_one())


def finish_run(engine: Engine, run_id: int, status: str, report: dict[str, Any]) -> None:
    """Store the outcome of run ``run_id``."""
    with engine.begin() as conn:
        conn.execute(
            update(cleanup_runs)
            .where(cleanup_runs.c.id == run_id)
            .values(
                finished_at=datetime.now(UTC),
                status=status,
                results=report.get("rules"),
                total=report.get("total"),
                duration_s=report.get("duration_s"),
                error=report.get("error"),
            )
        )
