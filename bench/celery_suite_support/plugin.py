"""pytest plugin that ``bench/celery_suite.py`` loads into Celery's integration suite (``-p``).

* The suite's tasks write to Redis db 0 (``t.integration.tasks.get_redis_connection``); here they
  use the run's own db (``CELERY_SUITE_REDIS_DB``), the one its results go to and the runner
  flushes, so nothing else on that Redis is touched.
* ``CELERY_SUITE_REPORT``: each test's phase outcomes are appended there as JSON lines as they
  happen, so a group stopped at its timeout still tells what ran.
* ``CELERY_SUITE_INSTALL=1``: every app the suite's fixtures make (``celery_session_app``, the
  worker's, and ``celery_app``, each test's) gets ``taskapp.sqs.install(app)`` before use.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator
from typing import Any

import celery  # the installed one: the sdist's own copy must not shadow it
import pytest

assert celery  # imported for its side effect on sys.modules

_APP_FIXTURES = ("celery_app", "celery_session_app")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before t/integration/conftest.py is imported: it imports get_redis_connection by name.
    sys.path.append(str(early_config.rootpath))
    from t.integration import tasks

    db = int(os.environ["CELERY_SUITE_REDIS_DB"])

    def get_redis_connection() -> Any:
        from redis import StrictRedis

        host = os.environ.get("REDIS_HOST", "127.0.0.1")
        port = int(os.environ.get("REDIS_PORT", "6379"))
        return StrictRedis(host=host, port=port, db=db, socket_timeout=None)

    # conftest.py (and test_canvas.py through it) import it by name from here, after this hook.
    tasks.get_redis_connection = get_redis_connection


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[Any]:
    app = yield
    if fixturedef.argname in _APP_FIXTURES and os.environ.get("CELERY_SUITE_INSTALL") == "1":
        from taskapp.sqs import install  # type: ignore[attr-defined]

        install(app)
    return app


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get("CELERY_SUITE_REPORT")
    if not path:
        return
    outcome = report.outcome
    if hasattr(report, "wasxfail"):  # xfail: skipped when it failed, failed when strict-passed
        outcome = "skipped" if report.skipped else outcome
    error = ""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        error = crash.message if crash is not None else str(report.longrepr).splitlines()[-1]
    record = {"nodeid": report.nodeid, "when": report.when, "outcome": outcome, "error": error}
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")
