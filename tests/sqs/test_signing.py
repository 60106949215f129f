"""Message signing (optional setting): signed tasks run; forged, tampered, edited or replayed ones
are dead letters with the reason ``signature``.

The signing worker and the signing producer run as subprocesses: Celery's signing serializer is
registered process-wide, and the session worker in this process stays on plain JSON. One signing
worker serves the whole module. Captured messages are taken from a queue no worker consumes,
edited here, and sent to the worker's queue, as an attacker with SendMessage rights would.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.security.certificate import Certificate
from celery.security.key import PrivateKey
from celery.security.serialization import DEFAULT_SEPARATOR, SecureSerializer

from config.settings import Settings
from taskapp.queues import app_specs
from taskapp.sqs.admin.provision import provision
from taskapp.sqs.deadletter import DeadLetter, read_reason
from taskapp.sqs.signing import SEAL, SIGNED_HEADERS
from tests.integration.processes import ROOT, worker_process
from tests.support.queues import drain, prefixed_app
from tests.support.signing import signing_env
from tests.support.waiting import wait_for
from tests.tasks import effect_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The worker's replay window here (TASKAPP_SIGNING_MAX_AGE), shorter than the default day.
MAX_AGE = 3600
#: A condition a test waits for must hold within this many seconds.
PATIENCE = 90


class Signed:
    """The signing set-up of this module: env, queues, and the test's own key."""

    def __init__(self, sqs: Any, settings: Settings, prefix: str, directory: Path) -> None:
        self.sqs, self.prefix = sqs, prefix
        self.settings = settings.model_copy(update={"queue_prefix": prefix})
        signing = signing_env(directory, "taskapp-signing")
        self.key = Path(signing["TASKAPP_SIGNING_KEY"])
        self.cert = Path(signing["TASKAPP_SIGNING_CERT"])
        self.env = {
            **os.environ,
            **signing,
            "TASKAPP_QUEUE_PREFIX": prefix,
            "TASKAPP_SIGNING_MAX_AGE": str(MAX_AGE),
            # Countdowns hop every second (taskapp/sqs/delay.py), so a 3 s countdown hops.
            "TASKAPP_DELAY_HOP": "1",
        }
        self.url = self.queue_url("default")
        self.dlq_url = self.queue_url("default-dlq")
        self.letters: dict[str, list[DeadLetter]] = {}

    def queue_url(self, name: str) -> str:
        return str(self.sqs.get_queue_url(QueueName=self.prefix + name)["QueueUrl"])

    def produce(
        self, send: list[dict[str, Any]] = (), batch: list[dict[str, Any]] = ()
    ) -> list[str]:
        """Publish with the app in a signing subprocess (``send_task``, then ``enqueue_many``
        for ``batch``); return the task ids."""
        script = (
            "import json, sys\n"
            "from taskapp import app\n"
            "from taskapp.sqs.enqueue import enqueue_many\n"
            "plan = json.load(sys.stdin)\n"
            "ids = [app.send_task(s['task'], args=s.get('args'), kwargs=s.get('kwargs'),\n"
            "                     **s.get('options', {})).id for s in plan['send']]\n"
            "sigs = [app.signature(s['task'], args=s.get('args')) for s in plan['batch']]\n"
            "ids += [r.id for r in enqueue_many(sigs, app)] if sigs else []\n"
            "print(json.dumps(ids))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps({"send": send, "batch": batch}),
            env=self.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def capture(self, *tags: str) -> list[dict[str, Any]]:
        """Signed ``tests.record(tag)`` envelopes, taken from a queue no worker consumes.

        Each carries ``entity_version`` (read only with ``entity``), so that an edit of
        ``entity`` alone is still a well-formed message and only its signature can refuse it.
        """
        probe = self.queue_url("images")
        options = {"queue": "images", "headers": {"entity_version": 1}}
        self.produce([{"task": "tests.record", "args": [t], "options": options} for t in tags])
        messages = drain(self.sqs, probe, wait=10, expect=len(tags))
        for m in messages:
            self.sqs.delete_message(QueueUrl=probe, ReceiptHandle=m["ReceiptHandle"])
        envelopes = [json.loads(base64.b64decode(m["Body"])) for m in messages]
        by_tag = {_body(e)[0][0]: e for e in envelopes}
        return [by_tag[t] for t in tags]

    def send(self, envelope: dict[str, Any]) -> None:
        body = base64.b64encode(json.dumps(envelope).encode()).decode()
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def resign(self, envelope: dict[str, Any], edit: Callable[[list[Any], dict[str, Any]], None]):  # type: ignore[no-untyped-def]
        """A copy of ``envelope`` whose body and headers ``edit`` changed, signed with the
        real key (so only the edit, not the signature, can make it fail)."""
        envelope = json.loads(json.dumps(envelope))
        body = _body(envelope)
        edit(body, envelope["headers"])
        serializer = SecureSerializer(
            PrivateKey(self.key.read_bytes()), Certificate(self.cert.read_bytes()), "sha256"
        )
        envelope["body"] = base64.b64encode(serializer.serialize(body).encode()).decode()
        return envelope

    def collect(self) -> None:
        """Move what reached the DLQ into ``letters`` (by task id)."""
        for m in drain(self.sqs, self.dlq_url, wait=1):
            letter = read_reason(m.get("MessageAttributes", {}))
            if letter is not None:
                self.letters.setdefault(letter.task_id, []).append(letter)
            self.sqs.delete_message(QueueUrl=self.dlq_url, ReceiptHandle=m["ReceiptHandle"])

    def depth(self) -> dict[str, int]:
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attrs = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=names)
        return {
            name.removeprefix("ApproximateNumberOf"): int(attrs["Attributes"][name])
            for name in names
        }

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        """Collect dead letters until ``condition`` holds; on timeout, say where messages are."""

        def met() -> bool:
            if condition():
                return True
            self.collect()
            return False

        try:
            wait_for(met, what, timeout=PATIENCE, interval=0)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; queue: {self.depth()}, dead letters: {sorted(self.letters)}"
            ) from None

    def idle(self) -> bool:
        """Nothing waiting, delayed or in flight on the worker's queue."""
        return not any(self.depth().values())


def _fields(envelope: dict[str, Any]) -> list[bytes]:
    # kombu's base64 body holds the signing serializer's base64 of signer|signature|...|JSON
    return base64.b64decode(base64.b64decode(envelope["body"])).split(DEFAULT_SEPARATOR, 4)


def _body(envelope: dict[str, Any]) -> list[Any]:
    return list(json.loads(_fields(envelope)[4]))


@pytest.fixture(scope="module")
def signing(
    app: Any, sqs: Any, settings: Settings, provisioned: Any, tmp_path_factory: Any
) -> Iterator[Signed]:
    prefix = settings.queue_prefix + "sig-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    signed = Signed(sqs, settings, prefix, tmp_path_factory.mktemp("signing"))
    log = tmp_path_factory.mktemp("signing-worker") / "sig.log"
    with worker_process(signed.env, "sig", log) as proc:
        signed.log = log  # type: ignore[attr-defined]
        yield signed
        assert proc.poll() is None, "the signing worker exited:\n" + log.read_text()[-3000:]


def _ran(tag: str) -> int:
    return len(effect_times(tag))


def _refused(signing: Signed, task_id: str) -> bool:
    return any(letter.reason == "signature" for letter in signing.letters.get(task_id, []))


def test_signed_tasks_run_and_forged_or_tampered_ones_are_dead_lettered(
    signing: Signed, app: Any
) -> None:
    tag = uuid.uuid4().hex
    # given a tampered message: signed by the real key, then its arguments changed
    (envelope,) = signing.capture(f"{tag}-signed-then-changed")
    fields = base64.b64decode(base64.b64decode(envelope["body"]))
    changed = fields.replace(b"signed-then-changed", b"forged-args-now")
    assert changed != fields
    envelope["body"] = base64.b64encode(base64.b64encode(changed)).decode()
    signing.send(envelope)
    # and a forged one: a plain JSON task from a producer without the key
    forged = prefixed_app(app, signing.prefix).send_task("tests.record", args=[f"{tag}-forged"])
    # when a properly signed task is also sent
    signing.produce([{"task": "tests.record", "args": [f"{tag}-good"]}])
    # then the signed task ran, and both others are in the DLQ with the reason "signature"
    signing.wait(
        lambda: (
            _ran(f"{tag}-good") == 1
            and _refused(signing, envelope["headers"]["id"])
            and _refused(signing, forged.id)
        ),
        "the good task to run and both others to be dead letters",
    )
    assert _ran(f"{tag}-forged") == 0
    assert _ran(f"{tag}-forged-args-now") == 0


def _edits() -> dict[str, Any]:
    """For each deciding header, a value it never has in a fresh ``tests.record`` message."""
    now = dt.datetime.now(dt.UTC)
    return {
        "task": "tests.fail_permanently",  # takes the same argument, records it, dead letter
        "id": str(uuid.uuid4()),
        "eta": (now - dt.timedelta(seconds=5)).isoformat(),  # due already: no hop, runs now
        "expires": (now + dt.timedelta(days=3)).isoformat(),
        "retries": 1,
        "timelimit": [60, 50],
        "group": str(uuid.uuid4()),
        "idempotency_key": "someone-elses-key",
        "entity": "customer:1",
        "entity_version": 99,
    }


def test_a_signed_message_with_any_deciding_header_edited_is_a_dead_letter(
    signing: Signed,
) -> None:
    edits = _edits()
    assert set(edits) == set(SIGNED_HEADERS), "every signed header needs an edit here"
    tag = uuid.uuid4().hex
    envelopes = signing.capture(*(f"{tag}-{name}" for name in edits))
    # given one captured signed message per header, that header edited
    sent: dict[str, str] = {}  # header -> task id of the edited message
    for (name, value), envelope in zip(edits.items(), envelopes, strict=True):
        assert envelope["headers"].get(name) != value
        envelope["headers"][name] = value
        sent[name] = envelope["headers"]["id"]
        signing.send(envelope)
    # when the worker has settled each (it ran, or it is a dead letter)
    signing.wait(
        lambda: all(_ran(f"{tag}-{n}") or signing.letters.get(i) for n, i in sent.items()),
        "every edited message to run or be dead-lettered",
    )
    # then none ran, and each is a dead letter with the reason "signature" naming the header
    ran = [name for name in sent if _ran(f"{tag}-{name}")]
    assert ran == [], f"edited messages ran: {ran}"
    for name, task_id in sent.items():
        (letter,) = signing.letters[task_id]
        assert (letter.reason, name) == ("signature", name)
        assert name in letter.error_message


def test_a_replay_under_a_fresh_id_does_not_run_twice(signing: Signed) -> None:
    tag = uuid.uuid4().hex
    (envelope,) = signing.capture(tag)
    # given a signed message that ran
    signing.send(envelope)
    signing.wait(lambda: _ran(tag) == 1, "the original to run")
    # when it is sent again under a fresh id, and again as it was
    fresh = json.loads(json.dumps(envelope))
    fresh["headers"]["id"] = str(uuid.uuid4())
    signing.send(fresh)
    signing.send(envelope)
    signing.wait(
        lambda: _refused(signing, fresh["headers"]["id"]) and signing.idle(),
        "the replay to be dead-lettered and the queue to drain",
    )
    # then it ran once: the fresh id is refused, the same id is a duplicate
    assert _ran(tag) == 1


def test_a_replay_older_than_the_window_is_refused_but_a_long_countdown_runs(
    signing: Signed,
) -> None:
    tag = uuid.uuid4().hex
    now = time.time()
    old, due, control = signing.capture(f"{tag}-old", f"{tag}-due", f"{tag}-control")

    def signed_at(
        when: float, eta: str | None = None
    ) -> Callable[[list[Any], dict[str, Any]], None]:
        def edit(body: list[Any], headers: dict[str, Any]) -> None:
            body[2].setdefault(SEAL, {"headers": {}})["signed_at"] = when
            if eta is not None:
                headers["eta"] = body[2][SEAL]["headers"]["eta"] = eta

        return edit

    # given a message signed longer ago than TASKAPP_SIGNING_MAX_AGE
    old = signing.resign(old, signed_at(now - MAX_AGE - 60))
    # a message signed as long ago but due (its ETA) a moment ago: a long countdown
    eta = dt.datetime.fromtimestamp(now - 5, dt.UTC).isoformat()
    due = signing.resign(due, signed_at(now - 3 * MAX_AGE, eta))
    # and one re-signed now, so re-signing alone is not what refuses the first
    control = signing.resign(control, signed_at(now))
    for envelope in (old, due, control):
        signing.send(envelope)
    signing.wait(
        lambda: (
            _ran(f"{tag}-control")
            and _ran(f"{tag}-due")
            and signing.letters.get(old["headers"]["id"])
        ),
        "the control and the due message to run and the old one to be dead-lettered",
    )
    (letter,) = signing.letters[old["headers"]["id"]]
    assert letter.reason == "signature"
    assert "replay window" in letter.error_message
    assert (_ran(f"{tag}-old"), _ran(f"{tag}-due"), _ran(f"{tag}-control")) == (0, 1, 1)


def test_signed_tasks_retries_countdowns_batches_and_claim_checks_run_once(
    signing: Signed, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    big = "x" * (settings.claim_check_threshold + 1024)  # over the threshold: through S3
    # given signed messages of every kind the app publishes
    ids = signing.produce(
        send=[
            {"task": "tests.record", "args": [f"{tag}-plain"]},
            # fails once (a retry the worker signs), then succeeds
            {"task": "tests.flaky", "args": [f"{tag}-retry", 1]},
            # 3 s with 1 s hops: re-published twice by the transport, then run
            {"task": "tests.record", "args": [f"{tag}-countdown"], "options": {"countdown": 3}},
            {"task": "tests.record", "args": [f"{tag}-claim"], "kwargs": {"pad": big}},
            {
                "task": "tests.record",
                "args": [f"{tag}-keyed"],
                "options": {
                    "headers": {
                        "idempotency_key": f"{tag}-key",
                        "entity": f"{tag}:1",
                        "entity_version": 1,
                    }
                },
            },
        ],
        batch=[{"task": "tests.record", "args": [f"{tag}-batch-{i}"]} for i in range(3)],
    )
    expected = {"plain": 1, "retry": 2, "countdown": 1, "claim": 1, "keyed": 1}
    expected |= {f"batch-{i}": 1 for i in range(3)}
    # when the worker is done with them
    signing.wait(
        lambda: all(_ran(f"{tag}-{name}") >= n for name, n in expected.items()) and signing.idle(),
        "every task to run and the queue to drain",
    )
    # then each ran as often as it should, and none is a dead letter
    signing.collect()
    assert {name: _ran(f"{tag}-{name}") for name in expected} == expected
    assert [signing.letters[i] for i in ids if i in signing.letters] == []


def test_a_redriven_signed_dead_letter_runs(signing: Signed) -> None:
    tag = uuid.uuid4().hex
    # given a signed task that failed until its retries ran out (3 runs), now a dead letter
    (task_id,) = signing.produce([{"task": "tests.flaky", "args": [tag, 3]}])

    def redrive() -> int:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from taskapp.cli import main; main()",
                "dlq",
                "redrive",
                "default",
                "--task",
                "tests.flaky",
            ],
            env=signing.env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return int(done.stdout.split("moved ", 1)[1].split()[0])

    # when it is redriven, once it is there
    wait_for(redrive, "a dead letter of tests.flaky to redrive", timeout=PATIENCE, interval=0)
    # then it runs a fourth time, and succeeds
    signing.wait(lambda: _ran(tag) == 4 and signing.idle(), "the redriven task to run")
    signing.collect()
    assert signing.letters.get(task_id, []) == []
