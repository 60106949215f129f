"""The worker fuzzer's long run: thousands of hostile messages against a live worker subprocess.

    uv run python bench/fuzz.py                      2,000 messages, a random seed (printed)
    uv run python bench/fuzz.py --seed 7 -n 5000     replay or extend a run
    uv run python bench/fuzz.py --signing            signing on: signed, edited and forged
    uv run python bench/fuzz.py --per-kind           one message of each kind, one at a time:
                                                     what each kind does to the worker

It starts its own moto server, database and queue prefix, runs ``celery -A taskapp worker``
(prefork, 2 processes) on it, and prints ``N messages, N ran, N dead-lettered by reason (...),
worker restarts 0``. The exit status is 1 if any message ended other than ran once or dead
letter with a reason, or the worker exited, or ``taskapp.ping`` did not answer afterwards.
See tests/fuzz/ for the generator and the harness.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _environment(tmp: Path) -> object:
    """A moto server and the environment every process of the run shares."""
    from taskapp.local.aws import LocalAWS

    aws = LocalAWS().start()
    aws.export()
    run = uuid.uuid4().hex[:8]
    os.environ.update(
        {
            "TASKAPP_QUEUE_PREFIX": f"b{run}-",
            "TASKAPP_BUCKET": f"b{run}-bucket",
            "TASKAPP_DATABASE_URL": f"sqlite:///{tmp}/taskapp.db",
            "TASKAPP_MAIL_DIR": str(tmp / "mail"),
            "TASKAPP_WAIT_TIME_SECONDS": "1",
            "TASKAPP_HEARTBEAT_INTERVAL": "1",
        }
    )
    for var in ("TASKAPP_VISIBILITY_TIMEOUT", "TASKAPP_PREDEFINED_QUEUES", "TASKAPP_SIGNING_KEY"):
        os.environ.pop(var, None)
    return aws


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--messages", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--signing", action="store_true", help="run with message signing on")
    parser.add_argument("--per-kind", action="store_true", help="one message per kind, in turn")
    parser.add_argument(
        "--kind", action="append", help="only kinds starting with this (repeatable): a repro"
    )
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print(f"fuzz seed {seed}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="taskapp-fuzz-"))
    aws = _environment(tmp)
    import logging

    for name in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from config.settings import load_settings
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.db import upgrade
    from tests.fuzz import harness
    from tests.fuzz.messages import KINDS, SIGNED_KINDS, Generator
    from tests.support.signing import signing_env

    settings = load_settings()
    sqs, s3 = client("sqs", settings), client("s3", settings)
    upgrade(harness.plain(settings.database_url))
    prefix = settings.queue_prefix
    queues = harness.setup_queues(app, sqs, s3, settings, prefix + "fz-")
    templates = harness.wire_templates(app, sqs, prefix + "fzp-")
    extra: dict[str, str] = {}
    signed = None
    count = args.messages
    if args.signing:
        extra = signing_env(tmp / "signing", "taskapp-fuzz")
        rng = random.Random(seed ^ 0x5EED)
        tokens = [f"{rng.getrandbits(128):032x}" for _ in range(max(40, count // 4))]
        env = harness.worker_env(dict(os.environ), prefix + "fzs-", **extra)
        harness.setup_queues(app, sqs, s3, settings, prefix + "fzs-")
        signed = harness.signed_envelopes(env, sqs, prefix + "fzs-", tokens)
    generator = Generator(
        seed, templates, queues.bucket, queues.foreign_bucket, harness.CLAIM_CHECK_MAX_BYTES, signed
    )
    log = tmp / "worker.log"
    worker = harness.WorkerProcess(
        harness.worker_env(dict(os.environ), queues.prefix, **extra),
        log,
        args.pool,
        args.concurrency,
    )
    started = time.monotonic()
    worker.start()
    print(f"worker pid {worker.first_pid} ready in {time.monotonic() - started:.1f}s; log {log}")

    def progress(text: str) -> None:
        if args.verbose:
            print(f"  [{time.monotonic() - started:6.1f}s] {text}", flush=True)

    try:
        if args.per_kind:
            return _per_kind(args, app, sqs, s3, queues, worker, generator, progress)
        report = harness.run_fuzz(
            app=app,
            sqs=sqs,
            s3=s3,
            queues=queues,
            worker=worker,
            generator=generator,
            count=count,
            only=args.kind,
            timeout=args.timeout,
            progress=progress,
        )
    finally:
        worker.stop()
        aws.stop()
    print(report.text())
    failures = report.write_failures(tmp / "failures.jsonl")
    print(f"failing messages (body, outcome, worker log lines): {failures}")
    print("by kind:")
    print("\n".join(report.by_kind()))
    print(report.figure())
    del KINDS, SIGNED_KINDS
    return 1 if report.violations() else 0


def _per_kind(args, app, sqs, s3, queues, worker, generator, progress) -> int:  # type: ignore[no-untyped-def]
    """Each kind alone, so a worker death is pinned on the kind that caused it."""
    from tests.fuzz import harness
    from tests.fuzz.messages import KINDS, SIGNED_KINDS

    kinds = list(KINDS) + (list(SIGNED_KINDS) if generator.signing else [])
    kinds = [k for k in kinds if not args.kind or k.startswith(tuple(args.kind))]
    bad = 0
    for kind in kinds:
        case = generator.make(kind)
        if case is None:
            continue
        report = harness.run_fuzz(
            app=app,
            sqs=sqs,
            s3=s3,
            queues=queues,
            worker=worker,
            generator=generator,
            count=1,
            cases=[case],
            timeout=90,
            ping=False,
            progress=progress,
        )
        (outcome,) = report.outcomes
        problems = report.violations()
        bad += bool(problems)
        print(f"{kind:38} {outcome.verdict:16} {case.note[:60]}")
        for problem in problems:
            print(f"    ! {problem}")
        for line in report.evidence(outcome, limit=4) if problems else []:
            print(f"    | {line[:200]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
