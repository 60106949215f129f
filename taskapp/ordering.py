"""Ordering guard for standard queues: an update older than what was applied is skipped.

SQS standard queues may deliver out of order, and a retried old update can arrive after a newer
one. A task called with ``entity=`` and ``entity_version=`` (``apply_async`` options, or headers
of those names) advances the entity's recorded version only forward; a task whose version is
older than the recorded one is skipped and its result state is ``STALE``. The same task may run
again at the same version (a retry after a failure).
"""

from __future__ import annotations

import time

from sqlalchemy import BigInteger, Column, Engine, Float, String, Table, and_, insert, or_, update
from sqlalchemy.exc import IntegrityError

from taskapp.db import metadata

__all__ = ["entity_versions", "advance", "STALE"]

STALE = "STALE"

entity_versions = Table(
    "entity_versions",
    metadata,
    Column("entity", String(300), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("task_id", String(155), nullable=False),
    Column("updated_at", Float, nullable=False),
)


def advance(engine: Engine, entity: str, version: int, task_id: str) -> bool:
    """Record ``version`` for ``entity`` unless a newer one was applied; False means stale."""
    table = entity_versions
    newer_or_retry = or_(
        table.c.version < version, and_(table.c.version == version, table.c.task_id == task_id)
    )
    values = {"version": version, "task_id": task_id, "updated_at": time.time()}
    for _ in range(2):  # a concurrent first insert turns our insert into an update
        with engine.begin() as conn:
            moved = conn.execute(
                update(table).where(table.c.entity == entity, newer_or_retry).values(values)
            ).rowcount
        if moved:
            return True
        try:
            with engine.begin() as conn:
                conn.execute(insert(table).values(entity=entity, **values))
            return True
        except IntegrityError:
            continue
    return False
