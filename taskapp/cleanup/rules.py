"""Retention rules: parsed from ``config/retention.py`` and checked against the database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, inspect

from config.retention import retention_config
from config.settings import SettingError, Settings
from taskapp.errors import PermanentError

__all__ = [
    "RuleError",
    "RetentionRule",
    "StorageRule",
    "SweeperRule",
    "RuleSet",
    "load_rules",
    "validate_rules",
]

ACTIONS = ("delete", "anonymize")
#: How a timestamp column stores time: a SQL date-time (UTC), or epoch seconds (a number).
TIMESTAMP_FORMATS = ("datetime", "epoch")
_AGE_KEYS = {"max_age_days": 86400, "max_age_hours": 3600, "max_age_seconds": 1}
_TABLE_KEYS = {
    "name",
    "table",
    "timestamp",
    "timestamp_format",
    "where",
    "action",
    "replace",
    "batch_size",
    "optional",
}
_STORAGE_KEYS = {"name", "prefix", "max_age_hours", "orphaned_by", "min_age_hours"}
_SWEEPER_KEYS = {"name", "sweeper", "optional"}


class RuleError(PermanentError):
    """A retention rule that cannot run as written; the message names the rule."""

    def __init__(self, rule: str, problem: str) -> None:
        # Both parts are the args, so the result backend can rebuild the error from them.
        super().__init__(rule, problem)
        self.rule, self.problem = rule, problem

    def __str__(self) -> str:
        return f"retention rule {self.rule!r}: {self.problem}"


@dataclass(frozen=True)
class RetentionRule:
    """Delete, or anonymize, the rows of one table whose timestamp is older than ``max_age``.

    ``where`` narrows the rule to rows whose columns equal the given values (for example
    ``{"state": "done"}``).
    """

    name: str
    table: str
    timestamp: str
    max_age: timedelta
    action: str = "delete"
    replace: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    optional: bool = False
    timestamp_format: str = "datetime"
    where: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> RetentionRule:
        """Build a rule from its config dict; ``RuleError`` on anything malformed."""
        name = _name(raw)
        _no_unknown_keys(name, raw, _TABLE_KEYS | set(_AGE_KEYS))
        table, column = _text(name, raw, "table"), _text(name, raw, "timestamp")
        action = raw.get("action", "delete")
        if action not in ACTIONS:
            raise RuleError(name, f"action {action!r} is not one of {', '.join(ACTIONS)}")
        replace = raw.get("replace") or {}
        if action == "anonymize" and (not isinstance(replace, Mapping) or not replace):
            raise RuleError(name, "anonymize needs 'replace': a mapping of column to value")
        if action == "delete" and replace:
            raise RuleError(name, "'replace' only applies to action 'anonymize'")
        batch = raw.get("batch_size")
        if batch is not None and (
            isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
        ):
            raise RuleError(name, f"batch_size must be a positive integer, not {batch!r}")
        fmt = raw.get("timestamp_format", "datetime")
        if fmt not in TIMESTAMP_FORMATS:
            raise RuleError(name, f"timestamp_format {fmt!r} is not one of datetime, epoch")
        where = raw.get("where") or {}
        if not isinstance(where, Mapping):
            raise RuleError(name, "'where' must be a mapping of column to value")
        return cls(
            name,
            table,
            column,
            _age(name, raw),
            action,
            dict(replace),
            batch,
            bool(raw.get("optional", False)),
            fmt,
            dict(where),
        )


@dataclass(frozen=True)
class StorageRule:
    """Delete S3 objects under ``prefix``: older than ``max_age``, or whose source is gone."""

    name: str
    prefix: str
    max_age: timedelta | None = None
    orphaned_by: str | None = None
    min_age: timedelta = timedelta(0)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> StorageRule:
        """Build a rule from its config dict; ``RuleError`` on anything malformed."""
        name = _name(raw)
        _no_unknown_keys(name, raw, _STORAGE_KEYS)
        prefix = _text(name, raw, "prefix")
        if not prefix.endswith("/"):
            # "tmp" would also match "tmp-important/"; a prefix here is always a folder.
            raise RuleError(name, f"prefix {prefix!r} must end with '/'")
        has_age, orphan = "max_age_hours" in raw, raw.get("orphaned_by")
        if has_age == bool(orphan):
            raise RuleError(name, "needs exactly one of 'max_age_hours' or 'orphaned_by'")
        if orphan is not None and (not isinstance(orphan, str) or not orphan):
            raise RuleError(name, "'orphaned_by' must name a metadata key")
        max_age = _hours(name, raw, "max_age_hours") if has_age else None
        return cls(name, prefix, max_age, orphan, _hours(name, raw, "min_age_hours"))


@dataclass(frozen=True)
class SweeperRule:
    """Call ``module:function(dry_run=...) -> int`` that removes what crashed processes left.

    The hook for other families' litter (e.g. per-process event queues): the function finds
    and removes (or, dry, only counts) its own leftovers and returns how many.
    """

    name: str
    sweeper: str
    optional: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> SweeperRule:
        """Build a rule from its config dict; ``RuleError`` on anything malformed."""
        name = _name(raw)
        _no_unknown_keys(name, raw, _SWEEPER_KEYS)
        target = _text(name, raw, "sweeper")
        if target.count(":") != 1:
            raise RuleError(name, f"sweeper {target!r} must look like 'package.module:function'")
        return cls(name, target, bool(raw.get("optional", False)))


def _hygiene_rule(raw: Mapping[str, Any]) -> RetentionRule | SweeperRule:
    return SweeperRule.parse(raw) if "sweeper" in raw else RetentionRule.parse(raw)


@dataclass(frozen=True)
class RuleSet:
    """Every configured rule, by section, with unique names."""

    tables: tuple[RetentionRule, ...]
    storage: tuple[StorageRule, ...]
    hygiene: tuple[RetentionRule | SweeperRule, ...]

    @property
    def names(self) -> list[str]:
        return [r.name for r in (*self.tables, *self.storage, *self.hygiene)]

    def select(self, names: Iterable[str] | None) -> RuleSet:
        """The subset named by ``names`` (all when ``None``); ``RuleError`` for an unknown one."""
        if names is None:
            return self
        wanted = [names] if isinstance(names, str) else list(names)
        for name in wanted:
            if name not in self.names:
                raise RuleError(name, f"no such rule; configured: {', '.join(self.names)}")
        return RuleSet(
            tuple(r for r in self.tables if r.name in wanted),
            tuple(r for r in self.storage if r.name in wanted),
            tuple(r for r in self.hygiene if r.name in wanted),
        )


def load_rules(settings: Settings | None = None) -> RuleSet:
    """Parse the configured rules (defaults plus ``TASKAPP_RETENTION_RULES``)."""
    try:
        config = retention_config(settings)
    except SettingError as exc:
        raise PermanentError(str(exc)) from exc
    rules = RuleSet(
        tuple(RetentionRule.parse(r) for r in config.get("tables", [])),
        tuple(StorageRule.parse(r) for r in config.get("storage", [])),
        tuple(_hygiene_rule(r) for r in config.get("hygiene", [])),
    )
    seen: set[str] = set()
    for name in rules.names:
        if name in seen:
            raise RuleError(name, "the name is used by more than one rule")
        seen.add(name)
    return rules


def validate_rules(engine: Engine, rules: RuleSet | None = None) -> RuleSet:
    """Check every table rule against the live schema; ``RuleError`` names the first bad one.

    Run at start-up (``taskapp cleanup validate``, worker and beat start) and before each run.
    An ``optional`` rule whose table does not exist is fine: it is skipped when run.
    """
    rules = rules if rules is not None else load_rules()
    inspector = inspect(engine)
    tables = set(inspector.get_table_names())
    for rule in (*rules.tables, *rules.hygiene):
        if isinstance(rule, SweeperRule):
            continue
        if rule.table not in tables:
            if rule.optional:
                continue
            raise RuleError(rule.name, f"table {rule.table!r} does not exist")
        check_columns(rule, inspector)
    return rules


def check_columns(rule: RetentionRule, inspector: Any) -> str:
    """Check ``rule``'s columns exist in its (existing) table; return the primary-key column."""
    columns = {c["name"] for c in inspector.get_columns(rule.table)}
    pk = inspector.get_pk_constraint(rule.table).get("constrained_columns") or []
    if len(pk) != 1:
        raise RuleError(rule.name, f"table {rule.table!r} needs a single-column primary key")
    for column in (rule.timestamp, *rule.replace, *rule.where):
        if column not in columns:
            raise RuleError(rule.name, f"table {rule.table!r} has no column {column!r}")
    if pk[0] in rule.replace or rule.timestamp in rule.replace:
        raise RuleError(rule.name, "anonymize must not replace the primary key or timestamp")
    return str(pk[0])


def _name(raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RuleError(str(name), "every rule needs a non-empty 'name'")
    return name


def _text(name: str, raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise RuleError(name, f"{key!r} must be a non-empty string")
    return value


def _no_unknown_keys(name: str, raw: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise RuleError(name, f"unknown key(s) {', '.join(unknown)}")


def _age(name: str, raw: Mapping[str, Any]) -> timedelta:
    given = [k for k in _AGE_KEYS if k in raw]
    if len(given) != 1:
        raise RuleError(name, f"needs exactly one of {', '.join(_AGE_KEYS)}")
    value = raw[given[0]]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RuleError(name, f"{given[0]} must be a number >= 0, not {value!r}")
    return timedelta(seconds=value * _AGE_KEYS[given[0]])


def _hours(name: str, raw: Mapping[str, Any], key: str) -> timedelta:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise RuleError(name, f"{key} must be a number >= 0, not {value!r}")
    return timedelta(hours=value)
