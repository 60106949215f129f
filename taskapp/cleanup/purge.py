"""Batched deletes and anonymization of one table, by primary key, one transaction per batch.

Each batch selects up to N primary keys of due rows (keyset order, ``id > last``) and then
deletes or updates ``WHERE id IN (...)`` (``= ANY(array)`` on PostgreSQL), re-checking the
condition. PostgreSQL has no
``DELETE ... LIMIT``, and short transactions keep locks short on both databases. Every batch
commits on its own, so a run killed mid-way resumes where it stopped, and anonymization skips
rows that already hold their replacement values, so re-running changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Engine,
    MetaData,
    String,
    Table,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    inspect,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import ARRAY

from taskapp.cleanup.rules import RetentionRule, RuleError, check_columns
from taskapp.errors import RetryableError

__all__ = ["StepResult", "OnBatch", "apply_rule"]

log = logging.getLogger(__name__)

#: Called after each committed batch with the rule's name and its running count.
OnBatch = Callable[[str, int], None]


@dataclass
class StepResult:
    """What one rule did (or, dry, would do): a count, its unit, batches and timings."""

    kind: str
    action: str
    count: int = 0
    unit: str = "rows"
    batches: int = 0
    duration_s: float = 0.0
    longest_batch_s: float = 0.0
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def apply_rule(
    engine: Engine,
    rule: RetentionRule,
    now: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = 5000,
    on_batch: OnBatch | None = None,
) -> StepResult:
    """Delete or anonymize ``rule``'s rows older than its age at ``now``; dry: count them."""
    result = StepResult("table", "would " + rule.action if dry_run else rule.action)
    started = perf_counter()
    with _db_errors(rule):
        table = _reflect(engine, rule)
        if table is None:
            result.skipped = f"table {rule.table!r} does not exist"
            log.info("cleanup.skip rule=%s table=%s reason=missing", rule.name, rule.table)
            return result
        pk = table.c[check_columns(rule, inspect(engine))]
        due, values = _due(rule, table, pk, now)
        if dry_run:
            with engine.connect() as conn:
                query = select(func.count()).select_from(table).where(due)
                result.count = conn.scalar(query) or 0
        else:
            _batches(engine, rule, table, pk, due, values, batch_size or 1, result, on_batch)
    result.duration_s = round(perf_counter() - started, 4)
    log.info(
        "cleanup.rule rule=%s table=%s action=%s rows=%d batches=%d seconds=%.3f",
        rule.name,
        rule.table,
        result.action,
        result.count,
        result.batches,
        result.duration_s,
    )
    return result


def _batches(
    engine: Engine,
    rule: RetentionRule,
    table: Table,
    pk: Any,
    due: ColumnElement[bool],
    values: dict[str, Any],
    size: int,
    result: StepResult,
    on_batch: OnBatch | None,
) -> None:
    last = None
    while True:
        began = perf_counter()
        with engine.begin() as conn:
            query = select(pk).where(due).order_by(pk).limit(size)
            if last is not None:
                query = query.where(pk > last)
            ids = list(conn.scalars(query))
            if not ids:
                return
            # The condition is checked again: a row may have changed since it was selected.
            chosen = _among(pk, ids, engine.dialect.name)
            stmt: Any
            if rule.action == "delete":
                stmt = delete(table).where(chosen, due)
            else:
                stmt = update(table).where(chosen, due).values(values)
            result.count += conn.execute(stmt).rowcount
        result.batches += 1
        result.longest_batch_s = max(result.longest_batch_s, round(perf_counter() - began, 4))
        last = ids[-1]
        if on_batch is not None:
            on_batch(rule.name, result.count)


def _among(pk: ColumnElement[Any], ids: list[Any], dialect: str) -> ColumnElement[bool]:
    """``pk IN (ids)``; on PostgreSQL ``pk = ANY(:ids)``, one array parameter (3x faster)."""
    if dialect == "postgresql":
        return pk == any_(bindparam("ids", ids, type_=ARRAY(pk.type)))
    return pk.in_(ids)


def _reflect(engine: Engine, rule: RetentionRule) -> Table | None:
    if not inspect(engine).has_table(rule.table):
        if rule.optional:
            return None
        raise RuleError(rule.name, f"table {rule.table!r} does not exist")
    return Table(rule.table, MetaData(), autoload_with=engine)


def _due(
    rule: RetentionRule, table: Table, pk: Any, now: datetime
) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """The WHERE condition of rows to act on, and (anonymize) the replacement values."""
    stamp = table.c[rule.timestamp]
    cutoff: Any = (now - rule.max_age).astimezone(UTC)
    if rule.timestamp_format == "epoch":
        cutoff = cutoff.timestamp()
    elif not getattr(stamp.type, "timezone", False):
        # Naive columns (Celery's date_done, every SQLite column) hold UTC wall time.
        cutoff = cutoff.replace(tzinfo=None)
    due: ColumnElement[bool] = and_(
        stamp < cutoff, *(table.c[col] == value for col, value in rule.where.items())
    )
    values = {col: _replacement(value, pk) for col, value in rule.replace.items()}
    if values:
        pending = [table.c[col].is_distinct_from(expr) for col, expr in values.items()]
        due = and_(due, or_(*pending))
    return due, values


def _replacement(value: Any, pk: Any) -> Any:
    """A replacement as SQL: NULL, a literal, or a string with ``{id}`` -> the row's key."""
    if value is None:
        return null()
    if isinstance(value, str) and "{id}" in value:
        parts = value.split("{id}")
        expr: Any = literal(parts[0], String)
        for part in parts[1:]:
            expr = expr + cast(pk, String) + literal(part, String)
        return expr
    return literal(value)


@contextmanager
def _db_errors(rule: RetentionRule) -> Iterator[None]:
    """Database errors as our two kinds: bad data for the rule is permanent, the rest retry."""
    try:
        yield
    except (sa_exc.DataError, sa_exc.IntegrityError, sa_exc.ProgrammingError) as exc:
        raise RuleError(rule.name, f"the database refused it: {exc.orig}") from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise RetryableError(f"retention rule {rule.name!r}: database unavailable") from exc
