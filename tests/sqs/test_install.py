"""``taskapp.sqs.install(app)`` turns the SQS layer on for that app, and for no other app in the
process (taskapp/sqs/extension.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, signals

import taskapp.sqs
from taskapp.sqs.extension import verdicts
from taskapp.sqs.heartbeat import runs_renewed
from taskapp.sqs.worker import classify


def _app(name: str, *, installed: bool, **install: Any) -> Celery:
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.task_default_queue = name
    if installed:
        taskapp.sqs.install(app, **install)
    return app


@pytest.fixture
def published() -> Iterator[dict[str, dict[str, Any]]]:
    """The properties each task message left the publish hooks with, by task name."""
    seen: dict[str, dict[str, Any]] = {}

    def record(sender: str, properties: dict[str, Any], **_: Any) -> None:
        seen[sender] = dict(properties)

    # connected after install's receiver, so it sees what the hooks made of the message
    signals.before_task_publish.connect(record, weak=False, dispatch_uid="test_install")
    yield seen
    signals.before_task_publish.disconnect(dispatch_uid="test_install")


def test_publish_hooks_act_only_on_the_app_that_installed_the_extension(
    published: dict[str, dict[str, Any]],
) -> None:
    # given two apps in one process, only one of them with the extension
    ours, theirs = _app("ours", installed=True), _app("theirs", installed=False)
    # when each publishes a task with a countdown
    ours.send_task("ours.later", countdown=120)
    theirs.send_task("theirs.later", countdown=120)
    # then only the installed app's message is delayed by SQS (DelaySeconds); the other one is
    # published as stock Celery would
    assert published["ours.later"]["DelaySeconds"] == 120
    assert "DelaySeconds" not in published["theirs.later"]


def test_install_sets_worker_classes_on_that_app_only() -> None:
    ours, theirs = _app("ours", installed=True), _app("theirs", installed=False)
    ours.conf.broker_url = theirs.conf.broker_url = "sqs://"
    assert ours.conf.broker_transport == "taskapp.sqs.transport:Transport"
    assert ours.conf.worker_consumer == "taskapp.sqs.worker:Consumer"
    assert ours.Task.Request == "taskapp.sqs.worker:Request"
    assert "ApproximateReceiveCount" in str(ours.conf.broker_transport_options)
    assert "taskapp.sqs.heartbeat:VisibilityHeartbeat" in ours.steps["consumer"]
    assert theirs.conf.broker_transport is None
    assert theirs.Task.Request == "celery.worker.request:Request"
    assert not theirs.steps["consumer"]


def test_heartbeat_receivers_hear_their_own_app_only() -> None:
    heard: list[int] = []
    ours = _app("ours", installed=True, on_runs_renewed=[lambda **kw: heard.append(kw["renewed"])])
    theirs = _app("theirs", installed=True)
    runs_renewed.send(sender=theirs, tokens=set(), lease_seconds=30, renewed=1, failed=0)
    runs_renewed.send(sender=ours, tokens=set(), lease_seconds=30, renewed=2, failed=0)
    assert heard == [2]


class Refused(Exception):
    pass


def test_the_apps_error_classes_decide_the_dead_letter_reason() -> None:
    ours = _app("ours", installed=True, permanent=(Refused,))
    assert classify(Refused(), verdicts(ours)) == "permanent"
    # an app that named no error classes: the same failure is a crash
    assert classify(Refused(), verdicts(_app("theirs", installed=True))) == "crash"
