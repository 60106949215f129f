"""OpenTelemetry across SQS (issue 17, taskapp/tracing.py): one trace from the producer's
``apply_async`` to the worker's run, its S3 and SMTP calls, through a retry, a countdown hop and
a claim-checked body; and with tracing off, no SDK at all.

The producer is this process, traced into the SDK's in-memory exporter. The worker is a
``celery -A taskapp worker`` subprocess (prefork, so the SDK's fork handling is exercised) with
``TASKAPP_TRACING=file:<path>``: its spans arrive as JSON lines the test reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from taskapp import tracing
from taskapp.queues import app_specs
from taskapp.sqs.admin.provision import provision
from tests.email.smtp_server import TestSMTPServer
from tests.integration.processes import ROOT, worker_process
from tests.support.queues import prefixed_app
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _hex(number: int) -> str:
    return f"0x{number:032x}"


class Traced:
    """The producer (traced in memory), the worker's span file and the SMTP server."""

    def __init__(
        self, producer: Any, claim_checked: Any, memory: Any, provider: Any, spans: Path, smtp: Any
    ) -> None:
        self.producer, self.claim_checked = producer, claim_checked
        self.memory, self.provider = memory, provider
        self.spans_file, self.smtp = spans, smtp

    def publish(
        self, task: Any, *args: Any, claim_check: bool = False, **options: Any
    ) -> tuple[str, str]:
        """Publish ``task`` under an application span; (its trace id, the task id)."""
        from opentelemetry import trace

        tracer = self.provider.get_tracer("tests.application")
        producer = self.claim_checked if claim_check else self.producer
        with (
            tracer.start_as_current_span("POST /orders") as span,
            producer.connection_for_write() as conn,
        ):
            result = task.apply_async(args, connection=conn, **options)
            trace_id = _hex(span.get_span_context().trace_id)
        assert trace.get_current_span().get_span_context().is_valid is False
        return trace_id, result.id

    def producer_spans(self, trace_id: str) -> list[dict[str, Any]]:
        self.provider.force_flush()
        spans = [json.loads(s.to_json(indent=None)) for s in self.memory.get_finished_spans()]
        return [s for s in spans if s["context"]["trace_id"] == trace_id]

    def worker_spans(self) -> list[dict[str, Any]]:
        if not self.spans_file.exists():
            return []
        lines = self.spans_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def worker_trace(self, trace_id: str, *names: str) -> list[dict[str, Any]]:
        """Wait until the worker exported spans named ``names`` (prefixes) in ``trace_id``."""

        def found() -> list[dict[str, Any]]:
            spans = [s for s in self.worker_spans() if s["context"]["trace_id"] == trace_id]
            have = [s["name"] for s in spans]
            return spans if all(any(h.startswith(n) for h in have) for n in names) else []

        return wait_for(found, f"worker spans {names} in trace {trace_id}", timeout=45)


@pytest.fixture(scope="module")
def traced(
    app: Any, sqs: Any, settings: Settings, provisioned: Any, tmp_path_factory: Any
) -> Iterator[Traced]:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    ours = settings.model_copy(update={"queue_prefix": settings.queue_prefix + "trace-"})
    provision(sqs, ours, app_specs(app))
    producer = prefixed_app(app, ours.queue_prefix)
    # A second producer with a low claim-check threshold: its bodies go to S3.
    claim_checked = prefixed_app(app, ours.queue_prefix)
    claim_checked.conf.broker_transport_options = {
        **claim_checked.conf.broker_transport_options,
        "claim_check_threshold": 1024,
    }
    directory = tmp_path_factory.mktemp("tracing")
    spans = directory / "spans.jsonl"
    smtp = TestSMTPServer(tls=None, credentials=None).start()
    env = {
        **os.environ,
        "TASKAPP_QUEUE_PREFIX": ours.queue_prefix,
        "TASKAPP_TRACING": f"file:{spans}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s, not the default 5 s
        "TASKAPP_EMAIL_BACKEND": "smtp",
        "TASKAPP_SMTP_URL": smtp.url(),
        "TASKAPP_DELAY_HOP": "1",  # a countdown of a few seconds hops
        "TASKAPP_WAIT_TIME_SECONDS": "1",
    }
    memory = InMemorySpanExporter()
    provider = tracing.install(memory, set_global=False)
    try:
        with worker_process(env, "tracing", directory / "worker.log", queue="default,email"):
            traced = Traced(producer, claim_checked, memory, provider, spans, smtp)
            traced.sqs, traced.settings = sqs, ours
            yield traced
    finally:
        tracing.uninstall()
        smtp.stop()


def _one_parent(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matching = [s for s in spans if s["name"] == name]
    assert matching, f"no span {name} in {[s['name'] for s in spans]}"
    return matching[0]


def test_a_claim_checked_email_is_one_trace_from_publish_to_smtp(traced: Traced) -> None:
    from taskapp.email.tasks import send_email

    # Given a body over the claim-check threshold, published under an application span
    body = "Your order has shipped.\n" * 200
    trace_id, _ = traced.publish(
        send_email, "buyer@example.com", "Shipped", kwargs={"body": body}, claim_check=True
    )

    # Then the producer's spans (apply_async, the SQS send, the S3 put of the body) ...
    produced = traced.producer_spans(trace_id)
    names = [s["name"] for s in produced]
    assert "apply_async/email.send" in names
    assert "S3.PutObject" in names, names
    assert "SQS.SendMessage" in names, names
    # ... and the worker's run, its database calls and the SMTP send share the trace
    worked = traced.worker_trace(trace_id, "run/email.send", "smtp.send")
    run = _one_parent(worked, "run/email.send")
    publish = _one_parent(produced, "apply_async/email.send")
    assert run["parent_id"] == publish["context"]["span_id"]
    smtp = _one_parent(worked, "smtp.send")
    assert smtp["parent_id"] is not None
    sql = [s for s in worked if s["attributes"].get("db.system") or "db.system.name" in str(s)]
    assert sql, [s["name"] for s in worked]
    assert traced.smtp.received


def test_a_retry_stays_in_the_trace(traced: Traced) -> None:
    from tests.tasks import flaky

    # Given a task that fails once with a retryable error
    tag = f"trace-retry-{uuid.uuid4().hex[:8]}"
    trace_id, _ = traced.publish(flaky, tag, 1)

    # Then both runs and the retry's publish are in the producer's trace
    def two_runs() -> list[dict[str, Any]]:
        spans = traced.worker_trace(trace_id, "run/tests.flaky", "apply_async/tests.flaky")
        return spans if len([s for s in spans if s["name"] == "run/tests.flaky"]) == 2 else []

    spans = wait_for(two_runs, "two runs of tests.flaky in one trace", timeout=45)
    retry_publish = _one_parent(spans, "apply_async/tests.flaky")
    runs = [s for s in spans if s["name"] == "run/tests.flaky"]
    assert retry_publish["context"]["span_id"] in {r["parent_id"] for r in runs}


def test_a_countdown_that_hops_stays_in_the_trace(traced: Traced) -> None:
    from tests.tasks import record

    # Given a countdown longer than one hop (the worker's hop is 1 s; the first delay 1 s too).
    # The worker must receive it before it is due, or it runs it without a hop: 11 s of margin
    # (4 s was too little beside a CPU hog, where a busy worker's receive came after the ETA).
    before = len([s for s in traced.worker_spans() if s["name"] == "SQS.SendMessage"])
    tag = f"trace-hop-{uuid.uuid4().hex[:8]}"
    trace_id, _ = traced.publish(record, tag, countdown=12, DelaySeconds=1)

    # Then the run is in the producer's trace, after the worker re-sent the body at least once
    spans = traced.worker_trace(trace_id, "run/tests.record")
    publish = _one_parent(traced.producer_spans(trace_id), "apply_async/tests.record")
    assert _one_parent(spans, "run/tests.record")["parent_id"] == publish["context"]["span_id"]
    # (the hop's span is the worker main process's, exported on its own schedule: wait for it)
    wait_for(
        lambda: len([s for s in traced.worker_spans() if s["name"] == "SQS.SendMessage"]) > before,
        "the worker's re-send (hop) span",
        timeout=30,
        interval=0.2,
    )


def test_a_redriven_dead_letter_stays_in_the_trace(traced: Traced) -> None:
    from taskapp.sqs.admin.redrive import redrive
    from tests.tasks import fail_permanently

    # Given a task dead-lettered on its first run
    tag = f"trace-dlq-{uuid.uuid4().hex[:8]}"
    trace_id, _ = traced.publish(fail_permanently, tag)
    traced.worker_trace(trace_id, "run/tests.fail_permanently")

    # When its dead letter is redriven (once it is in the DLQ; one letter: redriven, it fails
    # again and comes back while a redrive without a limit would still be running)
    wait_for(
        lambda: (
            redrive(
                traced.sqs, traced.settings, "default", task="tests.fail_permanently", limit=1
            ).moved
        ),
        "the dead letter to be redriven",
        timeout=45,
        interval=0.5,
    )

    # Then its second run has the original publish as parent, as the first had
    def two_runs() -> list[dict[str, Any]]:
        spans = traced.worker_trace(trace_id, "run/tests.fail_permanently")
        runs = [s for s in spans if s["name"] == "run/tests.fail_permanently"]
        return runs if len(runs) == 2 else []

    runs = wait_for(two_runs, "a second run after the redrive", timeout=45)
    publish = _one_parent(traced.producer_spans(trace_id), "apply_async/tests.fail_permanently")
    assert {r["parent_id"] for r in runs} == {publish["context"]["span_id"]}


@pytest.fixture(scope="module")
def signed(
    app: Any, sqs: Any, settings: Settings, provisioned: Any, tmp_path_factory: Any
) -> Iterator[dict[str, Any]]:
    """A signing worker with tracing to a file, and the environment of its signing producers."""
    from tests.support.signing import signing_env

    prefix = settings.queue_prefix + "tsig-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    directory = tmp_path_factory.mktemp("tracing-signed")
    spans = directory / "spans.jsonl"
    env = {
        **os.environ,
        **signing_env(directory, "taskapp-tracing"),
        "TASKAPP_QUEUE_PREFIX": prefix,
        "TASKAPP_TRACING": f"file:{spans}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "TASKAPP_WAIT_TIME_SECONDS": "1",
    }
    with worker_process(env, "tracing-signed", directory / "worker.log"):
        yield {"env": env, "spans": spans}


def test_a_signed_message_carries_the_trace_and_still_runs(signed: dict[str, Any]) -> None:
    from tests.tasks import effect_times

    # Given a signing producer (a subprocess: signing is configured when the app loads)
    tag = f"trace-signed-{uuid.uuid4().hex[:8]}"
    code = (
        "import json, sys, taskapp\n"
        "from opentelemetry import trace\n"
        "from tests.tasks import record\n"
        "with trace.get_tracer('app').start_as_current_span('POST /orders') as span:\n"
        "    record.delay(sys.argv[1])\n"
        "print(f'0x{span.get_span_context().trace_id:032x}')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, tag],
        env=signed["env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    trace_id = done.stdout.strip().splitlines()[-1]

    # Then the signed message ran once, its run a child of the signing producer's publish span
    wait_for(lambda: effect_times(tag), "the signed task to run", timeout=45)

    def spans() -> list[dict[str, Any]]:
        lines = signed["spans"].read_text().splitlines() if signed["spans"].exists() else []
        found = [json.loads(line) for line in lines if line.strip()]
        mine = [s for s in found if s["context"]["trace_id"] == trace_id]
        names = {s["name"] for s in mine}
        return mine if {"apply_async/tests.record", "run/tests.record"} <= names else []

    mine = wait_for(spans, "the signed task's spans", timeout=30)
    publish = _one_parent(mine, "apply_async/tests.record")
    assert _one_parent(mine, "run/tests.record")["parent_id"] == publish["context"]["span_id"]
    assert len(effect_times(tag)) == 1


def test_a_task_published_by_a_name_unknown_here_spans_its_send(traced: Traced) -> None:
    from opentelemetry import trace

    # Given a producer that knows only a task's name, one no module here registers
    tracer = traced.provider.get_tracer("tests.application")
    with tracer.start_as_current_span("POST /elsewhere") as outer:
        with traced.producer.connection_for_write() as conn:
            traced.producer.send_task("other.service.task", connection=conn, queue="images")
        # Then the publish left no span of its own current ...
        assert trace.get_current_span() is outer
    # ... and its span covers the SQS send, as for a registered task (0.66b1 alone ended it
    # before the send, when the garbage collector closed its unreferenced activation)
    spans = traced.producer_spans(_hex(outer.get_span_context().trace_id))
    published = _one_parent(spans, "apply_async/other.service.task")
    assert published["parent_id"] == f"0x{outer.get_span_context().span_id:016x}"
    send = _one_parent(spans, "SQS.SendMessage")
    assert send["parent_id"] == published["context"]["span_id"]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TASKAPP_TRAC"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def test_with_tracing_off_no_sdk_or_instrumentation_is_loaded() -> None:
    # Given the environment of a worker without TASKAPP_TRACING or OTEL_EXPORTER_OTLP_ENDPOINT
    code = (
        "import sys, json, taskapp\n"
        "from opentelemetry import trace\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk',"
        " 'opentelemetry.instrumentation', 'opentelemetry.exporter')))\n"
        "print(json.dumps({'loaded': loaded,"
        " 'provider': type(trace.get_tracer_provider()).__name__}))\n"
    )
    # When taskapp is imported (what `celery -A taskapp worker` and every producer do)
    seen = json.loads(_python(code).stdout.splitlines()[-1])

    # Then no SDK, exporter or instrumentation module is loaded, and no provider is set
    assert seen == {"loaded": [], "provider": "ProxyTracerProvider"}


def test_console_tracing_writes_json_spans_to_stderr() -> None:
    code = (
        "import taskapp\n"
        "from opentelemetry import trace\n"
        "with trace.get_tracer('t').start_as_current_span('hello'):\n"
        "    pass\n"
    )
    lines = [line for line in _python(code, TASKAPP_TRACING="console").stderr.splitlines()]
    spans = [json.loads(line) for line in lines if line.startswith("{")]
    assert [s["name"] for s in spans] == ["hello"]
    assert spans[0]["resource"]["attributes"]["service.name"] == "taskapp"
