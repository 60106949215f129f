"""The Procfile: every command parses, every queue is consumed by exactly one role."""

from __future__ import annotations

import click
import pytest
from honcho.environ import parse_procfile

from taskapp.queues import queue_names
from tests.deploy.procfile import PROCFILE, parse_celery, parse_taskapp, roles, steps


def test_honcho_loads_every_role() -> None:
    # when honcho reads the Procfile
    procfile = parse_procfile(PROCFILE.read_text())
    # then it sees the same roles, with the same commands
    assert procfile.processes == roles()
    assert {"release", "beat", "flower"} <= set(procfile.processes)


def test_every_command_parses_with_its_own_cli() -> None:
    for role, command in roles().items():
        for argv in steps(command):
            # then each step is a celery or taskapp command those CLIs accept
            if argv[0] == "celery":
                call = parse_celery(argv)
                assert call.subcommand in {"worker", "beat", "flower"}, role
            else:
                assert parse_taskapp(argv).callback is not None, role


def test_workers_consume_every_queue_exactly_once() -> None:
    # given the worker roles and the queues each consumes
    consumed: dict[str, str] = {}
    for role, command in roles().items():
        call = parse_celery(steps(command)[0]) if command.startswith("celery") else None
        if call is None or call.subcommand != "worker":
            continue
        queues = call.params["queues"]
        assert queues, f"worker role {role} has no -Q: it would consume every queue"
        for queue in queues:  # type: ignore[union-attr]
            # then each is a real queue, and no other role consumes it
            assert queue in queue_names(), f"{role}: unknown queue {queue}"
            assert queue not in consumed, f"{queue} is consumed by {consumed.get(queue)} and {role}"
            consumed[queue] = role
    # and no queue is left without a worker
    assert set(consumed) == set(queue_names())


def test_exactly_one_beat_and_a_release_that_provisions() -> None:
    commands = roles()
    beats = [
        role
        for role, command in commands.items()
        if command.startswith("celery") and parse_celery(steps(command)[0]).subcommand == "beat"
    ]
    assert beats == ["beat"]
    release = [" ".join(argv) for argv in steps(commands["release"])]
    assert release == ["taskapp db upgrade", "taskapp queues provision"]


def test_a_misspelt_option_or_command_is_caught() -> None:
    # the checks above would catch a typo in the Procfile
    with pytest.raises(click.UsageError):
        parse_celery(["celery", "-A", "taskapp", "worker", "--queue-s", "default"])
    with pytest.raises(AssertionError):
        parse_taskapp(["taskapp", "queues", "provison"])
