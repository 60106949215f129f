"""Start-up checks of the worker, beat and Flower: the database schema, the queues, the bucket.

Why: a worker started against a database nobody had migrated (a new ``TASKAPP_DATABASE_URL``)
started fine and then failed every task: ``no such table: idempotency_keys`` from
``taskapp.ping``, ``email.send`` retrying on "database unavailable", cleanup logging invalid
rules for tables that do not exist. Against queues nobody provisioned it was worse: kombu
creates a missing queue on demand, without its dead-letter queue, redrive policy or visibility
timeout, and the worker looked healthy. Django warns about unapplied migrations; we refuse.

What: ``worker_init`` runs :func:`check_worker` (schema, the queues it consumes and their DLQs,
the bucket); ``celery beat`` runs :func:`check_beat` (schema) before its banner; Flower's set-up
(``taskapp/flower_setup.py``) runs :func:`check_flower` (schema). Each problem is one line on
stderr that names the fix, and the process exits with status 2, as a bad setting does
(``config/celery.py``). The schema must be at *every* Alembic head: each task family is its own
migration branch (``taskapp/db.py``). The embedded default database (``TASKAPP_DATABASE_URL``
unset: SQLite under ``var/``) is upgraded instead, under a file lock so that a worker and beat
started together do not both migrate, and the process says so in one line.

Cost, per start: reading the migration scripts and one query for the schema; one ListQueues
with the queue prefix (plus one GetQueueUrl per name it did not list, since ListQueues is
eventually consistent on AWS, so a queue created a moment ago is not refused); one HeadBucket.
Measured in ``tests/operate`` and reported with the change that added this module.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

__all__ = [
    "Refusal",
    "bucket_problem",
    "check_beat",
    "check_flower",
    "check_worker",
    "connect",
    "missing_queues",
    "queues_missing_line",
    "refuse",
    "schema_problem",
    "worker_queue_names",
]

UPGRADE_COMMAND = "taskapp db upgrade"
PROVISION_COMMAND = "taskapp queues provision"
BUCKET_COMMAND = "taskapp aws bucket"


class Refusal(Exception):
    """A reason this process must not start; ``str()`` is the one line to print."""


def connect() -> None:
    """Run the checks when a worker or beat starts (idempotent)."""
    from celery import signals
    from celery.apps.beat import Beat

    signals.worker_init.connect(check_worker, weak=False, dispatch_uid="taskapp.preflight")
    # Not beat_init: beat builds its scheduler first, and with it Celery's result backend,
    # which creates its tables in whatever database it finds (and fails where var/ is missing).
    if not getattr(Beat.run, "taskapp_preflight", False):
        Beat.run = _checked_first(Beat.run)  # type: ignore[method-assign]


def _checked_first(run: Any) -> Any:
    @functools.wraps(run)
    def checked_run(self: Any) -> Any:
        check_beat(self)
        return run(self)

    checked_run.taskapp_preflight = True  # type: ignore[attr-defined]
    return checked_run


def check_worker(sender: Any = None, **_: Any) -> None:
    """``worker_init``: the schema, the consumed queues and their DLQs, the bucket; else exit 2."""
    from config.settings import load_settings

    settings = load_settings()
    _exit_on(
        [
            lambda: schema_problem(settings),
            lambda: _queue_problem(settings, worker_queue_names(sender.app)),
            lambda: bucket_problem(settings),
        ]
    )


def check_beat(sender: Any = None, **_: Any) -> None:
    """``celery beat``, before its banner and scheduler: the schema; else exit 2."""
    from config.settings import load_settings

    settings = load_settings()
    _exit_on([lambda: schema_problem(settings)])


def check_flower() -> None:
    """Flower's set-up: the schema (its task pages read results from it); else exit 2."""
    from config.settings import load_settings

    settings = load_settings()
    _exit_on([lambda: schema_problem(settings)])


def refuse(line: str) -> NoReturn:
    """Print the one line ``taskapp: LINE`` and exit 2, as a failed start-up check does."""
    _say(line)
    raise SystemExit(2)


def queues_missing_line(names: Iterable[str]) -> str:
    """The one line for missing queues (full names), naming the command that creates them."""
    return f"queues missing: {', '.join(names)}: run `{PROVISION_COMMAND}`"


def _exit_on(checks: Iterable[Any]) -> None:
    # Celery logs and swallows an exception raised by a signal handler: only SystemExit stops it.
    problems = [problem for problem in (check() for check in checks) if problem]
    if problems:
        for problem in problems:
            _say(problem)
        raise SystemExit(2)


def _say(line: str) -> None:
    """Print ``taskapp: LINE`` on the real stderr, even where Celery made it a logger (beat)."""
    from celery.utils.log import LoggingProxy

    out = sys.__stderr__ if isinstance(sys.stderr, LoggingProxy) else sys.stderr
    print(f"taskapp: {line}", file=out, flush=True)


# --- the database schema ---


def _label(url: str) -> str:
    from config.settings import mask_password

    return mask_password(url)


def _revisions(names: Iterable[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def schema_problem(settings: Any) -> str | None:
    """Why the database cannot be used as it is (one line), or None; may upgrade the default."""
    from sqlalchemy.exc import SQLAlchemyError

    url = settings.database_url.get_secret_value()
    try:
        current, expected, known = _schema_state(url)
        if current == expected:
            return None
        if _is_embedded_default(settings) and current <= known:
            _upgrade_embedded(url)
            return None
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return (
            f"database {_label(url)} cannot be read ({type(exc).__name__}: {reason}): "
            "start it, or set TASKAPP_DATABASE_URL"
        )
    if not current <= known:
        return (
            f"database {_label(url)} is at revision {_revisions(current - known)}, which this "
            f"code does not know (expected {_revisions(expected)}): deploy the code that "
            "migrated it"
        )
    return (
        f"database {_label(url)} is at revision {_revisions(current)}, expected "
        f"{_revisions(expected)}: run `{UPGRADE_COMMAND}`"
    )


def _schema_state(url: str) -> tuple[set[str], set[str], set[str]]:
    """(the database's version rows, the rows ``taskapp db upgrade`` leaves, every known revision).

    Alembic keeps a row per head, except a head that another head ``depends_on`` (email_0002
    needs platform_0003): that one is covered by its dependant's row. So "up to date" means
    every revision ``upgrade`` applies is applied, and both sides are named as
    ``alembic current`` shows them. The demo's sample branch is the demo's to apply: optional.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from taskapp.db import SAMPLE_BRANCH, alembic_config, engine

    script = ScriptDirectory.from_config(alembic_config(url))
    heads = {
        head
        for head in script.get_heads()
        if SAMPLE_BRANCH not in script.get_revision(head).branch_labels
    }
    expected = {head for head in heads if head not in _ancestors(script, heads - {head})}
    known = {rev.revision for rev in script.walk_revisions()}
    path = _sqlite_path(url)
    if path is not None and not _exists(path):
        return set(), expected, known  # connecting would create an empty file
    with engine(url).connect() as connection, _quiet("alembic.runtime.migration"):
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current <= known and heads <= _ancestors(script, current) | current:
        current = expected  # every required revision is applied (the demo's may be too)
    return current, expected, known


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    # Reading the version says "Context impl SQLiteImpl." at INFO: noise in every start's log.
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        log.setLevel(level)


def _ancestors(script: Any, revisions: Iterable[str]) -> set[str]:
    """Every revision below ``revisions``, through ``down_revision`` and ``depends_on``."""
    seen: set[str] = set()
    todo = list(revisions)
    while todo:
        rev = script.get_revision(todo.pop())
        for parents in (rev.down_revision, rev.dependencies):
            for parent in (parents,) if isinstance(parents, str) else parents or ():
                name = script.get_revision(parent).revision
                if name not in seen:
                    seen.add(name)
                    todo.append(name)
    return seen


def _sqlite_path(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).exists()


def _is_embedded_default(settings: Any) -> bool:
    """Whether the database is the embedded default: TASKAPP_DATABASE_URL unset (or the same)."""
    default = type(settings).model_fields["database_url"].default
    return bool(settings.database_url.get_secret_value() == default.get_secret_value())


def _upgrade_embedded(url: str) -> None:
    """Upgrade the embedded SQLite file to every head, one process at a time; say so."""
    import fcntl
    from pathlib import Path

    from taskapp.db import upgrade

    path = Path(_sqlite_path(url) or "var/taskapp.db")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.upgrade-lock", "w") as lock:
        # A worker and beat started together: the second waits, then finds nothing to do.
        fcntl.flock(lock, fcntl.LOCK_EX)
        current, expected, _ = _schema_state(url)
        if current != expected:
            upgrade(url)
            _say(
                f"upgraded the embedded database {path} from revision {_revisions(current)} "
                f"to {_revisions(expected)}"
            )


# --- the queues and the bucket ---


def worker_queue_names(app: Any) -> list[str]:
    """The queues a worker of ``app`` consumes (after ``-Q``/``-X``) and their DLQs."""
    from taskapp.queues import dlq_name

    names: list[str] = []
    for queue in app.amqp.queues.consume_from.values():
        for name in (queue.name, dlq_name(queue.name)):
            if name not in names:
                names.append(name)
    return names


def missing_queues(sqs: Any, prefix: str, names: Iterable[str]) -> list[str]:
    """Which of ``names`` (without ``prefix``) do not exist: one ListQueues, then GetQueueUrl
    for each name it did not list."""
    from taskapp.aws.sqs import resolve_queue_urls

    _, missing = resolve_queue_urls(sqs, prefix, [prefix + name for name in names])
    return [name.removeprefix(prefix) for name in missing]


def _queue_problem(settings: Any, names: list[str]) -> str | None:
    from botocore.exceptions import BotoCoreError, ClientError

    from taskapp.aws import client

    try:
        # "quick": an endpoint that is down costs seconds here, not the default's minutes.
        sqs = client("sqs", settings, profile="quick")
        missing = missing_queues(sqs, settings.queue_prefix, names)
    except (BotoCoreError, ClientError):
        return None  # SQS unreachable or refusing: the broker connection reports that itself
    if not missing:
        return None
    return queues_missing_line(settings.queue_prefix + name for name in missing)


def bucket_problem(settings: Any) -> str | None:
    """One line if ``TASKAPP_BUCKET`` (claim checks, images, reports) does not exist, else None."""
    from botocore.exceptions import BotoCoreError, ClientError

    from taskapp.aws import client
    from taskapp.aws.s3 import bucket_is_missing

    try:
        client("s3", settings, profile="quick").head_bucket(Bucket=settings.bucket)
    except ClientError as exc:
        if not bucket_is_missing(exc):
            return None  # 403: this role may not list it, which says nothing about its existence
    except BotoCoreError:
        return None
    else:
        return None
    return f"bucket {settings.bucket} does not exist: run `{BUCKET_COMMAND}`"
