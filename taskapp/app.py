"""The Celery app and the task families it loads."""

from __future__ import annotations

from celery import Celery, signals

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


@signals.worker_init.connect
def _validate_queue_plan(**_: object) -> None:
    """Refuse to start a worker whose visibility timeout is shorter than a hard time limit."""
    import sys

    from config.settings import SettingError, load_settings
    from taskapp.sqs.provision import app_specs, effective_specs

    try:
        effective_specs(app_specs(app), load_settings())
    except SettingError as exc:
        # Celery logs and swallows exceptions raised by signal handlers; exit instead.
        print(f"taskapp: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
