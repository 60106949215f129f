"""Session fixtures: one moto server, one queue prefix, one in-process worker per test session.

The session's environment is set (``tests.support.session.start``) before ``taskapp`` is
configured, at collection. Helpers live in ``tests/support/``; only fixtures live here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import session

LOCAL_AWS = session.start()

from celery.contrib.testing import tasks as _celery_testing_tasks  # noqa: E402,F401

import tests.tasks  # noqa: E402,F401  (tasks used only by tests)
from config.settings import Settings, load_settings  # noqa: E402
from taskapp.app import app as celery_app  # noqa: E402
from taskapp.aws import client  # noqa: E402
from taskapp.aws.s3 import ensure_bucket  # noqa: E402
from taskapp.queues import app_specs  # noqa: E402
from taskapp.sqs.admin.provision import provision  # noqa: E402
from tests.support.databases import postgres_database  # noqa: E402


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
def migrated_db(settings: Settings) -> str:
    """The session database (the one the worker and tasks use), with every migration applied.

    The demo's sample tables too: the session runs under the demo's retention rules, whose
    tables a worker checks when it starts (else it logs ``cleanup.invalid_rules``).
    """
    from taskapp.db import upgrade
    from taskapp.sample.schema import install

    url = settings.database_url.get_secret_value()
    upgrade(url)
    install(url)
    tests.tasks.effects_metadata.create_all(tests.tasks.engine(url))
    return url


@pytest.fixture(scope="session")
def session_bucket(s3: Any, settings: Settings) -> str:
    """The session's bucket (``TASKAPP_BUCKET``, shared with the worker), created once."""
    ensure_bucket(s3, settings.bucket)
    return settings.bucket


@pytest.fixture(scope="session")
def provisioned(
    app: Any, settings: Settings, sqs: Any, migrated_db: str, session_bucket: str
) -> list[Any]:
    """Every queue and DLQ of this session on the moto server; the bucket and the DB ready."""
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


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of its own for one test: a SQLite file, and a new PostgreSQL
    database on 127.0.0.1 (narrow to one with ``parametrize("database_url", [...],
    indirect=True)``)."""
    from taskapp.db import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/app.db"
        upgrade(url)
        yield url
        return
    with postgres_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no migrations applied (for migration tests), on both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/blank.db"
        return
    with postgres_database() as url:
        yield url
