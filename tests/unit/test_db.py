"""The database layer: engines survive a fork, and every SQLite engine is set up alike."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import text

from taskapp.db import engine
from tests.support.waiting import wait_for


def _in_child(work: object, timeout: float = 30) -> int:
    """Run ``work()`` in a forked child; return its exit status (killed after ``timeout``)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        try:
            os._exit(0 if work() else 1)  # type: ignore[operator]
        except BaseException:
            os._exit(2)

    def exited() -> tuple[int] | None:  # a tuple: exit status 0 is falsy
        done, status = os.waitpid(pid, os.WNOHANG)
        return (os.waitstatus_to_exitcode(status),) if done else None

    try:
        (code,) = wait_for(exited, "the forked child to finish", timeout=timeout, interval=0.02)
    except AssertionError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    return code


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(
    database_url: str,
) -> None:
    eng = engine(database_url)
    backend_pid = text("SELECT pg_backend_pid()")
    # given a parent whose pool holds a connection it has used
    with eng.connect() as conn:
        parent_backend = conn.execute(backend_pid).scalar()
    # when a forked child (a prefork pool process) uses the same engine
    status = _in_child(
        lambda: engine(database_url).connect().execute(backend_pid).scalar() != parent_backend
    )
    # then the child talked to another server process, and the parent's connection still works
    assert status == 0
    with eng.connect() as conn:
        assert conn.execute(backend_pid).scalar() == parent_backend


def test_the_result_engine_gets_the_same_sqlite_set_up(tmp_path: Path) -> None:
    from taskapp.app import app

    url = f"sqlite:///{tmp_path}/results.db"
    # given the result backend configured for a SQLite file
    backend = app.backend.__class__(app=app, url=url)
    session = backend.ResultSession()
    # when it connects, then it uses WAL, waits for other writers, and syncs as ours does
    pragmas = {
        name: session.execute(text(f"PRAGMA {name}")).scalar()
        for name in ("journal_mode", "busy_timeout", "synchronous")
    }
    with engine(url).connect() as conn:
        ours = {name: conn.execute(text(f"PRAGMA {name}")).scalar() for name in pragmas}
    session.close()
    assert pragmas == ours == {"journal_mode": "wal", "busy_timeout": 30_000, "synchronous": 1}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_connections_time_out_and_probe_a_silent_peer(database_url: str) -> None:
    # given the engine for a PostgreSQL URL
    with engine(database_url).connect() as conn:
        # then libpq holds the connect timeout, keepalives and the user timeout (a connection to
        # a host that stops answering ends in seconds, not TCP's minutes)
        params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
    assert (params["connect_timeout"], params["tcp_user_timeout"]) == ("5", "20000")
    assert (params["keepalives_idle"], params["keepalives_count"]) == ("10", "3")
