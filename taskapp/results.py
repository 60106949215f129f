"""Celery's results on the application database, written in the idempotency record's transactions.

Stock, each of our tasks made five transactions on the hot path: the idempotency claim, Celery's
STARTED (through the ORM: a SELECT, a SELECT ... FOR UPDATE, then an INSERT), the completion,
Celery's SUCCESS (the same three statements) and a runtime row. The claim and STARTED record one
fact (this delivery runs the key now), and so do the completion and SUCCESS. Here each pair is
one transaction on one connection: the claim also writes the STARTED row, the completion the
SUCCESS row, each in one ``INSERT ... ON CONFLICT (task_id) DO UPDATE`` statement that keeps
Celery's rule (nothing replaces a SUCCESS) and goes through the trigger that keeps a later
attempt's state (``taskapp.db.tune_result_engine``). Runtime rows are batched
(``taskapp.reports.runtimes``), so a task costs two transactions, not five.

The rows are Celery's own: ``celery_taskmeta``, filled by Celery's ``_update_result``, so
``AsyncResult.get()`` in any process, ``celery result`` and Flower read them with the stock
backend. The idempotency row keeps its copy of the result: a duplicate under a caller's key can
carry another task id, and ``held()`` (email.send, the CLI) uses keys without Celery.

Everything else (RETRY, FAILURE, PROGRESS, STALE, groups, chords, reads) is Celery's
``DatabaseBackend``, but on ``taskapp.db``'s engine: one connection pool per process, not two.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from celery import states
from celery.backends.database import DatabaseBackend
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from taskapp import db

__all__ = ["Backend", "RowWrite", "backend_for"]

#: A write of one result row, run inside the idempotency record's transaction.
RowWrite = Callable[[Connection], object]

#: Dialects whose ``INSERT ... ON CONFLICT`` the combined writes use.
_UPSERT: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
#: Tries to create the result tables when processes start together (as Celery's own).
_CREATE_TRIES = 10


class Backend(DatabaseBackend):
    """Celery's database result backend on ``taskapp.db``'s engine, whose STARTED and SUCCESS
    rows can be written in another transaction (``started``/``succeeded``)."""

    _tables_made = False
    _upserts: dict[tuple[str, tuple[str, ...]], Any]
    # Celery's, which its type stubs leave out.
    url: str
    task_cls: Any
    _update_result: Callable[..., None]

    @property
    def engine(self) -> Engine:
        """The application database's engine for this backend's URL (one per process)."""
        eng = db.engine(self.url)
        db.keep_later_state(eng)
        return eng

    @property
    def combines(self) -> bool:
        """Whether ``started``/``succeeded`` can write on this database."""
        return self.engine.dialect.name in _UPSERT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._upserts = {}
        super().__init__(*args, **kwargs)

    def ResultSession(self, session_manager: Any = None) -> Session:  # noqa: N802 - Celery's
        eng = self.engine
        if not self._tables_made:
            self._make_tables(eng)
        return Session(bind=eng)

    def _make_tables(self, eng: Engine) -> None:
        for tries_left in reversed(range(_CREATE_TRIES)):
            try:
                self.task_cls.metadata.create_all(eng)
                break
            except DatabaseError:  # another process created them at the same moment
                if not tries_left:
                    raise
        self._tables_made = True

    def started(self, request: Any) -> RowWrite:
        """Write ``request``'s STARTED row, as Celery's tracer does before the task runs."""
        meta = {"pid": os.getpid(), "hostname": getattr(request, "hostname", None)}
        return self._upsert(self._row(request.id, meta, states.STARTED, request))

    def succeeded(self, request: Any, result: Any) -> RowWrite:
        """Write ``request``'s SUCCESS row with ``result``; the tracer's own write is then
        skipped (``store_result``)."""
        row = self._row(request.id, result, states.SUCCESS, request)

        def write(conn: Connection) -> None:
            self._upsert(row)(conn)
            request.taskapp_stored = request.id

        return write

    def store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        if state == states.SUCCESS and getattr(request, "taskapp_stored", None) == task_id:
            return result  # written with the idempotency completion
        return super().store_result(task_id, result, state, traceback, request, **kwargs)

    def _row(self, task_id: str, result: Any, state: str, request: Any) -> dict[str, Any]:
        # Celery's own mapping of a result onto the row (encoding, result_extended columns).
        task = self.task_cls(task_id)
        self._update_result(task, result, state, request=request)
        columns = self.task_cls.__table__.columns
        return {column.name: getattr(task, column.name) for column in columns if column.key != "id"}

    def _upsert(self, row: dict[str, Any]) -> RowWrite:
        def write(conn: Connection) -> None:
            conn.execute(self._upsert_statement(conn.dialect.name, tuple(row)), row)

        return write

    def _upsert_statement(self, dialect: str, names: tuple[str, ...]) -> Any:
        # Built once per dialect and column set: building it (the EXCLUDED alias copies every
        # column) cost more than running it.
        key = (dialect, names)
        statement = self._upserts.get(key)
        if statement is None:
            table = self.task_cls.__table__
            insert = _UPSERT[dialect](table)
            statement = self._upserts[key] = insert.on_conflict_do_update(
                index_elements=[table.c.task_id],
                set_={name: insert.excluded[name] for name in names if name != "task_id"},
                # As Celery's store: nothing replaces a SUCCESS.
                where=table.c.status != states.SUCCESS,
            )
        return statement


def backend_for(app: Any) -> Any:
    """``app``'s result backend, as a ``Backend`` when it is Celery's database backend (one per
    app and process; the stock one is then never made, nor its engine)."""
    from celery.app.backends import by_url

    found: Any = by_url(app.backend_cls or app.conf.result_backend, app.loader)
    cls, url = found
    if cls is not DatabaseBackend:
        return app.backend
    mine = app.__dict__.get("_taskapp_results")
    if mine is None or mine.url != (url or app.conf.database_url):
        mine = app.__dict__["_taskapp_results"] = Backend(app=app, url=url)
    return mine
