"""The worker fuzzer's short run (issue 13): hostile messages never stop a live worker.

About 300 generated messages (``FUZZ_MESSAGES``; ``FUZZ_SEED`` replays a run, the seed is
printed and part of every failure) go to a ``celery -A taskapp worker`` subprocess on a queue
prefix of its own. Every message must end as exactly one of: ran once, or a dead letter with a
``taskapp.reason``; the worker process must never exit, and ``taskapp.ping`` must answer after.
The long run (2,000+ messages, and ``--signing``) is ``bench/fuzz.py``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz import harness
from tests.fuzz.messages import Generator

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzz_queues(app: Any, sqs: Any, s3: Any, settings: Any, provisioned: Any) -> harness.FuzzQueues:
    return harness.setup_queues(app, sqs, s3, settings, settings.queue_prefix + "fz-")


def test_no_message_stops_the_worker_and_each_ends_ran_once_or_dead_lettered(
    fuzz_queues: harness.FuzzQueues, app: Any, sqs: Any, s3: Any, settings: Any, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FUZZ_SEED") or random.SystemRandom().getrandbits(32))
    count = int(os.environ.get("FUZZ_MESSAGES") or 300)
    print(f"fuzz seed {seed}")  # noqa: T201 - shown on failure: FUZZ_SEED replays the run
    # given a live worker subprocess on the fuzz queues, and messages cloned from the wire
    templates = harness.wire_templates(app, sqs, settings.queue_prefix + "fzp-")
    generator = Generator(
        seed,
        templates,
        fuzz_queues.bucket,
        fuzz_queues.foreign_bucket,
        harness.CLAIM_CHECK_MAX_BYTES,
    )
    env = harness.worker_env(dict(os.environ), fuzz_queues.prefix)
    worker = harness.WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        # when every message is sent and the queue has drained (a worker that exits is not
        # restarted here: the first exit fails the run; bench/fuzz.py restarts and goes on)
        report = harness.run_fuzz(
            app=app,
            sqs=sqs,
            s3=s3,
            queues=fuzz_queues,
            worker=worker,
            generator=generator,
            count=count,
            timeout=120,
            restart=False,
        )
    finally:
        worker.stop()
    print(report.text())  # noqa: T201 - the fuzz report, shown on failure
    failures = report.write_failures(tmp_path / "failures.jsonl")
    # then the worker never exited, every message ran once or is a dead letter with a reason,
    # the counts add up, and taskapp.ping answered afterwards
    assert not report.violations(), (
        f"{report.text()}\nfailing messages: {failures}\n"
        f"replay: FUZZ_SEED={seed} FUZZ_MESSAGES={count} uv run pytest {__file__} -s"
    )
