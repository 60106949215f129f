"""Start-up checks (taskapp/preflight.py): worker, beat and Flower refuse a database that is not
at the Alembic heads, and a worker refuses missing queues or a missing bucket, in one line each
and with status 2; the embedded default database upgrades itself instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from config.settings import Settings
from taskapp import preflight
from taskapp.db import alembic_config, engine, upgrade
from taskapp.local.net import free_port
from tests.support.databases import postgres_database
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _upgraded_rows() -> str:
    """The version rows ``taskapp db upgrade`` leaves in a new database, as the line names them."""
    url = f"sqlite:///{tempfile.mkdtemp()}/reference.db"
    upgrade(url)
    with engine(url).connect() as conn:
        return ", ".join(
            sorted(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        )


HEADS = _upgraded_rows()
#: A role's command line after ``celery -A taskapp``.
ROLES = {
    "worker": ["worker", "-P", "solo", "-Q", "default", "--loglevel=INFO"],
    "beat": ["beat", "--loglevel=INFO"],
    "flower": ["flower", "--address=127.0.0.1"],
}


def start(
    role: str, env: dict[str, str], cwd: Path = ROOT, timeout: float = 120
) -> tuple[int, str]:
    """Run ``celery -A taskapp ROLE`` until it exits (killed by PID after ``timeout``)."""
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", *ROLES[role]]
    if role == "flower":
        argv.append(f"--port={free_port()}")
        argv.append(f"--conf={ROOT / 'config/flowerconfig.py'}")
    if role == "beat":
        # a schedule file of its own, never in the checkout (cwd may be the repo root)
        argv.append(f"--schedule={Path(tempfile.mkdtemp(prefix='beat-')) / 'schedule'}")
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"{role} kept running: it started instead of refusing\n{err[-2000:]}")
    return proc.returncode, err


def taskapp_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("taskapp: ")]


def with_url(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"database_url": type(settings.database_url)(url)})


# --- the database, in a real worker, beat and Flower ---


@pytest.mark.slow
@pytest.mark.parametrize("role", ["worker", "beat", "flower"])
def test_a_role_refuses_an_unmigrated_database_in_one_line(
    role: str, blank_database_url: str, provisioned: Any
) -> None:
    # given a new database nobody migrated (PostgreSQL, or SQLite at a non-default path)
    # when the role starts against it
    code, err = start(role, {"TASKAPP_DATABASE_URL": blank_database_url})
    # then it exits 2 with one line: the current and expected revisions, and the command
    assert code == 2, err[-3000:]
    expected = (
        f"taskapp: database {blank_database_url} is at revision none, expected {HEADS}: "
        "run `taskapp db upgrade`"
    )
    assert taskapp_lines(err) == [expected], err[-3000:]
    assert "Traceback" not in err
    # and it created nothing: still no table, not even Alembic's
    if blank_database_url.startswith("sqlite"):
        assert not Path(blank_database_url.removeprefix("sqlite:///")).exists()


@pytest.mark.slow
def test_the_refusal_never_shows_the_database_password(provisioned: Any) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    with postgres_database() as url:
        # given a blank PostgreSQL database reached with a password in the URL
        with_password = url.replace("postgres@", f"postgres:{secret}@", 1)
        # when a worker starts against it
        code, err = start("worker", {"TASKAPP_DATABASE_URL": with_password})
    # then the line names the database with the password masked, and never the password
    assert code == 2, err[-3000:]
    assert secret not in err
    [line] = taskapp_lines(err)
    assert url.replace("postgres@", "postgres:***@", 1) in line, line


def test_an_unreachable_database_is_one_line_without_the_password(settings: Settings) -> None:
    # given a PostgreSQL URL with a password, on a port where nothing listens
    secret = f"pw-{uuid.uuid4().hex}"
    url = f"postgresql+psycopg://app:{secret}@127.0.0.1:{free_port()}/nowhere"
    # when the schema is checked
    problem = preflight.schema_problem(with_url(settings, url))
    # then the problem is one line that says so, with the password masked
    assert problem is not None
    assert "\n" not in problem
    assert problem.startswith("database postgresql+psycopg://app:***@127.0.0.1:"), problem
    assert "cannot be read" in problem
    assert secret not in problem


# --- the database, in-process: partial, unknown, current, and the embedded default ---


def test_a_database_behind_on_some_branches_names_its_revisions(
    settings: Settings, tmp_path: Path
) -> None:
    # given a database migrated to the baseline and one branch's first step only
    url = f"sqlite:///{tmp_path}/partial.db"
    command.upgrade(alembic_config(url), "platform_0001")
    # when checked, then the current revision and every expected head are named
    assert preflight.schema_problem(with_url(settings, url)) == (
        f"database {url} is at revision platform_0001, expected {HEADS}: run `taskapp db upgrade`"
    )
    # and once upgraded, there is nothing to say
    upgrade(url)
    assert preflight.schema_problem(with_url(settings, url)) is None


def test_a_revision_this_code_does_not_know_is_not_sent_to_upgrade(
    settings: Settings, tmp_path: Path
) -> None:
    # given a database migrated by newer code (a revision we have no script for)
    url = f"sqlite:///{tmp_path}/newer.db"
    upgrade(url)
    with engine(url).begin() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES ('platform_0099')"))
    # when checked
    problem = preflight.schema_problem(with_url(settings, url))
    # then it says the revision is unknown, instead of suggesting an upgrade that cannot help
    assert problem is not None
    assert "platform_0099, which this code does not know" in problem
    assert "taskapp db upgrade" not in problem


def test_the_embedded_default_database_upgrades_itself_and_says_so(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # given the default TASKAPP_DATABASE_URL (SQLite under var/), where none exists yet
    monkeypatch.chdir(tmp_path)
    default = Settings.model_fields["database_url"].default
    embedded = settings.model_copy(update={"database_url": default})
    # when checked
    assert preflight.schema_problem(embedded) is None
    # then it was upgraded to every head, and one line said so
    line = capsys.readouterr().err.strip()
    assert line == (
        f"taskapp: upgraded the embedded database var/taskapp.db from revision none to {HEADS}"
    )
    assert preflight.schema_problem(embedded) is None
    assert capsys.readouterr().err == ""  # nothing to do the second time, nothing said


def test_the_same_file_named_explicitly_is_not_upgraded(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given TASKAPP_DATABASE_URL set to a SQLite file that is not the default
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/var/taskapp.db"
    # when checked, then it is refused, and no file was created
    assert "run `taskapp db upgrade`" in (preflight.schema_problem(with_url(settings, url)) or "")
    assert not (tmp_path / "var" / "taskapp.db").exists()


@pytest.mark.slow
def test_beat_on_the_embedded_default_upgrades_it_and_starts(tmp_path: Path) -> None:
    # given no TASKAPP_DATABASE_URL, in a directory without var/
    env = {k: v for k, v in os.environ.items() if k != "TASKAPP_DATABASE_URL"}
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", "beat", "--loglevel=INFO"]
    argv.append(f"--schedule={tmp_path / 'schedule'}")
    err_path = tmp_path / "beat.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            argv, env=env, cwd=tmp_path, stderr=err, stdout=err, start_new_session=True
        )
    try:
        # when beat starts, then it says it upgraded var/taskapp.db, and goes on running

        said = (
            f"taskapp: upgraded the embedded database var/taskapp.db from revision none to {HEADS}"
        )
        wait_for(
            lambda: said in err_path.read_text() or proc.poll() is not None,
            "beat neither upgraded the database nor exited",
            timeout=120,
        )
        # and beat goes on running, with the database at every head
        assert proc.poll() is None, err_path.read_text()[-3000:]
        assert (tmp_path / "var" / "taskapp.db").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# --- queues and the bucket ---


@pytest.fixture
def fresh_prefix() -> str:
    return f"pf{uuid.uuid4().hex[:8]}-"


@pytest.mark.slow
def test_a_worker_refuses_missing_queues_and_bucket_naming_them(
    provisioned: Any, fresh_prefix: str
) -> None:
    # given a migrated database, but a queue prefix and a bucket nobody provisioned
    bucket = f"{fresh_prefix}bucket"
    env = {"TASKAPP_QUEUE_PREFIX": fresh_prefix, "TASKAPP_BUCKET": bucket}
    # when a worker of the default queue starts
    code, err = start("worker", env)
    # then it exits 2 naming the queue and its DLQ, the bucket, and the commands that create them
    assert code == 2, err[-3000:]
    assert taskapp_lines(err) == [
        f"taskapp: queues missing: {fresh_prefix}default, {fresh_prefix}default-dlq: "
        "run `taskapp queues provision`",
        f"taskapp: bucket {bucket} does not exist: run `taskapp aws bucket`",
    ], err[-3000:]
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_worker_on_predefined_queues_refuses_missing_ones_in_one_line(
    provisioned: Any, fresh_prefix: str
) -> None:
    # given production mode (queue URLs resolved when the config loads), nothing provisioned
    env = {"TASKAPP_QUEUE_PREFIX": fresh_prefix, "TASKAPP_PREDEFINED_QUEUES": "true"}
    # when a worker starts
    code, err = start("worker", env)
    # then it exits 2 with one line naming every missing queue, not a QueueDoesNotExist traceback
    assert code == 2, err[-3000:]
    (line,) = taskapp_lines(err)
    assert line.startswith(f"taskapp: queues missing: {fresh_prefix}default, "), line
    assert line.endswith(": run `taskapp queues provision`"), line
    assert f"{fresh_prefix}email-dlq" in line
    assert "Traceback" not in err


class CallCounter:
    """Counts the AWS operations a client makes (botocore's own event hook, no mock)."""

    def __init__(self, client: Any) -> None:
        self.operations: list[str] = []
        client.meta.events.register("before-call.*.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


@pytest.fixture
def counted_sqs(settings: Settings) -> tuple[Any, CallCounter]:
    import boto3

    sqs = boto3.session.Session().client(
        "sqs", region_name=settings.region, endpoint_url=settings.aws_endpoint_url
    )
    return sqs, CallCounter(sqs)


def test_missing_queues_costs_one_list_call_when_all_exist(
    counted_sqs: tuple[Any, CallCounter], fresh_prefix: str
) -> None:
    sqs, counter = counted_sqs
    # given a worker's queues, some of them created
    names = ["email", "email-dlq", "email-high", "email-high-dlq"]
    for name in names[:3]:
        sqs.create_queue(QueueName=fresh_prefix + name)
    counter.operations.clear()
    # when checked, then only the one that does not exist is missing
    assert preflight.missing_queues(sqs, fresh_prefix, names) == ["email-high-dlq"]
    # and it cost one ListQueues, plus one GetQueueUrl for the name it did not list
    assert counter.operations == ["ListQueues", "GetQueueUrl"]
    sqs.create_queue(QueueName=fresh_prefix + "email-high-dlq")
    counter.operations.clear()
    assert preflight.missing_queues(sqs, fresh_prefix, names) == []
    assert counter.operations == ["ListQueues"]


def test_a_worker_needs_the_queues_it_consumes_and_their_dlqs() -> None:
    # given a worker started with -Q email,images-high (its app's queue selection)
    from types import SimpleNamespace

    from kombu import Queue

    selected = {name: Queue(name) for name in ("email", "images-high")}
    app = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from=selected)))
    # then it needs those and their DLQs, nothing else
    assert preflight.worker_queue_names(app) == [
        "email",
        "email-dlq",
        "images-high",
        "images-high-dlq",
    ]


def test_a_provisioned_worker_passes(app: Any, provisioned: Any) -> None:
    # given everything provisioned and migrated (the session's set-up)
    class Worker:
        pass

    sender = Worker()
    sender.app = app  # type: ignore[attr-defined]
    # when the worker_init check runs, then it returns (no SystemExit)
    preflight.check_worker(sender)
