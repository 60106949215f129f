"""The demo business's tables and retention rules are the demo's own, not production's."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text

from config.settings import load_settings
from taskapp import db
from taskapp.cleanup.rules import load_rules, validate_rules
from taskapp.sample import RETENTION_RULES, install, orders, seed

SAMPLE_TABLES = {"customers", "orders", "events"}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


def tables(url: str) -> set[str]:
    return set(inspect(db.engine(url)).get_table_names())


def versions(url: str) -> set[str]:
    with db.engine(url).connect() as conn:
        return set(conn.scalars(text("SELECT version_num FROM alembic_version")))


def test_taskapp_db_upgrade_creates_no_sample_table(url: str) -> None:
    # when a new database is migrated as production migrates it (`taskapp db upgrade`)
    db.upgrade(url)
    # then the platform's tables are there and the demo's are not
    assert {"idempotency_keys", "cleanup_runs"} <= tables(url)
    assert not tables(url) & SAMPLE_TABLES
    assert not any(v.startswith("sample_") for v in versions(url))


def test_a_database_migrated_before_keeps_its_sample_tables_and_rows(url: str) -> None:
    # given a database migrated when upgrade applied every head, the sample's included
    command.upgrade(db.alembic_config(url), "heads")
    seed(url, 40)
    # when it is upgraded now
    db.upgrade(url)
    # then nothing was dropped: the tables, their rows and the recorded revision are kept
    assert tables(url) >= SAMPLE_TABLES
    with db.engine(url).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(orders)) == 40
    assert "sample_0001" in versions(url)


def test_the_demo_installs_its_tables_and_its_rules_apply_to_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a production database
    db.upgrade(url)
    # when the demo installs its business (seed does it too) and points at its rules
    install(url)
    install(url)  # idempotent
    monkeypatch.setenv("TASKAPP_RETENTION_RULES", str(RETENTION_RULES))
    rules = load_rules(load_settings())
    # then its rules name its tables, and their tables and columns exist
    assert [(r.name, r.table) for r in rules.tables] == [
        ("events", "events"),
        ("inactive-customers", "customers"),
    ]
    validate_rules(db.engine(url), rules)
    assert tables(url) >= SAMPLE_TABLES


def test_the_production_rules_name_no_sample_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKAPP_RETENTION_RULES", raising=False)
    rules = load_rules(load_settings())
    assert not {r.table for r in rules.tables} & SAMPLE_TABLES
