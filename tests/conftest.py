"""Session harness: one moto server, one queue prefix, one in-process worker per test session.

The environment is set before ``taskapp`` is configured (at collection), so the app, the worker
and every client built from settings talk to the session's moto server and queues.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskapp.local.aws import LocalAWS

SESSION_ID = uuid.uuid4().hex[:8]
TMP = Path(tempfile.mkdtemp(prefix=f"taskapp-{SESSION_ID}-"))
LOCAL_AWS = LocalAWS().start()
LOCAL_AWS.export()
os.environ.update(
    {
        "TASKAPP_QUEUE_PREFIX": f"t{SESSION_ID}-",
        "TASKAPP_BUCKET": f"t{SESSION_ID}-bucket",
        "TASKAPP_DATABASE_URL": f"sqlite:///{TMP}/taskapp.db",
        "TASKAPP_MAIL_DIR": str(TMP / "mail"),
        "TASKAPP_MAX_RECEIVES": "3",
        # Short polls keep the in-process worker responsive to shutdown at session end.
        "TASKAPP_WAIT_TIME_SECONDS": "1",
        "TASKAPP_FETCH_ALLOWLIST": "127.0.0.1",
        # Held messages are renewed every second, so tests can use 3 s visibility timeouts.
        "TASKAPP_HEARTBEAT_INTERVAL": "1",
    }
)
for var in ("TASKAPP_VISIBILITY_TIMEOUT", "TASKAPP_PREDEFINED_QUEUES", "AWS_REGION"):
    os.environ.pop(var, None)

from celery.contrib.testing import tasks as _celery_testing_tasks  # noqa: E402,F401

import tests.tasks  # noqa: E402,F401  (tasks used only by tests)
from config.settings import Settings, load_settings  # noqa: E402
from taskapp.app import app as celery_app  # noqa: E402
from taskapp.aws import client  # noqa: E402
from taskapp.sqs.provision import app_specs, ensure_bucket, provision  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "TASKAPP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    LOCAL_AWS.stop()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def app() -> Any:
    return celery_app


@pytest.fixture(scope="session")
def sqs(settings: Settings) -> Any:
    return client("sqs", settings)


@pytest.fixture(scope="session")
def s3(settings: Settings) -> Any:
    return client("s3", settings)


@pytest.fixture(scope="session")
def provisioned(app: Any, settings: Settings, sqs: Any, s3: Any) -> list[Any]:
    """Every queue, DLQ and the bucket of this session on the moto server; the DB migrated."""
    from taskapp.db import upgrade

    url = settings.database_url.get_secret_value()
    upgrade(url)
    tests.tasks.effects_metadata.create_all(tests.tasks.engine(url))
    ensure_bucket(s3, settings.bucket)
    return provision(sqs, settings, app_specs(app))


@pytest.fixture(scope="session")
def worker(app: Any, provisioned: list[Any]) -> Iterator[Any]:
    """The real app in a worker thread, consuming every queue, for the whole session."""
    from celery.contrib.testing.worker import start_worker

    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=True,
        ping_task_timeout=30,
        shutdown_timeout=30,
        loglevel="WARNING",
    ) as controller:
        yield controller


def prefixed_app(app: Any, prefix: str) -> Any:
    """A producer with ``app``'s routing and serializers but its own queue prefix."""
    from celery import Celery

    other = Celery(f"producer-{prefix}", set_as_current=False)
    other.conf.update(
        {
            key: app.conf[key]
            for key in (
                "broker_url",
                "broker_transport",
                "task_routes",
                "task_queues",
                "task_default_queue",
                "task_serializer",
                "accept_content",
                "result_backend",
                "result_extended",
                "result_accept_content",
            )
        }
    )
    other.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "queue_name_prefix": prefix,
    }
    return other


def queue_url(sqs: Any, settings: Settings, name: str) -> str:
    """URL of this session's queue ``name`` (without prefix)."""
    return str(sqs.get_queue_url(QueueName=settings.queue_prefix + name)["QueueUrl"])


def drain(sqs: Any, url: str, wait: float = 0, expect: int = 0) -> list[dict[str, Any]]:
    """Receive (and leave invisible for 30 s) every message currently in a queue.

    ``wait`` long-polls for the first message; with ``expect``, polling goes on until that many
    have arrived or ``wait`` seconds have passed (delayed messages turn visible one by one).
    """
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait
    while True:
        left = max(0, math.ceil(deadline - time.monotonic()))
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=left if len(messages) < max(expect, 1) else 0,
            VisibilityTimeout=30,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        batch = resp.get("Messages", [])
        messages += batch
        if not batch and (len(messages) >= expect or not left):
            return messages


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: a SQLite file, and a new PostgreSQL database on 127.0.0.1."""
    from taskapp.db import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/app.db"
        upgrade(url)
        yield url
        return
    yield from _postgres_database(upgrade)


@pytest.fixture(params=["sqlite", "postgres"])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no migrations applied (for migration tests), on both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/blank.db"
        return
    yield from _postgres_database(lambda url: None)


def _postgres_database(upgrade: Any) -> Iterator[str]:
    from sqlalchemy import create_engine, text

    name = f"taskapp_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        from taskapp.db import engine

        engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# moto's request log and botocore's retries are noise in test output.
import logging  # noqa: E402

for _name in ("werkzeug", "botocore", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
