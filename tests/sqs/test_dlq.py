"""``taskapp dlq``: list, show, redrive and purge against the session's moto server."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from config.settings import Settings
from taskapp.app import app
from taskapp.cli import main
from taskapp.queues import dlq_name
from taskapp.sqs.admin.redrive import redrive
from taskapp.sqs.deadletter import DeadLetter, send_dead_letter

pytestmark = pytest.mark.integration


def _depth(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def _bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    from tests.support.queues import drain

    return drain(sqs, url)


@pytest.fixture
def queue(provisioned: list[Any], sqs: Any, settings: Settings) -> dict[str, Any]:
    """A fresh work queue and its DLQ (this test's only)."""
    name = f"dlqtest{uuid.uuid4().hex[:6]}"
    urls = {
        kind: sqs.create_queue(QueueName=settings.queue_prefix + qname)["QueueUrl"]
        for kind, qname in (("source", name), ("dlq", name + "-dlq"))
    }
    return {"name": name, **urls}


@pytest.fixture
def dead_letter(sqs: Any, queue: dict[str, Any]) -> Callable[..., dict[str, Any]]:
    """Publish a real task message to the queue, receive it, and dead-letter it with a reason."""

    def make(task: str = "tests.add", args: tuple[Any, ...] = (2, 3)) -> dict[str, Any]:
        app.send_task(task, args=args, queue=queue["name"])
        [message] = sqs.receive_message(
            QueueUrl=queue["source"], MessageAttributeNames=["All"], WaitTimeSeconds=1
        )["Messages"]
        letter = DeadLetter(
            "permanent",
            "InvalidAddress",
            "no such mailbox",
            3,
            task_name=task,
            source_queue=queue["name"],
            failed_at="2026-01-02T03:04:05+00:00",
        )
        send_dead_letter(sqs, queue["source"], message["Body"], letter, {})
        sqs.delete_message(QueueUrl=queue["source"], ReceiptHandle=message["ReceiptHandle"])
        return dict(message)

    return make


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_list_shows_the_depth_of_every_dlq(queue: dict[str, Any], dead_letter: Any) -> None:
    # given two dead letters in this test's DLQ
    dead_letter()
    dead_letter()
    # when the DLQs are listed
    result = _run("dlq", "list", "--output", "json")
    table = _run("dlq", "list")
    # then the DLQ is there with its depth and source, among the provisioned ones
    assert result.exit_code == 0, result.output
    rows = {r["queue"]: r for r in json.loads(result.output)}
    assert rows[queue["name"] + "-dlq"]["visible"] == 2
    assert rows[queue["name"] + "-dlq"]["source"] == queue["name"]
    assert "email-dlq" in rows
    assert "default-dlq" in rows
    assert queue["name"] + "-dlq" in table.output


def test_show_describes_dead_letters_without_consuming_them(
    sqs: Any, queue: dict[str, Any], dead_letter: Any
) -> None:
    # given a dead letter with a reason, and one moved there by SQS's redrive policy
    dead_letter("tests.add", (2, 3))
    app.send_task("tests.record", args=("x",), queue=queue["name"])
    moved = sqs.receive_message(QueueUrl=queue["source"], WaitTimeSeconds=1)["Messages"][0]
    sqs.send_message(QueueUrl=queue["dlq"], MessageBody=moved["Body"])
    # when the DLQ is shown
    result = _run("dlq", "show", queue["name"], "--output", "json")
    table = _run("dlq", "show", queue["name"])
    # then each shows task, id, arguments, reason, attempts and first failure
    assert result.exit_code == 0, result.output
    letters = {m["task_name"]: m for m in json.loads(result.output)}
    add = letters["tests.add"]
    assert add["args"] == "(2, 3)"
    assert add["reason"] == "permanent"
    assert add["error"] == "InvalidAddress: no such mailbox"
    assert add["attempts"] == 3
    assert add["first_failure"].startswith("2026-01-02 03:04:05")
    assert add["task_id"]
    assert letters["tests.record"]["reason"] == "max-receives"
    assert "tests.add" in table.output
    assert "permanent" in table.output
    # and both are still there, visible
    assert len(_bodies(sqs, queue["dlq"])) == 2


def test_redrive_moves_only_the_chosen_task_up_to_the_limit(
    sqs: Any, queue: dict[str, Any], dead_letter: Any
) -> None:
    # given three dead letters: two of tests.add, one of tests.record
    originals = [dead_letter("tests.add"), dead_letter("tests.add"), dead_letter("tests.record")]
    # when one tests.add is redriven
    result = _run("dlq", "redrive", queue["name"], "--task", "tests.add", "--limit", "1")
    # then exactly one tests.add message is back, byte for byte, without the reason attributes
    assert result.exit_code == 0, result.output
    assert "moved 1 message(s)" in result.output
    [back] = _bodies(sqs, queue["source"])
    assert back["Body"] in {m["Body"] for m in originals[:2]}
    assert not any(k.startswith("taskapp.") for k in back.get("MessageAttributes", {}))
    # and the other two wait in the DLQ, visible again
    assert len(_bodies(sqs, queue["dlq"])) == 2


def test_redrive_everything_without_move_task_support(
    sqs: Any, queue: dict[str, Any], dead_letter: Any
) -> None:
    # given dead letters, on an endpoint without StartMessageMoveTask (moto)
    for _ in range(3):
        dead_letter()
    # when the whole DLQ is redriven
    result = _run("dlq", "redrive", queue["name"])
    # then every message is back in the source queue and the DLQ is empty
    assert result.exit_code == 0, result.output
    assert "moved 3 message(s)" in result.output
    assert "receive-send-delete" in result.output
    assert len(_bodies(sqs, queue["source"])) == 3
    assert _depth(sqs, queue["dlq"]) == 0


def test_a_letter_that_fails_again_during_the_redrive_is_not_moved_twice(
    sqs: Any, settings: Settings, queue: dict[str, Any], dead_letter: Any
) -> None:
    # given three dead letters whose tasks fail again at once: each moved copy is dead-lettered
    # again (same body, a new message) while the redrive is still receiving
    for _ in range(3):
        dead_letter()
    calls = []

    def fail_again(moved: int) -> None:
        calls.append(moved)
        assert len(calls) < 10, "the redrive keeps moving letters that failed again"
        for message in _bodies(sqs, queue["source"]):
            sqs.send_message(QueueUrl=queue["dlq"], MessageBody=message["Body"])
            sqs.delete_message(QueueUrl=queue["source"], ReceiptHandle=message["ReceiptHandle"])

    # when the whole DLQ is redriven by hand (moto has no StartMessageMoveTask)
    result = redrive(sqs, settings, queue["name"], on_progress=fail_again)
    # then each task moved once; the letters that came back stay for the next run
    assert (result.moved, result.skipped) == (3, 3)
    assert _depth(sqs, queue["dlq"]) == 3


def test_interrupted_redrive_loses_and_duplicates_nothing(
    sqs: Any, settings: Settings, queue: dict[str, Any]
) -> None:
    # given 15 dead letters (two batches)
    for i in range(15):
        sqs.send_message(QueueUrl=queue["dlq"], MessageBody=json.dumps({"n": i}))

    def interrupt(moved: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during the first batch

    # when the redrive is interrupted by Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        redrive(sqs, settings, queue["name"], limit=15, on_progress=interrupt)
    # then the current batch finished, and every message is in exactly one of the queues
    source = [json.loads(m["Body"])["n"] for m in _bodies(sqs, queue["source"])]
    left = [json.loads(m["Body"])["n"] for m in _bodies(sqs, queue["dlq"])]
    assert 0 < len(source) < 15
    assert sorted(source + left) == list(range(15))


def test_purge_needs_yes_and_then_empties_the_dlq(
    sqs: Any, queue: dict[str, Any], dead_letter: Any
) -> None:
    # given a dead letter
    dead_letter()
    # when purge is asked without and then with --yes
    refused = _run("dlq", "purge", queue["name"])
    depth_after_refusal = _depth(sqs, queue["dlq"])
    done = _run("dlq", "purge", queue["name"], "--yes")
    # then only the confirmed purge deletes it
    assert refused.exit_code == 1
    assert "--yes" in refused.output
    assert depth_after_refusal == 1
    assert done.exit_code == 0, done.output
    assert _depth(sqs, queue["dlq"]) == 0


def test_unknown_queue_is_a_clear_error(provisioned: list[Any]) -> None:
    # when a queue that does not exist is shown
    result = _run("dlq", "show", "no-such-queue")
    # then the command says so and fails
    assert result.exit_code == 1
    assert "no dead-letter queue for 'no-such-queue'" in result.output


def _counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_redrive_of_big_dead_letters_splits_batches_by_size(
    sqs: Any, queue: dict[str, Any]
) -> None:
    # given two dead letters of 600 KB: together over SendMessageBatch's 1 MiB
    bodies = [f"{i}" + "x" * 600_000 for i in range(2)]
    for body in bodies:
        sqs.send_message(QueueUrl=queue["dlq"], MessageBody=body)
    # when the DLQ is redriven
    result = _run("dlq", "redrive", queue["name"])
    # then both are back in the source queue, and the DLQ is empty
    assert result.exit_code == 0, result.output
    assert "moved 2 message(s)" in result.output
    assert sorted(m["Body"] for m in _bodies(sqs, queue["source"])) == bodies
    assert _counts(sqs, queue["dlq"]) == (0, 0)


@pytest.fixture
def fifo_queue(provisioned: list[Any], sqs: Any, settings: Settings) -> dict[str, Any]:
    """A fresh FIFO work queue and its FIFO DLQ (this test's only)."""
    name = f"dlqtest{uuid.uuid4().hex[:6]}.fifo"
    urls = {
        kind: sqs.create_queue(
            QueueName=settings.queue_prefix + qname, Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
        for kind, qname in (("source", name), ("dlq", dlq_name(name)))
    }
    return {"name": name, **urls}


def test_redrive_of_a_fifo_dlq_keeps_group_dedup_id_and_order(
    sqs: Any, fifo_queue: dict[str, Any]
) -> None:
    # given dead letters of two message groups in a FIFO DLQ, as SQS leaves them there
    letters = [("a", 0), ("b", 1), ("a", 2), ("a", 3)]
    for group, n in letters:
        sqs.send_message(
            QueueUrl=fifo_queue["dlq"],
            MessageBody=json.dumps({"n": n}),
            MessageGroupId=group,
            MessageDeduplicationId=f"dead-{n}",
        )
    # when the DLQ is redriven
    result = _run("dlq", "redrive", fifo_queue["name"])
    # then every message is back in its group with its deduplication id, in group order
    assert result.exit_code == 0, result.output
    assert "moved 4 message(s)" in result.output
    back = _bodies(sqs, fifo_queue["source"])
    got = [
        (
            m["Attributes"]["MessageGroupId"],
            json.loads(m["Body"])["n"],
            m["Attributes"]["MessageDeduplicationId"],
        )
        for m in back
    ]
    assert sorted(got) == sorted((g, n, f"dead-{n}") for g, n in letters)
    assert [n for g, n, _ in got if g == "a"] == [0, 2, 3]
    assert _counts(sqs, fifo_queue["dlq"]) == (0, 0)


def test_a_dead_letter_that_cannot_be_sent_is_reported_and_visible_again(
    sqs: Any, queue: dict[str, Any]
) -> None:
    # given a source queue that takes at most 1 KiB, and two dead letters: 100 B and 2 KB
    sqs.set_queue_attributes(QueueUrl=queue["source"], Attributes={"MaximumMessageSize": "1024"})
    small = sqs.send_message(QueueUrl=queue["dlq"], MessageBody="s" * 100)["MessageId"]
    big = sqs.send_message(QueueUrl=queue["dlq"], MessageBody="b" * 2000)["MessageId"]
    # when the DLQ is redriven
    result = _run("dlq", "redrive", queue["name"])
    # then the small one moved, the command names the big one and fails
    assert result.exit_code == 1, result.output
    assert "moved 1 message(s)" in result.output
    assert big in result.output
    assert small not in result.output
    assert [m["Body"] for m in _bodies(sqs, queue["source"])] == ["s" * 100]
    # and the big one is still in the DLQ, visible right away (not hidden for a minute)
    assert _counts(sqs, queue["dlq"]) == (1, 0)
    [left] = _bodies(sqs, queue["dlq"])
    assert left["MessageId"] == big
