"""celery beat schedule. Run exactly one beat process per deployment (see README)."""

from __future__ import annotations

from celery.schedules import crontab

__all__ = ["beat_schedule"]

beat_schedule = {
    # Nightly housekeeping: retention rules, storage, expired results and idempotency records.
    "cleanup-nightly": {
        "task": "cleanup.run",
        "schedule": crontab(hour=3, minute=0),
        "options": {"expires": 3600},
    },
}
