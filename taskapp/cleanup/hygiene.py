"""Platform hygiene: expire task results and idempotency records, run leftover sweepers.

The defaults (``config/retention.py``) expire Celery's result tables (``celery_taskmeta``,
``celery_tasksetmeta``) and the idempotency records (``idempotency_keys``) older than
``TASKAPP_RESULT_EXPIRES``, in the same short batches as any retention rule. These tables
belong to other parts of the platform and may not exist yet, so a missing one is skipped with
a log line. Sweepers are functions other families register by dotted path (see
``SweeperRule``) to remove what their crashed processes left behind; the default one removes
the per-process monitoring queues and SNS subscriptions of crashed processes.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import replace
from datetime import datetime
from time import perf_counter
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy import Engine

from config.settings import load_settings
from taskapp.cleanup.purge import OnBatch, StepResult, apply_rule
from taskapp.cleanup.rules import RetentionRule, RuleError, SweeperRule
from taskapp.errors import RetryableError

__all__ = ["apply_hygiene_rule", "sweep_monitoring_queues"]

log = logging.getLogger(__name__)


def apply_hygiene_rule(
    engine: Engine,
    rule: RetentionRule | SweeperRule,
    now: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = 5000,
    on_batch: OnBatch | None = None,
) -> StepResult:
    """Expire one platform table's old records, or run one sweeper."""
    if isinstance(rule, SweeperRule):
        return _sweep(rule, dry_run)
    # Platform tables appear when their owner first writes: never an error to find none.
    optional = replace(rule, optional=True)
    return apply_rule(
        engine, optional, now, dry_run=dry_run, batch_size=batch_size, on_batch=on_batch
    )


def _sweep(rule: SweeperRule, dry_run: bool) -> StepResult:
    result = StepResult("sweeper", ("would " if dry_run else "") + "sweep", unit="items")
    function = _resolve(rule)
    if function is None:
        result.skipped = f"sweeper {rule.sweeper!r} is not installed"
        log.info("cleanup.skip rule=%s sweeper=%s reason=missing", rule.name, rule.sweeper)
        return result
    started = perf_counter()
    count = function(dry_run=dry_run)
    if count is None and dry_run:
        result.skipped = "the sweeper cannot tell what it would remove"
        return result
    if not isinstance(count, int) or count < 0:
        raise RuleError(rule.name, f"sweeper returned {count!r}, not a count")
    result.count, result.duration_s = count, round(perf_counter() - started, 4)
    log.info("cleanup.sweep rule=%s items=%d dry_run=%s", rule.name, count, dry_run)
    return result


def _resolve(rule: SweeperRule) -> Any:
    module_name, _, attr = rule.sweeper.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if rule.optional and exc.name and module_name.startswith(exc.name):
            return None
        raise RuleError(rule.name, f"cannot import {module_name!r}: {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise RuleError(rule.name, f"{rule.sweeper!r} is not a function")
    return function


def sweep_monitoring_queues(dry_run: bool) -> int | None:
    """Sweeper: per-process monitoring queues and subscriptions left by crashed processes.

    Adapts ``taskapp.sqs.admin.sweep.sweep_stale`` (a live process renews its queues' lease
    every minute, so only dead ones go). It has no dry run: dry, this returns ``None``.
    """
    if dry_run:
        return None
    from taskapp.sqs.admin.sweep import sweep_stale

    try:
        report = sweep_stale(load_settings())
    except (ClientError, BotoCoreError) as exc:
        raise RetryableError(f"monitoring sweeper: SQS/SNS error {type(exc).__name__}") from exc
    return len(report.queues) + len(report.subscriptions)
