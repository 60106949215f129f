"""SQS requests of taskapp's worker, focused: a prefetch sweep of the drain, start-up calls,
idle latency, and the idle cost of a plain worker (issue 16's SQS targets), in one run.

    uv run python bench/sqs_requests.py [--multipliers 4,6,10] [--preload 300]
                                        [--latency 30] [--idle 60] [--concurrency 2]

One moto server on loopback counts every request (``bench/throughput_moto.py``, the same as
``bench/throughput.py``, whose process plumbing this reuses). For each prefetch multiplier, on
a queue prefix of its own: ``--preload`` no-op tasks are enqueued with nothing consuming, then
``celery -A taskapp worker -Q default --prefetch-multiplier M`` starts and drains them. Over
that drain, start-up included, every SQS request on the prefix is counted: requests per task,
ReceiveMessage calls and the mean messages per receive (tasks / receives), and the start-up
calls (everything but receives, acks and visibility changes). Then ``--latency`` single sends
on the idle worker give p50/p99 send->start. At the end a plain ``celery -A taskapp worker``
(every declared queue plus its monitoring queue, started first so it is warm) idles with the
others for ``--idle`` seconds: its SQS requests per polled queue-hour.

The machine is shared: compare the rows of one run, not runs of different times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent)]

from throughput import (  # noqa: E402  (bench/ is not a package)
    OUT,
    Child,
    Moto,
    Reports,
    environment,
    prefix_requests,
    stop_all,
)

#: What a worker calls per task or per poll; everything else in a drain is start-up.
STEADY = ("ReceiveMessage", "DeleteMessageBatch", "DeleteMessage", "ChangeMessageVisibilityBatch")


@dataclass
class Row:
    name: str
    drain_per_s: float | None = None
    requests_per_task: float | None = None
    receives: int = 0
    per_receive: float | None = None
    startup: dict[str, int] = field(default_factory=dict)
    cpu_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    calls: dict[str, int] = field(default_factory=dict)


def provision(prefix: str) -> None:
    from config.settings import load_settings
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.aws.s3 import ensure_bucket
    from taskapp.db import upgrade
    from taskapp.queues import app_specs
    from taskapp.sqs.admin.provision import provision as provision_queues

    settings = load_settings().model_copy(update={"queue_prefix": prefix})
    upgrade(settings.database_url.get_secret_value())
    ensure_bucket(client("s3", settings), settings.bucket)
    provision_queues(client("sqs", settings), settings, app_specs(app))


def producer(prefix: str):  # type: ignore[no-untyped-def]
    """A Celery app publishing like taskapp's, onto ``prefix``'s queues."""
    from celery import Celery

    from taskapp.app import app
    from taskapp.sqs import install

    sender = Celery(f"bench-{prefix}", set_as_current=False)
    for key in ("broker_url", "task_routes", "task_queues", "task_default_queue"):
        sender.conf[key] = app.conf[key]
    sender.conf.broker_transport_options = {
        **app.conf.broker_transport_options,
        "queue_name_prefix": prefix,
    }
    install(sender)
    return sender


def worker(name: str, prefix: str, env: dict[str, str], extra: list[str]) -> Child:
    argv = [sys.executable, "-m", "celery", "-A", "taskapp", "worker", *extra]
    argv += ["--loglevel=WARNING", "-n", f"bench-{name}@%h", "--include", "throughput_tasks"]
    worker_env = {**env, "TASKAPP_QUEUE_PREFIX": prefix}
    return Child(name, argv, worker_env, OUT / f"{name}.log").start()


def drain(
    multiplier: int, args: argparse.Namespace, moto: Moto, reports: Reports, env: dict[str, str]
) -> tuple[Row, Child]:
    name, prefix = f"prefetch-{multiplier}", f"bsq{multiplier}-"
    row = Row(name)
    provision(prefix)
    sender = producer(prefix)
    from taskapp import enqueue_many

    run = f"{name}-drain"
    signatures = [
        sender.signature("bench.noop", args=(reports.port, run, i, 0.0))
        for i in range(args.preload)
    ]
    failed = [o for o in enqueue_many(signatures, app=sender) if isinstance(o, Exception)]
    assert not failed, failed[:3]
    moto.take_counts()
    child = worker(
        name,
        prefix,
        env,
        [
            "-Q",
            "default",
            f"--concurrency={args.concurrency}",
            f"--prefetch-multiplier={multiplier}",
        ],
    )
    done = reports.wait(run, args.preload, 150.0, child)
    time.sleep(1.0)  # acks still being flushed belong to the drain
    counts = prefix_requests(moto.take_counts(), prefix)
    row.calls = counts
    if len(done) > 1:
        row.drain_per_s = (len(done) - 1) / (done[-1].arrived - done[0].arrived)
        row.cpu_ms = child.cpu_seconds() * 1000 / len(done)
        row.requests_per_task = sum(counts.values()) / len(done)
        row.receives = sum(n for k, n in counts.items() if k == f"ReceiveMessage {prefix}default")
        row.per_receive = len(done) / row.receives if row.receives else None
    row.startup = {k: n for k, n in counts.items() if k.split()[0] not in STEADY}
    latencies = []
    time.sleep(1.0)
    for index in range(args.latency):
        sent_at = time.time()
        sender.signature("bench.noop", args=(reports.port, f"{name}-lat", index, sent_at)).delay()
        report = reports.wait_for(f"{name}-lat", index, 10.0)
        if report is not None:
            latencies.append((report.started - report.sent_at) * 1000)
        time.sleep(0.05)
    if latencies:
        latencies.sort()
        row.p50_ms = statistics.median(latencies)
        row.p99_ms = latencies[round(0.99 * (len(latencies) - 1))]
    return row, child


def idle_cost(plain_prefix: str, declared: int, moto: Moto, seconds: float) -> tuple[float, dict]:
    time.sleep(2.0)
    moto.take_counts()
    time.sleep(seconds)
    counts = moto.take_counts()
    mine = {k: n for k, n in counts.items() if k.split()[2].startswith(plain_prefix)}
    monitoring = {k.split()[2] for k in mine if k.split()[2].startswith(plain_prefix + "mon-")}
    sqs = sum(n for k, n in mine.items() if k.startswith("sqs "))
    per_hour = sqs * 3600 / seconds / (declared + len(monitoring))
    return per_hour, prefix_requests(counts, plain_prefix) | {
        k.split(" ", 1)[1]: n for k, n in mine.items() if k.startswith("sns ")
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--multipliers", default="4,6,10", help="prefetch multipliers to drain")
    parser.add_argument("--preload", type=int, default=300)
    parser.add_argument("--latency", type=int, default=30, help="latency samples per worker")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window")
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    workdir = Path(tempfile.mkdtemp(prefix="bench-sqs-requests-"))
    moto = Moto(environment(None, workdir))
    try:
        env = environment(moto.start(), workdir)
        os.environ.update(env)
        import throughput_tasks  # noqa: F401  (registers bench.noop on taskapp's app)

        from taskapp.app import app

        reports = Reports()
        plain_prefix = "bsqi-"
        if args.idle:
            provision(plain_prefix)
            plain = [sys.executable, "-m", "celery", "-A", "taskapp", "worker"]
            plain += [f"--concurrency={args.concurrency}", "--loglevel=WARNING", "-n", "plain@%h"]
            Child(
                "sqs-plain",
                plain,
                {**env, "TASKAPP_QUEUE_PREFIX": plain_prefix},
                OUT / "sqs-plain.log",
            ).start()
        rows = []
        for multiplier in (int(m) for m in args.multipliers.split(",") if m):
            print(f"draining with prefetch multiplier {multiplier} ...", flush=True)
            row, _child = drain(multiplier, args, moto, reports, env)
            rows.append(row)
        idle = None
        if args.idle:
            print(f"idle window: {args.idle:.0f}s ...", flush=True)
            idle = idle_cost(plain_prefix, len(app.conf.task_queues), moto, args.idle)
        print(
            f"\nload {load_start} -> {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
            f"-c {args.concurrency}, {args.preload} tasks preloaded per drain"
        )
        labels = [
            ("drain, tasks/s", lambda r: _fmt(r.drain_per_s, ".1f")),
            ("SQS requests/task, drain + start-up", lambda r: _fmt(r.requests_per_task, ".3f")),
            ("ReceiveMessage calls", lambda r: str(r.receives)),
            ("messages per receive", lambda r: _fmt(r.per_receive, ".2f")),
            ("start-up calls", lambda r: str(sum(r.startup.values()))),
            ("worker CPU ms/task", lambda r: _fmt(r.cpu_ms, ".1f")),
            ("p50 send->start, ms", lambda r: _fmt(r.p50_ms, ".1f")),
            ("p99 send->start, ms", lambda r: _fmt(r.p99_ms, ".1f")),
        ]
        width = max(len(label) for label, _ in labels)
        print(" " * width + "".join(f"{r.name:>14}" for r in rows))
        for label, get in labels:
            print(f"{label:<{width}}" + "".join(f"{get(r):>14}" for r in rows))
        for r in rows:
            print(f"  {r.name}: " + ", ".join(f"{k}={n}" for k, n in sorted(r.calls.items())))
        if idle is not None:
            print(f"plain worker, idle SQS requests per polled queue-hour: {idle[0]:.0f}")
            print("  " + ", ".join(f"{k}={n}" for k, n in sorted(idle[1].items())))
    finally:
        stop_all()


if __name__ == "__main__":
    main()
