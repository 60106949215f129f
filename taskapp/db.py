"""The application database: one SQLAlchemy engine per URL, schema managed by Alembic.

Every family declares its tables on ``metadata`` and ships an Alembic migration under
``taskapp/migrations/versions`` whose ``down_revision`` is the baseline ``"0001"``; each family
is its own branch and ``upgrade()`` applies all heads but the demo's sample business.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import DDL, Engine, MetaData, create_engine, event

from config.settings import load_settings

__all__ = [
    "metadata",
    "engine",
    "tune_engine",
    "tune_result_engine",
    "keep_later_state",
    "upgrade",
    "SAMPLE_BRANCH",
    "sample_revisions",
]

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


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
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


#: Columns a stale write to Celery's result table must not change (``result_extended`` on).
_RESULT_COLUMNS = (
    *("status", "result", "date_done", "traceback", "children"),
    *("name", "args", "kwargs", "worker", "retries", "queue"),
)
#: A write is stale when a SUCCESS is already stored, or when it comes from an earlier attempt.
_STALE = "(OLD.status = 'SUCCESS' AND NEW.status <> 'SUCCESS') OR NEW.retries < OLD.retries"
_TRIGGER = "taskapp_keep_later_state"

#: SQLite: undo a stale write inside its own UPDATE (see ``tune_result_engine``).
SQLITE_KEEP_LATER_STATE = (
    f"CREATE TRIGGER IF NOT EXISTS {_TRIGGER} AFTER UPDATE ON celery_taskmeta WHEN {_STALE}"
    " BEGIN UPDATE celery_taskmeta SET "
    + ", ".join(f"{column} = OLD.{column}" for column in _RESULT_COLUMNS)
    + " WHERE id = OLD.id; END"
)
#: PostgreSQL: a BEFORE trigger that returns OLD keeps the row as it was.
POSTGRES_KEEP_LATER_STATE = (
    f"CREATE OR REPLACE FUNCTION {_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$"
    f" BEGIN IF {_STALE} THEN RETURN OLD; END IF; RETURN NEW; END $$;"
    f" CREATE OR REPLACE TRIGGER {_TRIGGER} BEFORE UPDATE ON celery_taskmeta"
    f" FOR EACH ROW EXECUTE FUNCTION {_TRIGGER}()"
)
_KEEP_LATER_STATE_DDL = {
    "sqlite": DDL(SQLITE_KEEP_LATER_STATE).execute_if(dialect="sqlite"),
    "postgresql": DDL(POSTGRES_KEEP_LATER_STATE).execute_if(dialect="postgresql"),
}


def tune_result_engine(eng: Engine) -> None:
    """``tune_engine``, plus a trigger that keeps a stale write from undoing a later state.

    A retry is published before the retrying run stores RETRY, so with a countdown of 0 (which
    ``retry_jitter`` draws) the next attempt can store SUCCESS, or FAILURE once retries are
    exhausted, first; the late RETRY then replaced it and ``get()`` saw RETRY. Celery's database
    backend skips a write after SUCCESS only, and on SQLite reads the row outside the write's
    transaction, so neither FAILURE nor (on SQLite) SUCCESS was safe. The trigger decides inside
    the UPDATE itself: a write after SUCCESS, or from an earlier attempt (fewer ``retries``, which
    ``result_extended`` stores), leaves the row as it was. The UPDATE still counts its row, so
    Celery sees a normal store. A redriven dead letter keeps its ``retries`` header, so its new
    run's states still replace FAILURE.
    """
    tune_engine(eng)
    keep_later_state(eng)


def keep_later_state(eng: Engine) -> None:
    """Install ``tune_result_engine``'s trigger through ``eng`` (once per engine): with Celery's
    result table on new databases, when the engine connects on existing ones."""
    dialect = eng.dialect.name
    if dialect not in _KEEP_LATER_STATE_DDL:
        return
    from celery.backends.database.models import Task

    if dialect == "sqlite":
        if not event.contains(eng, "connect", _keep_later_state_sqlite):
            event.listen(eng, "connect", _keep_later_state_sqlite)
    elif not event.contains(eng, "first_connect", _keep_later_state_postgres):
        event.listen(eng, "first_connect", _keep_later_state_postgres)
    ddl = _KEEP_LATER_STATE_DDL[dialect]
    if not event.contains(Task.__table__, "after_create", ddl):
        event.listen(Task.__table__, "after_create", ddl)


def _keep_later_state_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    names = {
        row[0]
        for row in cursor.execute(
            "SELECT name FROM sqlite_master WHERE name IN (?, ?, ?)",
            ("celery_taskmeta", _TRIGGER, "taskapp_success_is_final"),
        )
    }
    if "taskapp_success_is_final" in names:  # the earlier trigger: raised on a kept SUCCESS
        cursor.execute("DROP TRIGGER taskapp_success_is_final")
    if "celery_taskmeta" in names and _TRIGGER not in names:
        cursor.execute(SQLITE_KEEP_LATER_STATE)
    cursor.close()


def _keep_later_state_postgres(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(
        "SELECT to_regclass('celery_taskmeta') IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %s)",
        (_TRIGGER,),
    )
    if cursor.fetchone()[0]:
        try:
            cursor.execute(POSTGRES_KEEP_LATER_STATE)
            dbapi_connection.commit()
        except Exception:  # another process created it at the same moment
            dbapi_connection.rollback()
    else:
        dbapi_connection.rollback()
    cursor.close()


def engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default: ``TASKAPP_DATABASE_URL`` now), created once per process."""
    url = url or load_settings().database_url.get_secret_value()
    eng = _engines.get(url)
    if eng is None:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # A pre-ping is one more round trip per checkout: worth it over a network, where a
        # server or proxy may have dropped the connection; a SQLite file has none to drop.
        eng = _engines[url] = create_engine(
            url, pool_pre_ping=not url.startswith("sqlite"), connect_args=_connect_args(url)
        )
        tune_engine(eng)
    return eng


#: libpq options for every PostgreSQL connection (https://www.postgresql.org/docs/current/
#: libpq-connect.html#LIBPQ-PARAMKEYWORDS). Without them a connect to an unreachable host waits
#: for the kernel's SYN retries (about 2 minutes), and a connection whose peer vanished mid-query
#: (a failover, a dropped NAT entry) waits for TCP's retransmissions (about 15 minutes) while
#: the worker's task holds its slot. Keepalives find a dead idle peer in 10 + 3 x 5 s;
#: tcp_user_timeout ends a write no one acknowledges after 20 s.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 20_000,
}


def _connect_args(url: str) -> dict[str, int]:
    return dict(POSTGRES_CONNECT_ARGS) if url.startswith("postgresql") else {}


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


#: The demo business's branch (``taskapp/sample``): applied by the demo (``sample.install``),
#: never by ``upgrade``. Its revision stays in ``versions/``: a database migrated before the
#: tables became the demo's own records ``sample_0001`` and keeps its tables, and Alembic must
#: still resolve that revision there.
SAMPLE_BRANCH = "sample"


def upgrade(url: str | None = None) -> None:
    """Apply every migration branch but the demo's to the database at ``url``."""
    cfg = alembic_config(url)
    script = ScriptDirectory.from_config(cfg)
    for head in sorted(set(script.get_heads()) - sample_revisions(script)):
        command.upgrade(cfg, head)


def sample_revisions(script: ScriptDirectory) -> set[str]:
    """The revisions of the demo's branch: neither applied nor expected in production."""
    return {rev.revision for rev in script.walk_revisions() if SAMPLE_BRANCH in rev.branch_labels}
