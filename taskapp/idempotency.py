"""Exactly-once effect: every task runs under an idempotency key with a lease and a stored result.

SQS delivers at least once. Before a task runs, its key (the task id, or the caller's
``idempotency_key``) is claimed in the application database with a lease. A second delivery of a
finished key returns the stored result without running the task again; a delivery that finds a
live lease waits for it; a lease left by a crashed worker expires, so the work is finished by
whoever comes next.

In a worker the lease is short (three visibility-heartbeat intervals) and the worker's heartbeat
renews the leases of the runs it still has, all in one statement (``renew``): a claim dies with
its holder, a SIGKILLed worker or pool child, within three intervals, as its SQS message comes
back. Outside a worker (no heartbeat) a claim holds for the task's hard time limit.

Each claim carries an owner token. Completing or releasing a key only touches the caller's own
claim: a holder that outlived its lease (and was taken over) cannot free its successor's claim
and so let a third delivery in.

Each key also records the lowest attempt (Celery's ``retries``) still allowed to run it. A failed
attempt that publishes its retry raises it (``release(..., next_attempt=)``), so a second delivery
of the attempt that failed (SQS redelivers a message whose ack was late; a send retried after a
lost response duplicates one) is superseded: it neither runs again nor publishes a second retry,
which would start a second chain. A released key stays as a ``free`` row for that reason.

Task bodies get this from ``TaskappTask``; code that must be exactly-once outside a task body
(``taskapp.email.service``, which the CLI also calls) uses ``held()`` under its own key.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    String,
    Table,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from taskapp.db import metadata
from taskapp.errors import PermanentError

__all__ = [
    "idempotency_keys",
    "Claim",
    "Held",
    "KeyBusy",
    "InvalidIdempotencyKey",
    "MAX_STORED_KEY",
    "key_for",
    "claim",
    "renew",
    "release_runs",
    "complete",
    "complete_patiently",
    "UNREACHABLE",
    "release",
    "reopen",
    "is_done",
    "held",
    "expire",
]

logger = logging.getLogger(__name__)

#: More writes for a claim's or completion's transaction (``taskapp.results``: Celery's row).
Also = Callable[[Connection], object] | None

#: A claim is held (``running``), finished (``done``), or given up after a failure (``free``).
RUNNING, DONE, FREE = "running", "done", "free"
#: Characters in a stored key, ``<task name>:<key>`` (the column's length).
MAX_STORED_KEY = 300

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(MAX_STORED_KEY), primary_key=True),
    Column("task_name", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    # Epoch seconds: compared the same way on SQLite and PostgreSQL, whatever the time zone.
    Column("lease_until", Float, nullable=False),
    Column("updated_at", Float, nullable=False, index=True),
    Column("result", JSON),
    Column("owner", String(32)),  # the claim's holder; NULL on rows older than platform_0003
    # The lowest attempt (Celery's request.retries) that may still claim the key (platform_0006).
    Column("attempt", Integer, nullable=False, server_default="0"),
)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: run it, return the stored result, or wait."""

    acquired: bool
    done: bool = False
    result: Any = None
    wait_seconds: float = 0.0
    #: The token that completes or releases an acquired claim.
    owner: str | None = None
    #: A delivery of an attempt that already failed and handed on to its retry: drop it.
    superseded: bool = False


class InvalidIdempotencyKey(PermanentError, ValueError):
    """A key that cannot be stored: not a string, empty, too long, or not printable.

    Checked before the database sees it: PostgreSQL refuses an over-long key with ``DataError``
    and a NUL with ``ValueError``, which a task would report as a crash; SQLite stores either.
    Also a ``ValueError``, so code that reads keys from a message treats it as malformed input.
    """

    field = "idempotency_key"


def key_for(task_name: str, key: str) -> str:
    """The stored key of ``task_name`` run under ``key``: keys of different tasks never meet."""
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(f"idempotency_key: expected a string, got {type(key).__name__}")
    room = MAX_STORED_KEY - len(task_name) - 1
    if not 1 <= len(key) <= room:
        raise InvalidIdempotencyKey(
            f"idempotency_key: {len(key)} characters; {task_name} takes 1 to {room} "
            f"(stored as '<task name>:<key>' in at most {MAX_STORED_KEY})"
            if key
            else "idempotency_key: empty"
        )
    _check_printable(key)
    return f"{task_name}:{key}"


def _check_stored(stored: str) -> None:
    if len(stored) > MAX_STORED_KEY:
        raise InvalidIdempotencyKey(
            f"idempotency_key: the stored key has {len(stored)} characters, "
            f"over the column's {MAX_STORED_KEY}"
        )
    _check_printable(stored)


def _check_printable(key: str) -> None:
    # Control characters, line breaks and NUL: PostgreSQL refuses NUL, and the others end up
    # in logs, Message-IDs and headers where they do harm.
    for position, char in enumerate(key):
        if not char.isprintable():
            raise InvalidIdempotencyKey(
                f"idempotency_key: character {position} is U+{ord(char):04X}, not printable"
            )


def claim(
    engine: Engine,
    key: str,
    task_name: str,
    lease_seconds: float,
    owner: str | None = None,
    attempt: int = 0,
    also: Also = None,
) -> Claim:
    """Take the lease on ``key``, or report that it is done, held by a live lease, or superseded.

    ``owner`` (at most 32 characters, unique per run) is the token the claim is held, renewed
    and completed under; by default a fresh one. ``attempt`` is the delivery's retry count: an
    attempt below the key's recorded floor is superseded. ``also`` runs in the transaction that
    acquires the claim, and only then.
    """
    _check_stored(key)
    now, owner = time.time(), owner or uuid.uuid4().hex
    row = {
        "owner": owner,
        "key": key,
        "task_name": task_name,
        "state": RUNNING,
        "lease_until": now + lease_seconds,
        "updated_at": now,
        "result": None,
        "attempt": attempt,
    }
    try:
        with engine.begin() as conn:
            conn.execute(insert(idempotency_keys), row)
            if also is not None:
                also(conn)
        return Claim(acquired=True, owner=owner)
    except IntegrityError:
        pass
    keys = idempotency_keys.c
    with engine.begin() as conn:
        current = conn.execute(
            select(keys.state, keys.lease_until, keys.result, keys.attempt).where(keys.key == key)
        ).one_or_none()
        if current is None:  # expired between our insert and select: try once more
            return claim(engine, key, task_name, lease_seconds, owner, attempt, also)
        if current.state == DONE:
            return Claim(acquired=False, done=True, result=current.result)
        if attempt < current.attempt:
            return Claim(acquired=False, superseded=True)
        taken = conn.execute(
            update(idempotency_keys)
            .where(
                keys.key == key,
                keys.attempt <= attempt,
                or_(keys.state == FREE, (keys.state == RUNNING) & (keys.lease_until < now)),
            )
            .values(
                state=RUNNING,
                lease_until=now + lease_seconds,
                updated_at=now,
                owner=owner,
                attempt=attempt,
            )
        ).rowcount
        if taken and also is not None:
            also(conn)
    if taken:
        return Claim(acquired=True, owner=owner)
    return Claim(acquired=False, wait_seconds=max(current.lease_until - now, 0.0))


def renew(engine: Engine, owners: Collection[str], lease_seconds: float) -> int:
    """Extend to ``lease_seconds`` from now the running claims held by ``owners``; return how many.

    One statement for all of them, whatever their number: a worker calls it once per heartbeat
    with the tokens of the runs it still has. No owners, no statement.
    """
    if not owners:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.state == RUNNING,
                idempotency_keys.c.owner.in_(sorted(owners)),
            )
            .values(lease_until=time.time() + lease_seconds)
        ).rowcount


def release_runs(engine: Engine, owners: Collection[str]) -> int:
    """Give up every running claim held by ``owners`` (runs known dead); return how many.

    Their attempts may run again: the key's attempt floor stays where it is.
    """
    if not owners:
        return 0
    with engine.begin() as conn:
        return conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.state == RUNNING,
                idempotency_keys.c.owner.in_(sorted(owners)),
            )
            .values(state=FREE, updated_at=time.time())
        ).rowcount


def complete(
    engine: Engine, key: str, result: Any, owner: str | None = None, also: Also = None
) -> bool:
    """Record ``key`` as done with its (JSON-serializable) result; False if the claim was lost.

    With ``owner``, only that claim is completed (it may have been taken over meanwhile).
    ``also`` runs in the same transaction, whether or not the claim was still ours: the work
    was done either way.
    """
    with engine.begin() as conn:
        done = conn.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.key == key, *_owned_by(owner))
            .values(state=DONE, result=result, updated_at=time.time())
        ).rowcount
        if also is not None:
            also(conn)
    return bool(done)


#: What the database raises when it cannot be reached (SQLAlchemy wraps the driver's error).
UNREACHABLE: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    PoolTimeout,
)


def complete_patiently(
    engine: Engine,
    key: str,
    result: Any,
    owner: str | None = None,
    also: Also = None,
    patience: float = 60.0,
) -> bool:
    """``complete``, tried again while the database is unreachable, for ``patience`` seconds.

    The work is done: giving up at the first refused write would leave the claim to expire and
    the work to run again when its message comes back. Pauses start at 0.5 s and double up to
    8 s; after ``patience`` seconds from the first failure the error is raised.
    """
    deadline, pause = None, 0.5
    while True:
        try:
            return complete(engine, key, result, owner, also=also)
        except UNREACHABLE as exc:
            now = time.monotonic()
            deadline = now + patience if deadline is None else deadline
            if now + pause > deadline:
                raise
            logger.warning("could not record %s done (%r); again in %.1f s", key, exc, pause)
            time.sleep(pause)
            pause = min(pause * 2, 8.0)


def release(
    engine: Engine, key: str, owner: str | None = None, next_attempt: int | None = None
) -> None:
    """Give up the lease after a failure, so a retry or redelivery can claim the key.

    ``next_attempt``: the failed attempt published its retry, so only that attempt or a later
    one may claim the key from now on (a redelivery of the failed one is superseded).
    """
    values: dict[str, Any] = {"state": FREE, "updated_at": time.time()}
    if next_attempt is not None:
        values["attempt"] = next_attempt
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.key == key,
                idempotency_keys.c.state == RUNNING,
                *_owned_by(owner),
            )
            .values(values)
        )


def reopen(engine: Engine, key: str, attempt: int) -> None:
    """Let ``attempt`` claim a freed key again: the retry it meant to hand on to was never sent."""
    with engine.begin() as conn:
        conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.key == key,
                idempotency_keys.c.state == FREE,
                idempotency_keys.c.attempt > attempt,
            )
            .values(attempt=attempt)
        )


def is_done(engine: Engine, key: str) -> bool:
    """Whether ``key`` was claimed and completed (a later delivery is a duplicate)."""
    with engine.connect() as conn:
        state = conn.execute(
            select(idempotency_keys.c.state).where(idempotency_keys.c.key == key)
        ).scalar()
    return state == DONE


def _owned_by(owner: str | None) -> list[Any]:
    return [] if owner is None else [idempotency_keys.c.owner == owner]


class KeyBusy(Exception):
    """Another holder has a live lease on the key."""

    def __init__(self, key: str, wait_seconds: float) -> None:
        super().__init__(f"{key!r} is held by another delivery for {wait_seconds:.0f}s more")
        self.wait_seconds = wait_seconds


@dataclass
class Held:
    """A claim held by ``held()``: the stored result if the key is done, else ours to set."""

    done: bool
    result: Any = None


@contextmanager
def held(
    engine: Engine, key: str, task_name: str, lease_seconds: float, owner: str | None = None
) -> Iterator[Held]:
    """Run the block at most once per ``key``: set ``Held.result`` in it to record the key done.

    A done key yields ``done=True`` with the stored result (the block must not redo the work);
    a live lease raises ``KeyBusy``. An exception, or leaving ``result`` unset, releases the
    claim. Recording the work done is tried again while the database is unreachable, for half
    the lease (while the claim still blocks duplicates); if it still fails, the claim stays and
    blocks duplicates for its lease: failing now would only invite a repeat. ``owner`` is as for
    ``claim``.
    """
    current = claim(engine, key, task_name, lease_seconds, owner)
    if current.done:
        yield Held(done=True, result=current.result)
        return
    if not current.acquired:
        raise KeyBusy(key, current.wait_seconds)
    state = Held(done=False)
    try:
        yield state
    except BaseException:
        _release_quietly(engine, key, current.owner)
        raise
    if state.result is None:
        _release_quietly(engine, key, current.owner)
        return
    try:
        recorded = complete_patiently(
            engine, key, state.result, current.owner, patience=min(60.0, lease_seconds / 2)
        )
        if not recorded:
            logger.warning("idempotency key=%s was taken over before it was recorded", key)
    except UNREACHABLE as exc:
        logger.warning("idempotency key=%s could not be recorded: %r", key, exc)


def _release_quietly(engine: Engine, key: str, owner: str | None) -> None:
    with suppress(OperationalError):  # the claim expires after its lease anyway
        release(engine, key, owner)


def expire(engine: Engine, older_than_seconds: float) -> int:
    """Delete finished and freed keys last touched more than ``older_than_seconds`` ago; return
    how many."""
    cutoff = time.time() - older_than_seconds
    with engine.begin() as conn:
        return conn.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.state.in_((DONE, FREE)),
                idempotency_keys.c.updated_at < cutoff,
            )
        ).rowcount
