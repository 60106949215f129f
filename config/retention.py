"""Declarative retention rules: what ``cleanup.run`` removes or anonymizes, and when.

Three lists, each entry a plain dict that ``taskapp.cleanup.rules`` validates:

- ``tables``: rows of application tables. Keys: ``name``, ``table``, ``timestamp`` (column),
  one of ``max_age_days``/``max_age_hours``/``max_age_seconds``, ``action`` (``delete`` or
  ``anonymize``), ``replace`` (anonymize only: column -> value; ``null`` sets NULL and ``{id}``
  in a string is replaced by the row's primary key). Optional: ``where`` (column -> value the
  rows must equal), ``timestamp_format`` (``datetime``, the default, or ``epoch`` seconds),
  ``batch_size``, and ``optional`` (skip, with a log line, when the table does not exist).
- ``storage``: S3 objects. Keys: ``name``, ``prefix``, and either ``max_age_hours`` (delete
  objects older than that) or ``orphaned_by`` (the user-metadata key naming each object's
  source; delete the object when its source is gone) with ``min_age_hours``.
- ``hygiene``: platform tables (task results, idempotency records), shaped like ``tables``,
  and sweepers: ``{"name", "sweeper": "package.module:function", "optional"}``, where
  ``function(dry_run: bool) -> int`` removes (or only counts) what crashed processes left
  behind, such as per-process event queues.

``TASKAPP_RETENTION_RULES`` may name a JSON or TOML file holding any of the three lists; each
list it holds replaces the default list of the same name.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from config.settings import SettingError, Settings, load_settings

__all__ = ["SECTIONS", "default_rules", "retention_config"]

SECTIONS = ("tables", "storage", "hygiene")


def default_rules(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The rules this application ships with: storage and the platform's own tables."""
    results_age = settings.result_expires
    return {
        # Application tables: none by default. The demo business's rules are the demo's own
        # (taskapp/sample/retention.toml); a deployment lists its tables in
        # TASKAPP_RETENTION_RULES.
        "tables": [],
        "storage": [
            # Uploads that never became an image job, and report files past their link's life.
            {"name": "tmp-uploads", "prefix": "tmp/", "max_age_hours": 24},
            {"name": "expired-reports", "prefix": "reports/", "max_age_hours": 7 * 24},
            # Image variants; removed once the object named by their x-amz-meta-source-key is
            # gone. The hour of grace spares a variant whose source is being replaced now.
            {
                "name": "orphaned-variants",
                "prefix": "thumbnails/",
                "orphaned_by": "source-key",
                "min_age_hours": 1,
            },
        ],
        "hygiene": [
            # Celery's database result backend; the tables appear with the first result.
            _platform("task-results", "celery_taskmeta", "date_done", results_age),
            _platform("group-results", "celery_tasksetmeta", "date_done", results_age),
            # Task runtimes behind the task_activity report live as long as the results.
            _platform("task-runtimes", "reports_task_runs", "finished_at", results_age),
            # Idempotency keys keep a task's stored result, so they live as long as results;
            # only finished ones: a running key's lease belongs to taskapp.idempotency.
            {
                **_platform("idempotency-records", "idempotency_keys", "updated_at", results_age),
                "timestamp_format": "epoch",
                "where": {"state": "done"},
            },
            # Per-process event/reply queues of crashed workers, Flower, inspect calls.
            {
                "name": "monitoring-queues",
                "sweeper": "taskapp.cleanup.hygiene:sweep_monitoring_queues",
                "optional": True,
            },
        ],
    }


def _platform(name: str, table: str, column: str, seconds: int) -> dict[str, Any]:
    return {
        "name": name,
        "table": table,
        "timestamp": column,
        "max_age_seconds": seconds,
        "action": "delete",
        "optional": True,
    }


def retention_config(settings: Settings | None = None) -> dict[str, list[dict[str, Any]]]:
    """The defaults, with each list found in ``TASKAPP_RETENTION_RULES`` replacing its own."""
    settings = settings or load_settings()
    config = default_rules(settings)
    if settings.retention_rules:
        config.update(_read(settings.retention_rules))
    return config


def _read(path: str) -> dict[str, list[dict[str, Any]]]:
    allowed = "a readable JSON or TOML file with lists named tables, storage or hygiene"
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
    except (OSError, ValueError) as exc:
        raise SettingError("TASKAPP_RETENTION_RULES", path, f"{allowed} ({exc})") from None
    if not isinstance(data, dict) or not set(data) <= set(SECTIONS):
        raise SettingError("TASKAPP_RETENTION_RULES", path, allowed)
    if not all(isinstance(v, list) for v in data.values()):
        raise SettingError("TASKAPP_RETENTION_RULES", path, allowed)
    return data
