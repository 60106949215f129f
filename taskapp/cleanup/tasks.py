"""Cleanup tasks: the Celery-facing edge. The work lives in taskapp.cleanup.service."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.signals import beat_init, worker_ready
from sqlalchemy.exc import SQLAlchemyError

from taskapp import db
from taskapp.app import app
from taskapp.cleanup import service
from taskapp.cleanup.rules import load_rules, validate_rules
from taskapp.errors import PermanentError
from taskapp.retry import retry_policy

__all__ = ["run_cleanup"]

log = logging.getLogger(__name__)


@app.task(
    name="cleanup.run",  # routed to the cleanup queue by its "cleanup." prefix
    bind=True,
    # Long tables take long; every batch commits, so a run stopped by the limit resumes.
    soft_time_limit=service.RUN_TIME_LIMIT - 60,
    time_limit=service.RUN_TIME_LIMIT,
    **retry_policy(backoff=60, backoff_max=1800, max_retries=3),
)
def run_cleanup(
    self: Task[..., Any], rules: list[str] | str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Apply the retention rules (all, or those named); return per-rule counts and duration."""
    return service.run_cleanup(rules, dry_run, on_batch=_progress(self))


def _progress(task: Task[..., Any]) -> Any:
    """Report PROGRESS (rule, count) through the task state at most once a second."""
    last = 0.0

    def report(rule: str, count: int) -> None:
        nonlocal last
        if task.request.id is None or time.monotonic() - last < 1:
            return
        last = time.monotonic()
        task.update_state(state="PROGRESS", meta={"rule": rule, "count": count})

    return report


@worker_ready.connect
@beat_init.connect
def _validate_at_startup(sender: Any = None, **_: Any) -> None:
    """Say at start-up, not at 03:00, that a rule names a table or column that is not there.

    Logged rather than raised: Celery signals swallow errors, and one bad rule must not stop
    a worker that serves other families. ``taskapp cleanup validate`` exits non-zero instead.
    """
    try:
        rules = validate_rules(db.engine(), load_rules())
    except PermanentError as exc:
        log.error("cleanup.invalid_rules error=%s", exc)
    except SQLAlchemyError as exc:
        log.warning("cleanup.rules_unchecked reason=database_unavailable error=%s", type(exc))
    else:
        log.info("cleanup.rules_valid rules=%s", ",".join(rules.names))
