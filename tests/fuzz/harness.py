"""Drive a live worker subprocess with generated messages and account for every one of them.

The worker is ``celery -A taskapp worker`` on a queue prefix of its own. The harness sends the
cases of a :class:`~tests.fuzz.messages.Generator`, then waits until the queue is empty and
nothing is in flight, reading the dead-letter queue as it goes. Each message must end as exactly
one of: ran once (the fuzz task recorded its token), or a dead letter carrying
``taskapp.reason``. The worker process must never exit; if it does, the harness notes why (the
log tail), starts another one (counted as a restart) and carries on, so one run finds more than
the first defect.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.fuzz.ledger import count_runs, create_table, runs_since, tokens_in
from tests.fuzz.messages import Case, Generator, uuid_of

__all__ = ["FuzzQueues", "WorkerProcess", "Outcome", "Report", "run_fuzz", "setup_queues"]

ROOT = Path(__file__).resolve().parents[2]
#: Receives before SQS's RedrivePolicy moves a message to the DLQ on the fuzz queues.
MAX_RECEIVES = 2
#: Visibility timeout of the fuzz queue: a message held by a worker that died comes back fast.
#: Running tasks are renewed every second by the visibility heartbeat.
VISIBILITY = 10
QUEUE = "default"
#: Largest claim-check object the fuzz worker may read (a bigger one is a "too big" pointer).
CLAIM_CHECK_MAX_BYTES = 2 * 1_048_576
#: Seconds a live worker may leave visible messages alone before it counts as stalled.
STALL_SECONDS = 30
DEPTH = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


# -- queues, buckets and the worker -----------------------------------------------------------


@dataclass
class FuzzQueues:
    """The fuzz run's queue prefix, its URLs and buckets."""

    prefix: str
    url: str
    dlq_url: str
    bucket: str
    foreign_bucket: str
    database_url: str


def _with(settings: Any, **changes: Any) -> Any:
    if dataclasses.is_dataclass(settings):
        return dataclasses.replace(settings, **changes)
    return settings.model_copy(update=changes)


def setup_queues(app: Any, sqs: Any, s3: Any, settings: Any, prefix: str) -> FuzzQueues:
    """Provision ``prefix``'s queues (short redrive, short visibility), buckets and run table."""
    from taskapp.aws.s3 import ensure_bucket
    from taskapp.queues import app_specs
    from taskapp.sqs.admin.provision import provision

    provision(sqs, _with(settings, queue_prefix=prefix, max_receives=MAX_RECEIVES), app_specs(app))
    url = sqs.get_queue_url(QueueName=prefix + QUEUE)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": str(VISIBILITY)})
    dlq_url = sqs.get_queue_url(QueueName=f"{prefix}{QUEUE}-dlq")["QueueUrl"]
    foreign = f"{settings.bucket}-foreign"[:63]
    ensure_bucket(s3, settings.bucket)
    ensure_bucket(s3, foreign)
    database_url = plain(settings.database_url)
    create_table(database_url)
    return FuzzQueues(prefix, url, dlq_url, settings.bucket, foreign, database_url)


def plain(value: Any) -> str:
    """A setting's value as text, whether or not it is wrapped as a secret."""
    reveal = getattr(value, "get_secret_value", None) or getattr(value, "reveal", None)
    return str(reveal() if reveal else value)


def worker_env(base: dict[str, str], prefix: str, **extra: str) -> dict[str, str]:
    """The fuzz worker's environment: the session's AWS and database, the fuzz prefix."""
    return {
        **base,
        "TASKAPP_QUEUE_PREFIX": prefix,
        "TASKAPP_MAX_RECEIVES": str(MAX_RECEIVES),
        "TASKAPP_CLAIM_CHECK_MAX_BYTES": str(CLAIM_CHECK_MAX_BYTES),
        "TASKAPP_HEARTBEAT_INTERVAL": "1",
        "TASKAPP_WAIT_TIME_SECONDS": "1",
        **extra,
    }


@dataclass
class Death:
    """A worker process that exited during the run."""

    pid: int
    code: int | None
    tail: str


class WorkerProcess:
    """``celery -A taskapp worker`` on the fuzz queue; restarted (and counted) if it exits."""

    def __init__(self, env: dict[str, str], log: Path, pool: str = "prefork", concurrency: int = 2):
        self.env, self.log, self.pool, self.concurrency = env, log, pool, concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.first_pid: int | None = None
        self.deaths: list[Death] = []
        self._offset = 0

    def start(self, timeout: float = 60) -> None:
        argv = [sys.executable, "-m", "celery", "-A", "taskapp", "worker"]
        argv += ["--include=tests.fuzz.tasks", "-P", self.pool, "-c", str(self.concurrency)]
        argv += ["-Q", QUEUE, "-n", f"fuzz-{uuid.uuid4().hex[:6]}@%h", "--loglevel=INFO"]
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.first_pid is None:
            self.first_pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while " ready." not in self.text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"fuzz worker exited at start:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fuzz worker not ready in {timeout}s:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def text(self) -> str:
        """This process's log (since it started)."""
        with self.log.open("rb") as f:
            f.seek(self._offset)
            return f.read().decode(errors="replace")

    def check(self, restart: bool) -> bool:
        """True if the worker runs; if it exited, note why and (with ``restart``) start another."""
        assert self.proc is not None
        if self.proc.poll() is None:
            return True
        if not any(d.pid == self.proc.pid for d in self.deaths):
            self.deaths.append(Death(self.proc.pid, self.proc.returncode, self.text()[-40000:]))
        if restart:
            self.start()
            return True
        return False

    def stalled(self, restart: bool, why: str) -> None:
        """The worker runs but no longer receives: note it as a death, replace it."""
        assert self.proc is not None
        tail = self.text()[-40000:] + f"\n[fuzz harness] {why}"
        self.deaths.append(Death(self.proc.pid, None, tail))
        self.stop()
        if restart:
            self.start()

    @property
    def restarts(self) -> int:
        return len(self.deaths)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


# -- producing: templates from the wire, S3 objects, batched sends ----------------------------


def producer_app(app: Any, prefix: str, protocol: int = 2) -> Any:
    """A producer with ``app``'s routing and serializers, on queue prefix ``prefix``."""
    from tests.support.queues import prefixed_app

    other = prefixed_app(app, prefix)
    other.conf.task_protocol = protocol
    return other


def _drain(sqs: Any, url: str, expect: int, timeout: float = 30) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        resp = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        for message in resp.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            got.append(message)
    return got


def wire_templates(app: Any, sqs: Any, probe_prefix: str) -> dict[str, dict[str, Any]]:
    """Envelopes of ``app.send_task`` as received from SQS, protocol 2 and protocol 1."""
    from taskapp.queues import app_specs
    from taskapp.sqs.admin.provision import provision

    settings = _settings()
    provision(sqs, _with(settings, queue_prefix=probe_prefix), app_specs(app))
    url = sqs.get_queue_url(QueueName=probe_prefix + QUEUE)["QueueUrl"]
    templates = {}
    for protocol in (2, 1):
        producer = producer_app(app, probe_prefix, protocol)
        with producer.connection_for_write() as conn:
            producer.send_task("fuzz.record", args=["template"], connection=conn)
        (message,) = _drain(sqs, url, 1)
        templates[f"proto{protocol}"] = json.loads(base64.b64decode(message["Body"]))
    return templates


def signed_envelopes(
    env: dict[str, str], sqs: Any, probe_prefix: str, tokens: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Messages of the fuzz task signed by a producer with the signing key (a subprocess: the
    signing serializer is registered process-wide), as received from SQS."""
    script = (
        "import sys, json, uuid\n"
        "from taskapp import app\n"
        "with app.connection_for_write() as conn:\n"
        "    for token in json.loads(sys.stdin.read()):\n"
        "        app.send_task('fuzz.record', args=['fz' + token], connection=conn,\n"
        "                      task_id=str(uuid.UUID(token)))\n"
    )
    ids = {uuid_of(t): t for t in tokens}
    subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(tokens).encode(),
        env={**env, "TASKAPP_QUEUE_PREFIX": probe_prefix},
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )
    url = sqs.get_queue_url(QueueName=probe_prefix + QUEUE)["QueueUrl"]
    pairs = []
    for message in _drain(sqs, url, len(tokens), timeout=60):
        envelope = json.loads(base64.b64decode(message["Body"]))
        pairs.append((ids[envelope["headers"]["id"]], envelope))
    return pairs


def _settings() -> Any:
    from config.settings import load_settings

    return load_settings()


def put_objects(s3: Any, cases: Iterable[Case]) -> None:
    for case in cases:
        for obj in case.objects:
            s3.put_object(Bucket=obj.bucket, Key=obj.key, Body=obj.data)


@dataclass
class Sent:
    """A case on its way: its SQS message ids, or why SQS refused it."""

    case: Case
    message_ids: list[str] = field(default_factory=list)
    refused: str = ""


def send(sqs: Any, url: str, cases: list[Case], sent: dict[str, Sent]) -> None:
    """Send each case once (batches of up to 10 under 1 MiB; big ones alone)."""
    batch: list[Case] = []

    def flush() -> None:
        if not batch:
            return
        entries = [{"Id": str(i), "MessageBody": c.body, **_attrs(c)} for i, c in enumerate(batch)]
        try:
            resp = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except ClientError:
            for case in batch:
                _send_one(sqs, url, case, sent)
        else:
            for ok in resp.get("Successful", []):
                case = batch[int(ok["Id"])]
                sent.setdefault(case.token, Sent(case)).message_ids.append(ok["MessageId"])
            for failed in resp.get("Failed", []):
                _send_one(sqs, url, batch[int(failed["Id"])], sent)
        batch.clear()

    size = 0
    for case in cases:
        if case.size > 100_000:
            _send_one(sqs, url, case, sent)
            continue
        if len(batch) == 10 or size + case.size > 900_000:
            flush()
            size = 0
        batch.append(case)
        size += case.size
    flush()


def _attrs(case: Case) -> dict[str, Any]:
    return {"MessageAttributes": case.attributes} if case.attributes else {}


def _send_one(sqs: Any, url: str, case: Case, sent: dict[str, Sent]) -> None:
    entry = sent.setdefault(case.token, Sent(case))
    try:
        resp = sqs.send_message(QueueUrl=url, MessageBody=case.body, **_attrs(case))
    except ClientError as exc:
        entry.refused = str(exc)[:200]
    else:
        entry.message_ids.append(resp["MessageId"])


# -- observing: dead letters, runs, settling --------------------------------------------------


@dataclass
class Letter:
    body: str
    reason: str
    error_type: str
    error_message: str
    receives: int


def drain_dlq(sqs: Any, dlq_url: str) -> list[Letter]:
    """Receive and delete what is in the DLQ now."""
    letters = []
    while True:
        resp = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        messages = resp.get("Messages", [])
        if not messages:
            return letters
        sqs.delete_message_batch(
            QueueUrl=dlq_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        for m in messages:
            attrs = {
                k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()
            }
            letters.append(
                Letter(
                    body=m["Body"],
                    reason=attrs.get("taskapp.reason", ""),
                    error_type=attrs.get("taskapp.error_type", ""),
                    error_message=attrs.get("taskapp.error_message", ""),
                    receives=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 0)),
                )
            )


def queue_depth(sqs: Any, url: str) -> tuple[int, int, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=DEPTH)["Attributes"]
    visible, in_flight, delayed = (int(attrs.get(k, 0)) for k in DEPTH)
    return visible, in_flight, delayed


def _decoded_tokens(body: str) -> set[str]:
    """Tokens in a body, also inside base64 (up to three layers: envelope, body, signed body)."""
    found, text = tokens_in(body), body
    for _ in range(3):
        try:
            data = base64.b64decode(text.strip(), validate=False)
            text = data.decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            break
        found |= tokens_in(text)
        try:
            env = json.loads(text)
        except ValueError:
            continue
        if isinstance(env, dict) and isinstance(env.get("body"), str):
            text = env["body"]
            found |= tokens_in(text)
    return found


# -- verdict ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What became of one case."""

    case: Case
    sent: int = 0
    refused: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    letters: list[Letter] = field(default_factory=list)

    def problems(self) -> list[str]:
        case, runs, letters = self.case, len(self.runs), len(self.letters)
        if self.refused or not self.sent:
            return []
        found = []
        if runs > 1:
            found.append(f"ran {runs} times")
        if runs and letters:
            found.append(f"ran and was dead-lettered ({self._letter_text()})")
        if letters > 1:
            found.append(f"dead-lettered {letters} times ({self._letter_text()})")
        if not runs and not letters:
            found.append("lost: neither ran nor dead-lettered")
        for letter in self.letters:
            if not letter.reason:
                found.append(f"dead letter without taskapp.reason ({letter.receives} receives)")
        if case.expect == "run" and letters and not runs:
            found.append(f"must run, was dead-lettered ({self._letter_text()})")
        if case.expect == "dead" and runs:
            found.append("must not run, but ran" + self._run_text())
        if case.reasons and letters and not runs:
            wrong = [
                lt.reason for lt in self.letters if lt.reason and lt.reason not in case.reasons
            ]
            if wrong:
                found.append(
                    f"dead-lettered as {wrong[0]!r}, expected {'/'.join(sorted(case.reasons))}"
                    f" ({self._letter_text()})"
                )
        return found

    def _letter_text(self) -> str:
        return "; ".join(
            f"reason={lt.reason or '-'} {lt.error_type}: {lt.error_message[:160]}"
            for lt in self.letters
        )

    def _run_text(self) -> str:
        return "".join(f" [as {r['task_name']} id={r['task_id'][:60]}]" for r in self.runs[:2])

    @property
    def verdict(self) -> str:
        if self.refused or not self.sent:
            return "refused"
        if len(self.runs) == 1 and not self.letters:
            return "ran"
        if self.letters and not self.runs:
            return "dead:" + (self.letters[0].reason or "-")
        return "lost" if not self.runs else "mixed"


@dataclass
class Report:
    """The result of one fuzz run."""

    seed: int
    outcomes: list[Outcome]
    deaths: list[Any]
    unattributed_runs: list[dict[str, Any]]
    unattributed_letters: list[Letter]
    missing_objects: list[str]
    ping: str
    log_errors: Counter[str]
    elapsed: float
    stuck: tuple[int, int, int]
    log: str = ""
    #: The worker exited and was not replaced (a run without restarts).
    worker_gone: bool = False

    @property
    def messages(self) -> int:
        return sum(o.sent for o in self.outcomes)

    def figure(self) -> str:
        ran = sum(len(o.runs) for o in self.outcomes)
        reasons = Counter(lt.reason or "no-reason" for o in self.outcomes for lt in o.letters)
        dead = sum(reasons.values())
        duplicates = sum(1 for o in self.outcomes if o.case.duplicate and o.sent > 1)
        refused = sum(1 for o in self.outcomes if o.refused)
        by_reason = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        line = (
            f"{self.messages} messages, {ran} ran, {dead} dead-lettered by reason ({by_reason}), "
            f"{duplicates} duplicate deliveries ignored, worker restarts {len(self.deaths)}"
        )
        if refused:
            line += f" ({refused} more refused by SQS at send)"
        return line

    def violations(self) -> list[str]:
        found = []
        for death in self.deaths:
            found.append(
                f"worker pid {death.pid} exited with {death.code}: {_last_error(death.tail)}"
            )
        unprocessed = 0
        for outcome in self.outcomes:
            if self.worker_gone and outcome.verdict == "lost":
                unprocessed += 1
                continue
            for problem in outcome.problems():
                found.append(
                    f"{outcome.case.kind} [{outcome.case.token}] {problem}; {outcome.case.note}"
                )
        if unprocessed:
            found.append(f"{unprocessed} messages never processed: the worker had exited")
        for run in self.unattributed_runs:
            found.append(f"a run of no generated message: {run}")
        for letter in self.unattributed_letters:
            found.append(
                f"a dead letter of no generated message: {letter.body[:120]!r} "
                f"reason={letter.reason}"
            )
        for key in self.missing_objects:
            found.append(f"object {key} was deleted, though its pointer must be refused")
        if self.ping != "pong":
            found.append(f"taskapp.ping did not answer afterwards: {self.ping}")
        if any(self.stuck):
            found.append(f"queue not empty at the end (visible, in flight, delayed) = {self.stuck}")
        ran = sum(1 for o in self.outcomes if o.verdict == "ran")
        dead = sum(1 for o in self.outcomes if o.verdict.startswith("dead:"))
        sent = sum(1 for o in self.outcomes if o.sent)
        if ran + dead != sent:
            found.append(f"counts do not add up: {ran} ran + {dead} dead != {sent} cases sent")
        return found

    def by_kind(self) -> list[str]:
        """One line per kind: how its cases ended."""
        table: dict[str, Counter[str]] = {}
        for o in self.outcomes:
            table.setdefault(o.case.kind, Counter())[o.verdict] += 1
        return [
            f"  {kind:38} " + ", ".join(f"{v} {n}" for v, n in sorted(c.items()))
            for kind, c in sorted(table.items())
        ]

    def evidence(self, outcome: Outcome, limit: int = 6) -> list[str]:
        """Worker log lines naming the case's token or task id (and the exception after each)."""
        needles = (outcome.case.token, uuid_of(outcome.case.token))
        lines = self.log.splitlines()
        found: list[str] = []
        for i, line in enumerate(lines):
            if any(n in line for n in needles):
                found.append(line[:300])
                tail = [x for x in lines[i + 1 : i + 40] if x and not x.startswith(("[", " "))]
                if "Traceback" in (lines[i + 1] if i + 1 < len(lines) else "") and tail:
                    found.append("    " + tail[0][:300])
            if len(found) >= limit:
                break
        return found

    def failures(self) -> list[dict[str, Any]]:
        """Every case with a problem, with its message and the log lines about it (a repro)."""
        out = []
        for o in self.outcomes:
            problems = o.problems()
            if problems:
                out.append(
                    {
                        "kind": o.case.kind,
                        "token": o.case.token,
                        "note": o.case.note,
                        "expect": o.case.expect,
                        "problems": problems,
                        "body": o.case.body if len(o.case.body) < 4000 else o.case.body[:4000],
                        "body_bytes": len(o.case.body.encode()),
                        "attributes": sorted(o.case.attributes),
                        "objects": [
                            {"bucket": x.bucket, "key": x.key, "bytes": len(x.data)}
                            for x in o.case.objects
                        ],
                        "letters": [dataclasses.asdict(x) for x in o.letters],
                        "runs": [{k: str(v) for k, v in r.items()} for r in o.runs],
                        "log": self.evidence(o),
                    }
                )
        return out

    def write_failures(self, path: Path) -> Path:
        """Write :meth:`failures` as JSON lines (one failing message each) to ``path``."""
        with path.open("w") as out:
            for failure in self.failures():
                out.write(json.dumps(failure, default=str) + "\n")
            for letter in self.unattributed_letters:
                record = {"kind": "<unattributed dead letter>", **dataclasses.asdict(letter)}
                out.write(json.dumps(record, default=str) + "\n")
            for run in self.unattributed_runs:
                out.write(json.dumps({"kind": "<unattributed run>", **run}, default=str) + "\n")
        return path

    def text(self) -> str:
        lines = [f"fuzz seed {self.seed}: {self.figure()}  ({self.elapsed:.0f} s)"]
        problems = self.violations()
        if problems:
            lines.append(f"{len(problems)} violations:")
            lines += [f"  - {p}" for p in _dedupe(problems)]
        if self.log_errors:
            lines.append("worker log errors:")
            lines += [f"  {n:4} x {line}" for line, n in self.log_errors.most_common(15)]
        return "\n".join(lines)


def _dedupe(problems: list[str], limit: int = 60) -> list[str]:
    """Problems grouped by (kind, problem) with counts, first example kept."""
    groups: dict[str, tuple[str, int]] = {}
    for p in problems:
        kind, _, rest = p.partition(" [")
        key = kind + " " + rest.partition("] ")[2].split(" (")[0].split(";")[0]
        first, n = groups.get(key, (p, 0))
        groups[key] = (first, n + 1)
    out = [f"{first}" + (f"  (x{n})" if n > 1 else "") for first, n in groups.values()]
    return out[:limit] + ([f"... {len(out) - limit} more groups"] if len(out) > limit else [])


def _last_error(tail: str) -> str:
    """The last fatal log line of a worker, with the exception line that follows it."""
    lines = [line for line in tail.splitlines() if line.strip()]
    why = lines[-1] if lines and lines[-1].startswith("[fuzz harness]") else ""
    for i in range(len(lines) - 1, -1, -1):
        if "Unrecoverable error" in lines[i] or "Error in timer" in lines[i]:
            rest = [x for x in lines[i + 1 :] if not x.startswith((" ", "\t", "Traceback", "["))]
            text = lines[i].split("] ", 1)[-1] + (" | " + rest[0] if rest else "")
            return (text + (" " + why if why else "")).strip()[:500]
    return (lines[-1] if lines else "")[:500]


def log_errors(text: str) -> Counter[str]:
    """ERROR/CRITICAL log lines of the worker, with ids and numbers blanked out."""
    import re

    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if "ERROR/" in line or "CRITICAL/" in line or "WARNING/MainProcess] consumer" in line:
            body = line.split("] ", 1)[-1]
            body = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|fz[0-9a-f]{32}|\d+", "#", body)
            counts[body[:200]] += 1
    return counts


# -- the run ----------------------------------------------------------------------------------


def run_fuzz(
    *,
    app: Any,
    sqs: Any,
    s3: Any,
    queues: FuzzQueues,
    worker: WorkerProcess,
    generator: Generator,
    count: int,
    restart: bool = True,
    timeout: float = 600,
    max_depth: int = 300,
    cases: list[Case] | None = None,
    only: list[str] | None = None,
    ping: bool = True,
    progress: Any = None,
) -> Report:
    """Send ``count`` generated cases (or ``cases``) to a running ``worker``; account for each."""
    started = time.monotonic()
    since = time.time() - 1
    deaths_before = len(worker.deaths)
    cases = cases if cases is not None else list(generator.cases(count, only))
    sent: dict[str, Sent] = {}
    watch = _Watch(sqs, queues, worker, restart, since, progress)
    deadline = started + timeout

    # Phase 1: every case once, keeping the queue shallow (moto scans the whole queue per call).
    for i in range(0, len(cases), 50):
        chunk = cases[i : i + 50]
        while sum(watch.poll()) > max_depth and watch.worker_ok and time.monotonic() < deadline:
            time.sleep(0.2)
        put_objects(s3, chunk)
        send(sqs, queues.url, chunk, sent)
        watch.poll()
        if progress:
            progress(f"sent {min(i + 50, len(cases))}/{len(cases)}")
    watch.settle(deadline)

    # Phase 2: duplicates of what ran, sent again unchanged (a claim-checked one's object is gone).
    runs = runs_since(queues.database_url, since)
    ran = Counter(tok for r in runs for tok in str(r["tokens"]).split())
    again = [c for c in cases if c.duplicate and ran[c.token] == 1 and not sent[c.token].refused]
    if again:
        send(sqs, queues.url, again, sent)
        watch.settle(deadline)

    answer = _ping(app, queues.prefix, worker, restart) if ping else "pong"
    stuck = _depth_once_acked(sqs, queues.url)
    watch.letters.extend(drain_dlq(sqs, queues.dlq_url))
    report = _account(
        generator.seed,
        cases,
        sent,
        runs_since(queues.database_url, since),
        watch.letters,
        s3,
        worker.deaths[deaths_before:],
        _whole_log(worker),
        answer,
        time.monotonic() - started,
        stuck,
    )
    report.worker_gone = not worker.check(restart)
    return report


class _Watch:
    """Reads the DLQ, watches the worker, and notices when it stops making progress.

    A worker that is alive while messages wait (visible or held by it) and nothing changes (no
    run, no dead letter, no queue movement) for ``STALL_SECONDS`` has stopped working: it is
    noted as a death, and replaced if restarts are allowed.
    """

    def __init__(
        self,
        sqs: Any,
        queues: FuzzQueues,
        worker: WorkerProcess,
        restart: bool,
        since: float,
        progress: Any,
    ) -> None:
        self.sqs, self.queues, self.worker, self.restart = sqs, queues, worker, restart
        self.since, self.progress = since, progress
        self.letters: list[Letter] = []
        self.worker_ok = True
        self._last: Any = None
        self._changed = time.monotonic()

    def poll(self) -> tuple[int, int, int]:
        self.letters.extend(drain_dlq(self.sqs, self.queues.dlq_url))
        self.worker_ok = self.worker.check(self.restart)
        depth = queue_depth(self.sqs, self.queues.url)
        runs = count_runs(self.queues.database_url, self.since)
        if self.progress:
            self.progress(
                f"queue (visible, in flight, delayed) = {depth}, runs {runs}, "
                f"dead letters {len(self.letters)}"
            )
        state = (depth, runs, len(self.letters))
        if state != self._last:
            self._last, self._changed = state, time.monotonic()
        elif self.worker_ok and (depth[0] or depth[1]):
            idle = time.monotonic() - self._changed
            if idle > STALL_SECONDS:
                self.worker.stalled(
                    self.restart,
                    f"alive, but nothing happened for {idle:.0f}s while {depth[0]} messages "
                    f"waited and it held {depth[1]}: it stopped working",
                )
                self.worker_ok = self.restart
                self._changed = time.monotonic()
        return depth

    def settle(self, deadline: float) -> None:
        """Wait until the queue is empty with nothing in flight or delayed (or the deadline)."""
        quiet_since = None
        while time.monotonic() < deadline:
            depth = self.poll()
            if not self.worker_ok:
                return
            if any(depth):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > 1.5:
                return
            time.sleep(0.5)


#: Seconds the queue may take to empty after the ping's result: the worker deletes an acknowledged
#: message up to one ack flush interval (0.1 s) later, and later still on a starved machine.
ACK_SETTLE_SECONDS = 15


def _depth_once_acked(sqs: Any, url: str) -> tuple[int, int, int]:
    """The queue's depth once the ping's message is deleted, or as it is after the settle bound.

    Read right after the ping's result, the ping's own message was still in flight (its ack
    batched) on a loaded machine: ``(0, 1, 0)``, a message that was done, counted as stuck.
    """
    deadline = time.monotonic() + ACK_SETTLE_SECONDS
    while any(depth := queue_depth(sqs, url)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return depth


def _ping(app: Any, prefix: str, worker: WorkerProcess, restart: bool) -> str:
    if not worker.check(restart):
        return "worker is not running"
    if worker.env.get("TASKAPP_SIGNING_KEY"):
        # A signing worker takes signed messages only: ask from a signing process.
        script = "from taskapp import app; print(app.send_task('taskapp.ping').get(timeout=60))"
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=worker.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout.strip() or done.stderr.strip()[-300:]
    producer = producer_app(app, prefix)
    try:
        result = producer.send_task("taskapp.ping")
        return str(result.get(timeout=60, interval=0.2))
    except Exception as exc:  # noqa: BLE001 - any failure is the finding, reported as text
        return f"{type(exc).__name__}: {exc}"


def _account(
    seed: int,
    cases: list[Case],
    sent: dict[str, Sent],
    runs: list[dict[str, Any]],
    letters: list[Letter],
    s3: Any,
    deaths: list[Death],
    log: str,
    ping: str,
    elapsed: float,
    stuck: tuple[int, int, int],
) -> Report:
    outcomes = {c.token: Outcome(c) for c in cases}
    for token, entry in sent.items():
        outcomes[token].sent = len(entry.message_ids)
        outcomes[token].refused = entry.refused if not entry.message_ids else ""
    unattributed_runs = []
    for run in runs:
        owners = [t for t in str(run["tokens"]).split() if t in outcomes]
        if not owners:
            unattributed_runs.append(run)
        for token in owners[:1]:
            outcomes[token].runs.append(run)
    by_body: dict[str, list[str]] = {}
    for c in cases:
        by_body.setdefault(c.body, []).append(c.token)
    unattributed_letters = []
    for letter in letters:
        owners = _owners(letter.body, by_body, outcomes)
        if not owners:
            # A dead letter too big for SQS with its reason attributes is claim-checked anew.
            owners = _owners(_pointed_at(s3, letter.body), by_body, outcomes)
        if owners:
            outcomes[owners[0]].letters.append(letter)
        else:
            unattributed_letters.append(letter)
    missing = []
    for c in cases:
        for obj in c.objects:
            if obj.keep and sent.get(c.token) and sent[c.token].message_ids:
                try:
                    s3.head_object(Bucket=obj.bucket, Key=obj.key)
                except ClientError:
                    missing.append(f"s3://{obj.bucket}/{obj.key} ({c.kind})")
    return Report(
        seed,
        list(outcomes.values()),
        deaths,
        unattributed_runs,
        unattributed_letters,
        missing,
        ping,
        log_errors(log),
        elapsed,
        stuck,
        log,
    )


def _owners(body: str, by_body: dict[str, list[str]], outcomes: dict[str, Outcome]) -> list[str]:
    """The tokens of the cases a dead-lettered body came from: by exact body, else by token."""
    if not body:
        return []
    return by_body.get(body) or [t for t in _decoded_tokens(body) if t in outcomes]


def _pointed_at(s3: Any, body: str) -> str:
    """The object a claim-check pointer body names ('' if it is not one or is gone)."""
    from tests.fuzz.messages import POINTER_CLASS

    try:
        name, target = json.loads(body)
        if name != POINTER_CLASS:
            return ""
        obj = s3.get_object(Bucket=target["s3BucketName"], Key=target["s3Key"])
        return str(obj["Body"].read().decode("utf-8", "replace"))
    except (ValueError, TypeError, KeyError, ClientError):
        return ""


def _whole_log(worker: WorkerProcess) -> str:
    return worker.log.read_text(errors="replace") if worker.log.exists() else ""
