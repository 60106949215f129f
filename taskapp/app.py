"""The Celery app and the task families it loads."""

from __future__ import annotations

from celery import Celery

__all__ = ["app", "FAMILY_PACKAGES"]

#: Packages whose ``tasks`` module registers a task family (missing ones are skipped).
FAMILY_PACKAGES = [
    "taskapp",
    "taskapp.email",
    "taskapp.images",
    "taskapp.cleanup",
    "taskapp.reports",
]

app = Celery("taskapp")
app.config_from_object("config.celery")
app.autodiscover_tasks(FAMILY_PACKAGES)
