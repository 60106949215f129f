"""Claims renewed by the heartbeat: one statement for all running claims, only what still runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, event, select

from taskapp import idempotency
from taskapp.db import engine
from taskapp.sqs.heartbeat import RUN_TOKEN, run_tokens


@contextmanager
def statements(eng: Engine) -> Iterator[list[str]]:
    """The SQL statements ``eng`` executes inside the block."""
    seen: list[str] = []

    def on_execute(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(eng, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(eng, "before_cursor_execute", on_execute)


def _lease(eng: Engine, key: str) -> float:
    table = idempotency.idempotency_keys
    with eng.connect() as conn:
        return float(conn.execute(select(table.c.lease_until).where(table.c.key == key)).scalar())


def test_renew_extends_the_listed_running_claims_in_one_statement(database_url: str) -> None:
    eng = engine(database_url)
    # given three running claims of this worker, one of another, and a finished one
    for n in range(3):
        assert idempotency.claim(eng, f"mine{n}", "t", 1, owner=f"{n:032d}").acquired
    assert idempotency.claim(eng, "theirs", "t", 1, owner="f" * 32).acquired
    assert idempotency.claim(eng, "finished", "t", 1, owner="e" * 32).acquired
    idempotency.complete(eng, "finished", 1, "e" * 32)
    mine = {f"{n:032d}" for n in range(3)}
    # when the heartbeat renews this worker's runs (and the finished one's token)
    with statements(eng) as seen:
        renewed = idempotency.renew(eng, mine | {"e" * 32}, 60)
    # then one statement extended exactly the three running claims
    assert renewed == 3
    assert len([sql for sql in seen if sql.lstrip().upper().startswith("UPDATE")]) == 1
    assert all(_lease(eng, f"mine{n}") > time.time() + 50 for n in range(3))
    assert _lease(eng, "theirs") < time.time() + 2
    assert not idempotency.claim(eng, "mine0", "t", 1).acquired  # still held


def test_renew_of_no_runs_touches_no_database(database_url: str) -> None:
    eng = engine(database_url)
    with statements(eng) as seen:
        assert idempotency.renew(eng, set(), 60) == 0
    assert seen == []


def test_a_claim_not_renewed_expires_after_its_short_lease(database_url: str) -> None:
    eng = engine(database_url)
    assert idempotency.claim(eng, "dead", "t", 0.2, owner="d" * 32).acquired
    idempotency.renew(eng, {"a" * 32}, 60)  # the worker renews its live runs, not this one
    time.sleep(0.3)
    taken = idempotency.claim(eng, "dead", "t", 60)
    assert taken.acquired
    assert taken.owner != "d" * 32


def _request(token: str | None, started: float | None, hard: float | None) -> Any:
    conf = SimpleNamespace(task_time_limit=300)
    task = SimpleNamespace(time_limit=None, app=SimpleNamespace(conf=conf))
    return SimpleNamespace(
        _request_dict={RUN_TOKEN: token} if token else {},
        time_start=started,
        time_limits=(None, hard),
        task=task,
    )


def test_run_tokens_are_those_of_started_runs_within_their_hard_time_limit() -> None:
    now = 1_000.0
    requests = [
        _request("a" * 32, now - 5, 10),  # running, within its limit
        _request("b" * 32, now - 11, 10),  # past its hard limit: the limit stays a cap
        _request("c" * 32, None, 10),  # not started yet
        _request(None, now - 1, 10),  # no token (not our Request)
        _request("d" * 32, now - 299, None),  # the app's default limit (300 s)
        _request("e" * 32, now - 301, None),
    ]
    assert run_tokens(requests, now=now) == {"a" * 32, "d" * 32}


def test_release_runs_frees_only_the_running_claims_of_lost_runs(database_url: str) -> None:
    eng = engine(database_url)
    # given a lost run's claim, a live run's claim, and a finished claim of the lost run
    assert idempotency.claim(eng, "lost", "t", 60, owner="l" * 32).acquired
    assert idempotency.claim(eng, "live", "t", 60, owner="a" * 32).acquired
    assert idempotency.claim(eng, "sent", "t", 60, owner="l" * 32).acquired
    idempotency.complete(eng, "sent", 1, "l" * 32)
    # when the pool reports the run lost
    assert idempotency.release_runs(eng, {"l" * 32}) == 1
    # then its running claim is free at once; the others stand
    assert idempotency.claim(eng, "lost", "t", 60).acquired
    assert not idempotency.claim(eng, "live", "t", 60).acquired
    assert idempotency.claim(eng, "sent", "t", 60).done
