"""A mixed load for the infrastructure fault cells (PostgreSQL, SMTP, S3, SNS) and its ledger.

One :class:`MixedLoad` queues, on a cell's own queue prefix (the ``drain`` fixture's):

* ``tests.record`` no-op tasks (a ``test_effects`` row each),
* ``email.send`` to an SMTP sink, one idempotency key and one recipient per email,
* ``images.thumbnails`` of a small PNG uploaded to the bucket (two sizes, one format),
* one small ``reports.generate`` over seeded sample orders.

The ledger reads effects, not results: the sink's messages per recipient, the variant objects
in S3, the report objects under the task's id, the ``test_effects`` rows. Every task is then
done (its effect exists, exactly once), a dead letter, or still queued, and :meth:`check`
asserts the counts add up.
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, make_url, select

from taskapp import enqueue_many
from taskapp.db import engine
from taskapp.images.pipeline import output_formats
from taskapp.images.service import variant_key
from taskapp.queues import dlq_name
from tests.email.smtp_server import TestSMTPServer
from tests.faults.drain import Drain
from tests.support.databases import postgres_database
from tests.support.faultproxy import FaultProxy
from tests.support.waiting import wait_for
from tests.tasks import effects

__all__ = ["MixedLoad", "QUEUES", "postgres", "prepare_database", "sink", "smtp_url", "through"]

#: Queues a cell's worker consumes (``-Q``): every family the load touches.
QUEUES = ("default", "email", "images", "reports")
#: What a worker that gave up on a fault writes, and must never write here.
GAVE_UP = ("Unrecoverable error", "UNABLE TO RESTORE")
#: The seed spreads sample orders over the 90 days before this instant.
SEED_NOW = datetime(2025, 3, 31, 23, 0, tzinfo=UTC)
SIZES, FORMAT = (32, 64), "png"


@dataclass
class MixedLoad:
    """What one cell queued, and where its effects are read (``db_url``: the worker's database,
    reached directly even when the worker's own URL goes through a proxy)."""

    drain: Drain
    s3: Any
    bucket: str
    sink: TestSMTPServer
    db_url: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    noops: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # source keys
    digests: dict[str, str] = field(default_factory=dict)  # source key: its SHA-256
    task_ids: dict[str, str] = field(default_factory=dict)  # no-op tag or recipient: task id
    reports: list[str] = field(default_factory=list)  # task ids

    # -- queueing ----------------------------------------------------------------------------
    def send(
        self,
        noops: int = 4,
        emails: int = 3,
        images: int = 1,
        reports: int = 1,
        sleep: float = 0,
        batched: bool = False,
    ) -> None:
        """Queue more tasks (no-ops that take ``sleep`` seconds, so a fault can hit them).

        ``batched``: no-ops and emails go out with ``enqueue_many`` (SendMessageBatch of 10), as
        a producer that queues many tasks would send them; the soak's moto then spends its CPU
        on the workers' calls rather than on one SendMessage per task.
        """
        producer = self.drain.producer
        signatures: dict[str, Any] = {}
        for _ in range(noops):
            tag = f"{self.run}-n{len(self.noops)}"
            signatures[tag] = producer.signature(
                "tests.record", args=[tag], kwargs={"sleep": sleep}
            )
            self.noops.append(tag)
        for _ in range(emails):
            to = f"{self.run}-e{len(self.emails)}@example.com"
            signatures[to] = producer.signature(
                "email.send",
                args=[to, "fault cell"],
                kwargs={"body": "hello", "idempotency_key": f"{self.run}:{to}"},
            )
            self.emails.append(to)
        for tag, signature in signatures.items():
            self.task_ids[tag] = signature.freeze().id
        if batched:
            failed = [
                outcome
                for outcome in enqueue_many(signatures.values(), app=producer)
                if isinstance(outcome, Exception)
            ]
            assert not failed, failed[:3]
        else:
            for signature in signatures.values():
                signature.apply_async()
        for _ in range(images):
            # A distinct picture per task, so each has a variant set of its own.
            key = f"faults/{self.run}/{len(self.images)}.png"
            body = self._png(len(self.images))
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            self.digests[key] = hashlib.sha256(body).hexdigest()
            producer.send_task(
                "images.thumbnails", args=[key], kwargs={"sizes": SIZES, "formats": [FORMAT]}
            )
            self.images.append(key)
        for _ in range(reports):
            sent = producer.send_task(
                "reports.generate",
                args=["orders_by_day", {"start": "2025-03-01", "end": "2025-03-10"}, "csv"],
            )
            self.reports.append(sent.id)

    @property
    def sent(self) -> int:
        return len(self.noops) + len(self.emails) + len(self.images) + len(self.reports)

    def _png(self, index: int) -> bytes:
        from PIL import Image

        out = io.BytesIO()
        colour = (index * 37 % 256, int(self.run[:2], 16), 90)
        Image.new("RGB", (96, 64), colour).save(out, "PNG")
        return out.getvalue()

    # -- the ledger --------------------------------------------------------------------------
    def effects(self) -> dict[str, int]:
        """How many times each task's effect happened, by task (0 = not yet)."""
        counts: Counter[str] = Counter()
        with engine(self.db_url).connect() as conn:
            rows = conn.execute(
                select(effects.c.tag, func.count())
                .where(effects.c.tag.like(f"{self.run}-n%"))
                .group_by(effects.c.tag)
            )
            counts.update({tag: n for tag, n in rows})
        for message in self.sink.received:
            for to in message.rcpt_tos:
                counts[to] += 1
        for key in self.images:
            counts[key] += self._variant_sets(key)
        for task_id in self.reports:
            listed = self.s3.list_objects_v2(
                Bucket=self.bucket, Prefix=f"reports/orders_by_day/{task_id}/"
            )
            counts[task_id] += listed.get("KeyCount", 0)
        return {name: counts.get(name, 0) for name in self.names()}

    def _variant_sets(self, source: str) -> int:
        sha = self.digests[source]
        fmt = output_formats()[FORMAT]
        present = 0
        for size in SIZES:
            try:
                self.s3.head_object(Bucket=self.bucket, Key=variant_key(sha, size, fmt))
                present += 1
            except self.s3.exceptions.ClientError:
                pass
        # Variants are content-addressed: a set is there or not; it cannot be there twice.
        return int(present == len(SIZES))

    def names(self) -> list[str]:
        return [*self.noops, *self.emails, *self.images, *self.reports]

    def done(self) -> int:
        return sum(1 for n in self.effects().values() if n)

    def queued(self) -> int:
        return sum(self.drain.depth(queue) for queue in QUEUES)

    def dead_letters(self) -> int:
        return sum(self.drain.depth(dlq_name(queue)) for queue in QUEUES)

    def check(self, log: Path, pid: int, alive: bool) -> dict[str, int]:
        """Assert the cell's invariants; return its figures."""
        text = log.read_text()
        assert alive, f"worker {pid} exited:\n{text[-3000:]}"
        ran = self.effects()
        twice = {name: n for name, n in ran.items() if n > 1}
        assert not twice, f"effects more than once: {twice}"
        done = sum(1 for n in ran.values() if n)
        queued, dead = self.queued(), self.dead_letters()
        assert done + queued + dead == self.sent, (done, queued, dead, self.sent, ran)
        gave_up = [line for line in text.splitlines() if any(m in line for m in GAVE_UP)]
        assert not gave_up, text[-3000:]
        return {"done": done, "queued": queued, "dead": dead, "sent": self.sent}


def queue_arg() -> str:
    """The worker's ``-Q``."""
    return ",".join(QUEUES)


def prepare_database(url: str) -> None:
    """A fresh database for one cell: migrated, the tests' effects table, sample orders."""
    from taskapp.db import upgrade
    from taskapp.sample import seed
    from tests.tasks import effects_metadata

    upgrade(url)
    effects_metadata.create_all(engine(url))
    seed(url, n_orders=60, now=SEED_NOW)


@contextmanager
def postgres() -> Iterator[tuple[str, FaultProxy]]:
    """A fresh prepared PostgreSQL database, and a pass-mode proxy in front of its server:
    ``(direct URL, proxy)``; the worker's URL is :func:`through`."""
    with postgres_database() as url:
        prepare_database(url)
        server = make_url(url)
        with FaultProxy((server.host or "127.0.0.1", server.port or 5432)) as proxy:
            yield url, proxy


def through(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host and port replaced by ``proxy``'s."""
    moved = make_url(url).set(host="127.0.0.1", port=proxy.port)
    return moved.render_as_string(hide_password=False)


def sink() -> TestSMTPServer:
    """A plain SMTP sink on 127.0.0.1 (no TLS, no AUTH): it only counts what arrives."""
    return TestSMTPServer(tls=None, credentials=None).start()


def smtp_url(port: int) -> str:
    return f"smtp://127.0.0.1:{port}?timeout=5"


def sqlite_env(
    drain: Drain, tmp_path: Path, smtp_port: int, **extra: str
) -> tuple[str, dict[str, str]]:
    """A prepared SQLite database under ``tmp_path``, and a worker environment on it that sends
    email by SMTP to ``smtp_port`` (plus ``extra``): ``(database URL, environment)``."""
    db = f"sqlite:///{tmp_path}/app.db"
    prepare_database(db)
    env = {
        **drain.env,
        "TASKAPP_DATABASE_URL": db,
        "TASKAPP_EMAIL_BACKEND": "smtp",
        "TASKAPP_SMTP_URL": smtp_url(smtp_port),
        **extra,
    }
    return db, env


def finish(load: MixedLoad, worker: Any, log: Path, done_before: int) -> dict[str, int]:
    """After the fault is lifted: the same worker resumes, then drains; check the ledger."""
    lifted = time.monotonic()
    figures: dict[str, float] = {}
    if done_before < load.sent:
        wait_for(lambda: load.done() > done_before, "the worker to resume", 120, 0.2)
        figures["resumed_s"] = round(time.monotonic() - lifted, 1)
    # Retries scheduled during the fault wait out their backoff (up to a minute for email).
    settled = lambda: load.done() + load.dead_letters() >= load.sent  # noqa: E731
    wait_for(settled, "every task's effect or dead letter", 240, 0.5)
    figures["drained_s"] = round(time.monotonic() - lifted, 1)
    wait_for(lambda: load.queued() == 0, "the queues to empty", 120, 0.5)
    checked = load.check(log, worker.pid, worker.poll() is None)
    print(f"cell figures: {checked} {figures}")  # noqa: T201 - the cell's figures
    return checked
