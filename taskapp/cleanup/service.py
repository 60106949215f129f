"""One cleanup run: validate the rules, then three named steps: tables, storage, hygiene.

Every step is idempotent and commits as it goes, so a run that is killed, times out or fails
is simply run again. A real run is recorded in ``cleanup_runs``; a dry run changes nothing,
that table included, and only returns what it would touch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from time import perf_counter
from typing import Any

from sqlalchemy import Engine

from config.settings import Settings, load_settings
from taskapp import aws, db
from taskapp.cleanup.hygiene import apply_hygiene_rule
from taskapp.cleanup.purge import OnBatch, StepResult, apply_rule
from taskapp.cleanup.rules import RuleSet, load_rules, validate_rules
from taskapp.cleanup.runs import finish_run, start_run
from taskapp.cleanup.storage import apply_storage_rule

__all__ = ["RUN_TIME_LIMIT", "run_cleanup"]

log = logging.getLogger(__name__)

#: Hard time limit of ``cleanup.run``; a run still "running" after it was killed.
RUN_TIME_LIMIT = 3600


def run_cleanup(
    rules: Iterable[str] | str | None = None,
    dry_run: bool = False,
    *,
    url: str | Engine | None = None,
    now: datetime | None = None,
    batch_size: int | None = None,
    on_batch: OnBatch | None = None,
    s3: Any = None,
) -> dict[str, Any]:
    """Apply the configured retention rules (``rules`` names a subset); return the counts.

    ``url`` is the database (default: ``TASKAPP_DATABASE_URL``); ``now`` fixes the clock the
    ages count from; ``s3`` is the client for storage rules (default: from settings).
    Raises ``RuleError`` (a ``PermanentError``) naming the rule for any bad rule, before
    touching anything.
    """
    settings = load_settings()
    engine = url if isinstance(url, Engine) else db.engine(url)
    selected = validate_rules(engine, load_rules(settings).select(rules))
    now = (now or datetime.now(UTC)).astimezone(UTC)
    report: dict[str, Any] = {"dry_run": dry_run, "started_at": now.isoformat(), "rules": {}}
    run_id = None
    if not dry_run:
        run_id = start_run(engine, now, selected.names, timedelta(seconds=RUN_TIME_LIMIT))
    report["run_id"] = run_id
    began, status = perf_counter(), "failed"
    try:
        for name, result in _steps(
            engine, selected, settings, now, dry_run, batch_size, on_batch, s3
        ):
            report["rules"][name] = result.as_dict()
        status = "succeeded"
    except BaseException as exc:
        # Recorded, then raised again: the run row says why it stopped.
        report["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report["total"] = sum(r["count"] for r in report["rules"].values())
        report["duration_s"] = round(perf_counter() - began, 4)
        if run_id is not None:
            finish_run(engine, run_id, status, report)
        log.info(
            "cleanup.run run_id=%s dry_run=%s status=%s total=%d seconds=%.3f",
            run_id,
            dry_run,
            status,
            report["total"],
            report["duration_s"],
        )
    return report


def _steps(
    engine: Engine,
    rules: RuleSet,
    settings: Settings,
    now: datetime,
    dry_run: bool,
    batch_size: int | None,
    on_batch: OnBatch | None,
    s3: Any,
) -> Iterable[tuple[str, StepResult]]:
    """Each rule's result, in order: tables, then storage, then platform hygiene."""
    batch = batch_size or settings.cleanup_batch_size
    for rule in rules.tables:
        size = rule.batch_size or batch
        yield (
            rule.name,
            apply_rule(engine, rule, now, dry_run=dry_run, batch_size=size, on_batch=on_batch),
        )
    if rules.storage:
        s3 = s3 or aws.client("s3", settings)
        for storage_rule in rules.storage:
            yield (
                storage_rule.name,
                apply_storage_rule(s3, settings.bucket, storage_rule, now, dry_run=dry_run),
            )
    for hygiene_rule in rules.hygiene:
        size = getattr(hygiene_rule, "batch_size", None) or batch
        yield (
            hygiene_rule.name,
            apply_hygiene_rule(
                engine, hygiene_rule, now, dry_run=dry_run, batch_size=size, on_batch=on_batch
            ),
        )
