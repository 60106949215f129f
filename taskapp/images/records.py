"""The ``image_uploads`` table: status of each ``images.process_upload``, for the app to poll."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from taskapp.db import engine, metadata
from taskapp.errors import RetryableError

__all__ = [
    "image_uploads",
    "PENDING",
    "DONE",
    "FAILED",
    "mark_pending",
    "mark_done",
    "mark_failed",
    "upload_status",
]

PENDING, DONE, FAILED = "pending", "done", "failed"

image_uploads = Table(
    "image_uploads",
    metadata,
    Column("key", String(1024), primary_key=True),
    Column("status", String(16), nullable=False, index=True),
    Column("result_id", String(64)),
    Column("manifest", JSON),
    Column("analysis", JSON),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _save(key: str, values: dict[str, Any], url: str | None) -> None:
    """Insert or update the row of ``key`` (portable upsert: update, else insert)."""
    now = datetime.now(UTC)
    values = {**values, "updated_at": now}
    try:
        with engine(url).begin() as conn:
            stmt = update(image_uploads).where(image_uploads.c.key == key).values(**values)
            if conn.execute(stmt).rowcount:
                return
            try:
                with conn.begin_nested():
                    conn.execute(image_uploads.insert().values(key=key, created_at=now, **values))
            except IntegrityError:  # a concurrent first write won the insert
                conn.execute(stmt)
    except (OperationalError, InterfaceError) as exc:
        raise RetryableError(f"database unavailable while recording {key!r}: {exc.orig}") from None


def mark_pending(key: str, result_id: str | None, url: str | None = None) -> None:
    """``key`` is being processed; ``result_id`` is the Celery id of its recording callback."""
    _save(
        key,
        {
            "status": PENDING,
            "result_id": result_id,
            "manifest": None,
            "analysis": None,
            "error": None,
        },
        url,
    )


def mark_done(
    key: str, manifest: dict[str, Any], analysis: dict[str, Any], url: str | None = None
) -> None:
    """``key`` was processed: keep the thumbnail manifest and the analysis."""
    _save(key, {"status": DONE, "manifest": manifest, "analysis": analysis, "error": None}, url)


def mark_failed(key: str, error: str, url: str | None = None) -> None:
    """``key`` could not be processed, for the reason in ``error``."""
    _save(key, {"status": FAILED, "error": error[:2000]}, url)


def upload_status(key: str, url: str | None = None) -> dict[str, Any] | None:
    """The row of ``key`` as a dict, or None if it was never submitted."""
    with engine(url).connect() as conn:
        row = conn.execute(select(image_uploads).where(image_uploads.c.key == key)).first()
    return None if row is None else dict(row._mapping)
