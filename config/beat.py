"""celery beat schedule: nightly cleanup at ``TASKAPP_CLEANUP_HOUR`` (UTC, default 03:00).

Run exactly one beat per deployment. Beat has no leader election: two beats send every
entry twice. How:

- Start beat as its own process (``celery -A taskapp beat``), never as ``worker -B`` (every
  worker replica would then run a scheduler).
- Give it exactly one replica, and make deploys stop the old one before starting the new:
  docker-compose ``deploy: {replicas: 1}``; Kubernetes a Deployment with ``replicas: 1`` and
  ``strategy: {type: Recreate}``; ECS ``desiredCount: 1`` with
  ``minimumHealthyPercent: 0, maximumPercent: 100``; one ``beat:`` line in the Procfile
  with its process count kept at 1.
- Keep beat's schedule state (``--schedule``) on a writable path that survives restarts, so
  a restart does not re-send an entry it already sent.

Duplicates are still harmless for cleanup: ``cleanup.run`` is idempotent (a second run finds
nothing left to do), and ``expires`` drops a copy no worker picked up within the hour.
Reference: https://docs.celeryq.dev/en/stable/userguide/periodic-tasks.html#starting-the-scheduler
"""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

from config.settings import Settings

__all__ = ["build_beat_schedule"]


def build_beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The beat schedule for ``settings``."""
    return {
        # Nightly housekeeping: retention rules, storage, expired results and idempotency
        # records (config/retention.py).
        "cleanup-nightly": {
            "task": "cleanup.run",
            "schedule": crontab(hour=settings.cleanup_hour, minute=0),
            "options": {"expires": 3600},
        },
    }
