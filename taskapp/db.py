"""The application database: one SQLAlchemy engine per URL, schema managed by Alembic.

Every family declares its tables on ``metadata`` and ships an Alembic migration under
``taskapp/migrations/versions`` whose ``down_revision`` is the baseline ``"0001"``; each family
is its own branch and ``upgrade()`` applies all heads.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import DDL, Engine, MetaData, create_engine, event

from config.settings import load_settings

__all__ = ["metadata", "engine", "tune_engine", "tune_result_engine", "upgrade"]

#: How long a SQLite writer waits for another one before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

MIGRATIONS = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets the worker, beat and the CLI read while one of them writes; the busy timeout
    # waits for a writer instead of failing with "database is locked". synchronous=NORMAL is
    # SQLite's recommended setting under WAL: commits survive a crash of any process and only a
    # power loss can undo the last ones. It shortens the time each writer holds the one write
    # lock every pool process queues on (measured here: 4 processes doing a task's 4 writes,
    # 256-277 -> 312-361 tasks/s).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def tune_engine(eng: Engine) -> None:
    """Set up a new engine for this project's database (Celery's result engine included)."""
    if eng.dialect.name == "sqlite":
        event.listen(eng, "connect", _sqlite_pragmas)


#: On Celery's result table, a stored SUCCESS is final (see ``tune_result_engine``).
SUCCESS_IS_FINAL = (
    "CREATE TRIGGER IF NOT EXISTS taskapp_success_is_final"
    " BEFORE UPDATE OF status ON celery_taskmeta"
    " WHEN OLD.status = 'SUCCESS' AND NEW.status <> 'SUCCESS'"
    " BEGIN SELECT RAISE(IGNORE); END"
)
_KEEP_SUCCESS_DDL = DDL(SUCCESS_IS_FINAL).execute_if(dialect="sqlite")


def tune_result_engine(eng: Engine) -> None:
    """``tune_engine``, and on SQLite a trigger that keeps a stored SUCCESS: Celery's result engine.

    A retry is published before the retrying run stores RETRY, so with a countdown of 0 (which
    ``retry_jitter`` draws) the next run can store SUCCESS first. Celery's database backend reads
    the row and skips a write after SUCCESS, but pysqlite runs that read outside the write's
    transaction, so on SQLite the late RETRY replaced the SUCCESS: the task stayed RETRY and
    ``get()`` timed out. The trigger skips such an update inside the UPDATE itself; Celery sees
    no row updated (``StaleDataError``), retries the store, reads SUCCESS and stops. Real
    transactions (``BEGIN IMMEDIATE``) would also do, at half the result-store throughput when
    four processes write (measured here), and a plain ``BEGIN`` fails stores outright.
    """
    tune_engine(eng)
    if eng.dialect.name == "sqlite":
        event.listen(eng, "connect", _keep_success)
        from celery.backends.database.models import Task

        # New databases: with the table. Existing ones: on connect (_keep_success).
        if not event.contains(Task.__table__, "after_create", _KEEP_SUCCESS_DDL):
            event.listen(Task.__table__, "after_create", _KEEP_SUCCESS_DDL)


def _keep_success(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    names = {
        row[0]
        for row in cursor.execute(
            "SELECT name FROM sqlite_master"
            " WHERE name IN ('celery_taskmeta', 'taskapp_success_is_final')"
        )
    }
    if names == {"celery_taskmeta"}:
        cursor.execute(SUCCESS_IS_FINAL)
    cursor.close()


def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: ``TASKAPP_DATABASE_URL`` now), created once per process."""
    url = url or load_settings().database_url.get_secret_value()
    eng = _engines.get(url)
    if eng is None:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        eng = _engines[url] = create_engine(url, pool_pre_ping=True)
        tune_engine(eng)
    return eng


def _forget_pooled_connections() -> None:
    # A forked pool child must not talk over its parent's sockets or SQLite handles: it opens
    # its own connections, and leaves the parent's open for the parent (SQLAlchemy's advice).
    for eng in _engines.values():
        eng.dispose(close=False)


_engines: dict[str, Engine] = {}
os.register_at_fork(after_in_child=_forget_pooled_connections)


def alembic_config(url: str | None = None) -> Config:
    """Alembic configuration for ``url`` (default: ``TASKAPP_DATABASE_URL``)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option(
        "sqlalchemy.url",
        (url or load_settings().database_url.get_secret_value()).replace("%", "%%"),
    )
    return cfg


def upgrade(url: str | None = None) -> None:
    """Apply every migration branch to the database at ``url``."""
    command.upgrade(alembic_config(url), "heads")
