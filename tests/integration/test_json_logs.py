"""TASKAPP_LOG_FORMAT against real processes: worker (and its pool child), beat, Flower, CLI.

Each process runs as users run it, on this module's own queue prefix (so the session worker
never takes its messages), with stdout and stderr in one file; with ``json`` every line of that
file must be a JSON object, and a task's lines must say which task, queue and attempt they are.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from taskapp.local.net import free_port
from taskapp.queues import app_specs
from taskapp.sqs.admin.provision import provision
from tests.integration.processes import ROOT
from tests.support.queues import prefixed_app
from tests.support.waiting import result_or_whereabouts, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def logs_env(
    app: Any, sqs: Any, settings: Settings, provisioned: Any
) -> tuple[Any, dict[str, str]]:
    """A producer and a process environment on queues of their own, text logs unless told."""
    prefix = settings.queue_prefix + "logs-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    env = {**os.environ, "TASKAPP_QUEUE_PREFIX": prefix}
    env.pop("TASKAPP_LOG_FORMAT", None)
    return prefixed_app(app, prefix), env


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of ``log`` as a JSON object; fails on the first line that is not one."""
    records = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"line {number} is not JSON: {line!r}\n{log.read_text()[-3000:]}")
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line!r}"
        records.append(record)
    return records


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` with stdout and stderr in ``log``; SIGKILLed by PID (its group) at exit."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextmanager
def worker(env: dict[str, str], name: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``celery -A taskapp worker`` as tests/integration/processes.py runs it, ready within 120 s
    (a loaded 2-core machine can take longer than that module's 30 s)."""
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", "worker", "--include=tests.tasks"]
    argv += ["-P", "prefork", "-c", "1", "-Q", "default", "-n", f"{name}@%h", "--loglevel=INFO"]
    with process(argv, env, log) as proc:
        wait_for(
            lambda: " ready." in log.read_text() or proc.poll() is not None,
            "the worker to become ready",
            timeout=120,
            interval=0.2,
        )
        assert proc.poll() is None, log.read_text()[-3000:]
        yield proc


def test_worker_and_pool_child_write_json_lines_with_the_task(
    logs_env: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    producer, env = logs_env
    log = tmp_path / "worker.log"
    # given a prefork worker started with TASKAPP_LOG_FORMAT=json
    with worker({**env, "TASKAPP_LOG_FORMAT": "json"}, "logs", log):
        # when a task fails once (retried) and then succeeds, in the pool child
        result = producer.send_task("tests.flaky", args=[uuid.uuid4().hex, 1])
        assert result_or_whereabouts(result, timeout=60, interval=0.2) == 2
        wait_for(
            lambda: "succeeded" in log.read_text(), "the success line", timeout=60, interval=0.2
        )
    records = json_lines(log)
    # then every line was JSON, the banner included
    assert any(r["message"].endswith("starting") and r.get("queues") for r in records)
    # and the lines written while the task ran name it, its queue and its attempt
    ours = [r for r in records if r.get("task_id") == result.id]
    assert {r["task_name"] for r in ours} == {"tests.flaky"}
    assert {r["queue"] for r in ours} == {"default"}
    retry = [r for r in ours if " retry: " in r["message"]]
    success = [r for r in ours if " succeeded in " in r["message"]]
    assert [r["retries"] for r in retry] == [0]
    assert [r["retries"] for r in success] == [1]
    assert {r["process"] for r in ours} != {"MainProcess"}  # written by the pool child
    # and Celery's args/kwargs/return-value extra stays out of the line
    assert not any("data" in r for r in records)


def test_worker_writes_text_by_default(
    logs_env: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    producer, env = logs_env
    log = tmp_path / "worker.log"
    # given a worker with no TASKAPP_LOG_FORMAT
    with worker(env, "text", log):
        result = producer.send_task("tests.add", args=[2, 3])
        assert result_or_whereabouts(result, timeout=60, interval=0.2) == 5
        wait_for(
            lambda: "succeeded" in log.read_text(), "the success line", timeout=60, interval=0.2
        )
    lines = log.read_text().splitlines()
    # then it writes Celery's text: the banner and `[time: LEVEL/Process] message` lines
    assert any("[queues]" in line for line in lines)
    assert any(f"tests.add[{result.id}] succeeded" in line for line in lines)
    assert not any(is_json_object(line) for line in lines)


def test_beat_writes_json_lines(logs_env: tuple[Any, dict[str, str]], tmp_path: Path) -> None:
    _, env = logs_env
    log = tmp_path / "beat.log"
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", "beat", "--loglevel=INFO"]
    argv.append(f"--schedule={tmp_path / 'celerybeat-schedule'}")
    # given beat started with TASKAPP_LOG_FORMAT=json
    with process(argv, {**env, "TASKAPP_LOG_FORMAT": "json"}, log) as beat:
        # (its start line comes right after Celery's "beat: Starting...")
        wait_for(
            lambda: "beat starting" in log.read_text() or beat.poll() is not None,
            "beat to log its start",
            timeout=60,
            interval=0.2,
        )
    # then its banner and every line after it are JSON
    records = json_lines(log)
    assert any(r["message"] == "beat starting" for r in records)
    assert any(r["message"] == "beat: Starting..." for r in records)


def test_flower_writes_json_lines_and_warns_about_the_placeholder_password(
    logs_env: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    _, env = logs_env
    log = tmp_path / "flower.log"
    port = free_port()
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", "flower"]
    argv += ["--address=127.0.0.1", f"--port={port}"]
    # given Flower started with TASKAPP_LOG_FORMAT=json and docker-compose.yml's default auth
    env = {**env, "TASKAPP_LOG_FORMAT": "json", "TASKAPP_FLOWER_BASIC_AUTH": "admin:change-me"}
    with process(argv, env, log) as flower:
        wait_for(
            lambda: "Visit me at" in log.read_text() or flower.poll() is not None,
            "Flower to start",
            timeout=120,
            interval=0.2,
        )
    # then what Flower logs through tornado is JSON too
    records = json_lines(log)
    assert any(r["message"].startswith("Visit me at") for r in records)
    # and its log says, as a warning, that the default password must change
    (warning,) = [r for r in records if "MUST CHANGE" in r["message"]]
    assert warning["level"] == "WARNING"
    assert "change-me" not in warning["message"]


PROBE = """
import logging
from taskapp.cli import main

@main.command("log-probe")
def probe():
    logging.getLogger("taskapp.probe").warning("probe %s", 42)

main(["log-probe"])
"""


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_cli_logs_in_the_chosen_format(
    logs_env: tuple[Any, dict[str, str]], log_format: str
) -> None:
    _, env = logs_env
    # given a `taskapp` command that logs a warning
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**env, "TASKAPP_LOG_FORMAT": log_format},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # then it is one JSON line with json, the bare message with text
    if log_format == "json":
        (line,) = done.stderr.splitlines()
        record = json.loads(line)
        assert (record["level"], record["logger"], record["message"]) == (
            "WARNING",
            "taskapp.probe",
            "probe 42",
        )
    else:
        assert done.stderr.splitlines() == ["probe 42"]
