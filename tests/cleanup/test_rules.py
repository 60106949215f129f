"""Unit tests: parsing and selecting retention rules, the config file, the beat schedule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from config.beat import build_beat_schedule
from config.settings import Settings
from taskapp.cleanup.rules import (
    RetentionRule,
    RuleError,
    StorageRule,
    SweeperRule,
    load_rules,
)
from taskapp.errors import PermanentError

GOOD = {"name": "old-events", "table": "events", "timestamp": "created_at", "max_age_days": 30}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"max_age_days": -1}, "max_age_days must be a number >= 0"),
        ({"max_age_hours": 1}, "exactly one of"),
        ({"action": "truncate"}, "action 'truncate'"),
        ({"action": "anonymize"}, "anonymize needs 'replace'"),
        ({"replace": {"email": None}}, "only applies to action 'anonymize'"),
        ({"table": ""}, "'table' must be a non-empty string"),
        ({"colour": "red"}, "unknown key(s) colour"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"timestamp_format": "iso"}, "timestamp_format 'iso'"),
    ],
)
def test_a_malformed_table_rule_is_a_permanent_error_naming_the_rule(change, problem):
    # given a rule with one thing wrong
    raw = {**GOOD, **change}
    # when it is parsed / then it fails permanently, naming the rule and the problem
    with pytest.raises(RuleError) as caught:
        RetentionRule.parse(raw)
    assert isinstance(caught.value, PermanentError)
    assert "retention rule 'old-events'" in str(caught.value)
    assert problem in str(caught.value)


def test_a_good_rule_parses_into_ages_and_replacements():
    rule = RetentionRule.parse(
        {**GOOD, "action": "anonymize", "replace": {"email": "x-{id}@invalid", "name": None}}
    )
    assert rule.max_age == timedelta(days=30)
    assert rule.replace == {"email": "x-{id}@invalid", "name": None}


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"name": "s", "prefix": "tmp/"}, "exactly one of 'max_age_hours' or 'orphaned_by'"),
        ({"name": "s", "prefix": "tmp", "max_age_hours": 1}, "must end with '/'"),
        ({"name": "s", "prefix": "tmp/", "max_age_hours": -2}, "max_age_hours must be"),
        ({"name": "s", "sweeper": "no_colon"}, "must look like 'package.module:function'"),
    ],
)
def test_a_malformed_storage_or_sweeper_rule_names_the_rule(raw, problem):
    parse = SweeperRule.parse if "sweeper" in raw else StorageRule.parse
    with pytest.raises(RuleError, match=r"retention rule 's': .*") as caught:
        parse(raw)
    assert problem in str(caught.value)


def test_the_defaults_cover_the_demo_tables_storage_and_platform(settings: Settings):
    rules = load_rules(settings)
    assert [r.table for r in rules.tables] == ["events", "customers"]
    assert [r.prefix for r in rules.storage] == ["tmp/", "reports/", "thumbnails/"]
    assert {r.name for r in rules.hygiene} == {
        "task-results",
        "group-results",
        "task-runtimes",
        "idempotency-records",
        "monitoring-queues",
    }
    results = next(r for r in rules.hygiene if r.name == "task-results")
    assert results.max_age == timedelta(seconds=settings.result_expires)


def test_a_rules_file_replaces_only_the_sections_it_holds(rules_file):
    # given a file that replaces the table rules only
    rules_file(tables=[{**GOOD, "max_age_hours": 2, "max_age_days": None}])
    # when / then: the file's rule is bad (two ages given)...
    with pytest.raises(RuleError, match="exactly one of"):
        load_rules()
    # ...and a good file replaces the tables but keeps the default storage rules
    rules_file(tables=[GOOD])
    rules = load_rules()
    assert [r.name for r in rules.tables] == ["old-events"]
    assert len(rules.storage) == 3


def test_a_toml_rules_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "rules.toml"
    path.write_text('[[storage]]\nname = "scratch"\nprefix = "scratch/"\nmax_age_hours = 6\n')
    monkeypatch.setenv("TASKAPP_RETENTION_RULES", str(path))
    assert [r.prefix for r in load_rules().storage] == ["scratch/"]


def test_an_unreadable_rules_file_is_permanent(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TASKAPP_RETENTION_RULES", str(tmp_path / "missing.json"))
    with pytest.raises(PermanentError, match="TASKAPP_RETENTION_RULES"):
        load_rules()


def test_duplicate_and_unknown_rule_names_are_refused(rules_file):
    rules_file(tables=[GOOD, GOOD])
    with pytest.raises(RuleError, match="used by more than one rule"):
        load_rules()
    rules_file(tables=[GOOD])
    with pytest.raises(RuleError, match="retention rule 'nope': no such rule"):
        load_rules().select(["nope"])
    assert load_rules().select("old-events").names == ["old-events"]


def test_the_nightly_hour_is_a_setting(monkeypatch):
    monkeypatch.setenv("TASKAPP_CLEANUP_HOUR", "5")
    entry = build_beat_schedule(Settings.from_env())["cleanup-nightly"]
    assert entry["task"] == "cleanup.run"
    assert entry["schedule"].hour == {5}
