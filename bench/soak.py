"""The soak of issue 15: a long mixed load on 2 worker subprocesses, a fault every 2 minutes.

    uv run python bench/soak.py                              20,000 tasks over 20 minutes
    uv run python bench/soak.py --tasks 1000 --minutes 3 --every 18 --hold 8    a short try

It starts a moto server of its own (``bench/throughput_moto.py``, which counts every request),
a fresh PostgreSQL database and an SMTP sink, each behind a fault proxy, and two
``celery -A taskapp worker -E`` subprocesses (as the fault cells run them: tests/faults). The
producer queues the mixed load of tests/faults/mixed.py (no-ops, ``email.send``,
``images.thumbnails``, ``reports.generate``) at an even rate for ``--minutes``, talking to moto
directly. Every ``--every`` seconds the next fault of the rotation (the matrix's: SQS refused,
blackholed, reset, throttled/5xx, 300 ms late; PostgreSQL down, reset three times; S3 SlowDown;
SNS failing; SMTP refused then a 421) is held for ``--hold`` seconds, then lifted.

Then the ledger (tests/faults/mixed.py): every task ran exactly once in effect, or is a dead
letter with a reason, or is still queued, and the counts add up; each worker process never
exited and resumed within 2 x ``wait_time_seconds`` after each fault; worker RSS grew less
than 10 %; no ephemeral monitoring queue is left once the workers stop. It prints the figures
(also in ``bench/out/soak.json``) and exits 1 on a missed check.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import OUT, Child, Moto, prefix_requests, sns_requests  # noqa: E402

#: The load's shape, repeated every 200 tasks: 172 no-ops, 20 emails, 6 images, 2 reports.
CYCLE = [
    "report" if j % 100 == 99 else "image" if j % 33 == 16 else "email" if j % 10 == 5 else "noop"
    for j in range(200)
]
RSS_GROWTH = 0.10  # at most, warm start to end
TICK = 0.2
SEND_CHUNK = 50  # tasks queued at most per tick of the producer loop
SAMPLE = 5  # seconds between samples of the workers' RSS and pool children
RESUME_CAP = 300  # seconds after a lift before a worker that has not resumed is given up on


@dataclass
class Fault:
    """One fault of the rotation: switched on, pulsed at a third and two thirds of the hold
    (if ``pulse``), switched off."""

    name: str
    begin: Callable[[], None]
    end: Callable[[], None]
    pulse: Callable[[], None] | None = None


@dataclass
class Held:
    """One fault as it happened: when (seconds into the run) and each worker's resume."""

    name: str
    began: float
    lifted: float = 0.0
    lifted_at: float = 0.0  # epoch seconds, to compare with the workers' log timestamps
    offsets: list[int] = field(default_factory=list)
    resumed: list[float | None] = field(default_factory=list)


def rotation(aws: Any, pg: Any, smtp: Any, server: Any, flags: Path) -> list[Fault]:
    """The faults, in turn: the matrix's, on the components the soak put behind proxies."""
    from tests.support.faultproxy import Mode

    def mode(proxy: Any, *modes: Mode, latency_ms: float = 0) -> Callable[[], None]:
        def switch() -> None:
            for each in modes:
                proxy.set(each, latency_ms=latency_ms)

        return switch

    def flag(name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        path = flags / name
        return path.touch, lambda: path.unlink(missing_ok=True)

    def smtp_down() -> None:
        server.answer("421 4.3.2 Service shutting down, closing channel")  # the next DATA
        mode(smtp, Mode.RESET, Mode.REFUSE)()

    aws_back, pg_back, pg_reset = (
        mode(aws, Mode.PASS),
        mode(pg, Mode.PASS),
        mode(pg, Mode.RESET, Mode.PASS),
    )
    return [
        Fault("sqs-refused", mode(aws, Mode.REFUSE), aws_back),
        Fault("pg-down", mode(pg, Mode.RESET, Mode.REFUSE), pg_back),
        Fault("sqs-blackhole", mode(aws, Mode.BLACKHOLE), aws_back),
        Fault("s3-slowdown", *flag("s3")),
        Fault("sqs-throttle-5xx-20%", *flag("sqs")),
        Fault("smtp-refused-then-421", smtp_down, mode(smtp, Mode.PASS)),
        Fault("sqs-reset", mode(aws, Mode.RESET), aws_back),
        Fault("sns-failing", *flag("sns")),
        Fault("pg-reset-x3", pg_reset, pg_back, pulse=pg_reset),
        Fault("sqs-latency-300ms", mode(aws, Mode.LATENCY, latency_ms=300), aws_back),
    ]


class Workers:
    """The worker subprocesses: liveness, RSS, pool children, and who resumed after a fault."""

    def __init__(self, procs: list[Any], logs: list[Path], concurrency: int) -> None:
        self.procs, self.logs, self.concurrency = procs, logs, concurrency
        self.children: set[int] = set()
        self.rss: list[list[float]] = [[] for _ in procs]

    def sample(self) -> None:
        from tests.integration.processes import descendants

        for i, proc in enumerate(self.procs):
            if proc.poll() is None:
                self.children.update(descendants(proc.pid))
                tree = Child("worker", [], {}, self.logs[i], process=proc)
                self.rss[i].append(tree.rss_mib())

    def exited(self) -> list[int]:
        return [proc.pid for proc in self.procs if proc.poll() is not None]

    def offsets(self) -> list[int]:
        return [log.stat().st_size for log in self.logs]

    def first_success_after(self, i: int, offset: int) -> float | None:
        """When (epoch seconds, from its log line) worker ``i`` first finished a task after
        byte ``offset`` of its log: log time, so a slow tick of the soak's loop costs nothing."""
        with self.logs[i].open("rb") as log:
            log.seek(offset)
            for line in log:
                if b" succeeded in " in line and line.startswith(b"["):
                    stamp = line[1:24].decode()  # [2026-12-03 17:11:29,120: INFO/...]
                    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        return None

    def replaced_children(self) -> int:
        """Pool children started beyond the first ones (a crash or a hard time limit)."""
        return max(0, len(self.children) - len(self.procs) * self.concurrency)

    def stop(self) -> list[int]:
        """Warm shutdown, so each worker deletes its ephemeral queues (atexit); the PIDs of
        those still running two minutes on (worker_process kills them)."""
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while self.exited() != [p.pid for p in self.procs] and time.monotonic() < deadline:
            time.sleep(0.5)
        return [proc.pid for proc in self.procs if proc.poll() is None]


def _environment(tmp: Path, moto_url: str) -> None:
    """The soak's own run: moto, a queue prefix, a bucket (set before taskapp is configured)."""
    from taskapp.local.aws import LOCAL_CREDENTIALS

    run = uuid.uuid4().hex[:8]
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": moto_url,
            "TASKAPP_QUEUE_PREFIX": f"s{run}-",
            "TASKAPP_BUCKET": f"s{run}-bucket",
            "TASKAPP_DATABASE_URL": f"sqlite:///{tmp}/producer.db",  # the workers' is PostgreSQL
            "TASKAPP_MAIL_DIR": str(tmp / "mail"),
        }
    )
    for var in ("TASKAPP_VISIBILITY_TIMEOUT", "TASKAPP_PREDEFINED_QUEUES", "TASKAPP_SIGNING_KEY"):
        os.environ.pop(var, None)


def _longest_silence(log: Path) -> list[Any]:
    """The longest time between two lines of a worker's log, and when it began: a worker whose
    event loop is blocked logs nothing (no receive, no heartbeat, no result)."""
    longest: list[Any] = [0.0, ""]
    previous = None
    with log.open("rb") as lines:
        for line in lines:
            if not line.startswith(b"[20"):
                continue
            stamp = line[1:24].decode(errors="replace")
            try:
                at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if previous is not None and at - previous[0] > longest[0]:
                longest = [round(at - previous[0], 1), previous[1]]
            previous = (at, stamp)
    return longest


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--every", type=float, default=120, help="seconds between faults")
    parser.add_argument("--hold", type=float, default=30, help="seconds each fault lasts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    parser.add_argument(
        "--only", action="append", help="only faults whose name starts with this (repeatable)"
    )
    parser.add_argument("--settle", type=float, default=900, help="most seconds to drain after")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="taskapp-soak-"))
    moto = Moto(dict(os.environ))
    _environment(tmp, moto.start())
    import logging

    for name in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return Soak(args, tmp, moto).run()
    finally:
        moto.child.stop()


class Soak:
    """One run: set-up, the load with its faults, the drain, the ledger, the figures."""

    def __init__(self, args: argparse.Namespace, tmp: Path, moto: Moto) -> None:
        self.args, self.tmp, self.moto = args, tmp, moto
        self.figures: dict[str, Any] = {"load_average_start": _loadavg()}
        self.missed: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.missed.append(what)

    def run(self) -> int:
        import tests.tasks  # noqa: F401  (registers tests.record, routes its queue)
        from config.settings import load_settings
        from taskapp.app import app
        from taskapp.aws import client
        from taskapp.aws.s3 import ensure_bucket
        from tests.faults.drain import open_drain
        from tests.faults.mixed import MixedLoad, postgres, queue_arg, sink, smtp_url, through
        from tests.integration.processes import worker_process
        from tests.support.faultproxy import FaultProxy

        settings = load_settings()
        sqs, s3 = client("sqs", settings), client("s3", settings)
        self.own_sqs_calls = Counter[str]()
        sqs.meta.events.register("before-send.sqs", lambda **_: self.own_sqs_calls.update(["n"]))
        ensure_bucket(s3, settings.bucket)
        flags = self.tmp / "flags"
        flags.mkdir()
        with ExitStack() as stack:
            db_url, pg = stack.enter_context(postgres())
            server = sink()
            stack.callback(server.stop)
            smtp = stack.enter_context(FaultProxy(("127.0.0.1", server.port)))
            drain = stack.enter_context(open_drain(app, sqs, settings))
            env = {
                **drain.env,
                "TASKAPP_DATABASE_URL": through(db_url, pg),
                "TASKAPP_EMAIL_BACKEND": "smtp",
                "TASKAPP_SMTP_URL": smtp_url(smtp.port),
                "TASKAPP_TEST_INJECT_SQS_ERRORS": "0.2",
                "TASKAPP_TEST_INJECT_SQS_ERRORS_FLAG": str(flags / "sqs"),
                "TASKAPP_TEST_INJECT_S3_SLOWDOWN": str(flags / "s3"),
                "TASKAPP_TEST_INJECT_SNS_FAILURE": str(flags / "sns"),
                "TASKAPP_TEST_INJECT_LOG": str(self.tmp / "injected.txt"),
            }
            self.load = MixedLoad(drain, s3, settings.bucket, server, db_url)
            self.faults = [
                fault
                for fault in rotation(drain.proxy, pg, smtp, server, flags)
                if not self.args.only or fault.name.startswith(tuple(self.args.only))
            ]
            logs = [self.tmp / f"worker{i}.log" for i in range(self.args.workers)]
            # -c after worker_process's own -c 1: the last one given wins (click)
            extra = ("-E", "-c", str(self.args.concurrency))
            procs = [
                stack.enter_context(worker_process(env, f"soak{i}", log, queue_arg(), extra=extra))
                for i, log in enumerate(logs)
            ]
            self.workers = Workers(procs, logs, self.args.concurrency)
            print(
                f"soak: {self.args.tasks} tasks over {self.args.minutes} min, workers ready; "
                f"logs {self.tmp}",
                flush=True,
            )
            self.moto.take_counts()
            self.drive()
            self.settle()
            self.ledger()
            self.figures["sqs"] = self.requests(drain.prefix)
            stuck = self.workers.stop()
            self.check(not stuck, f"workers did not stop on SIGTERM: {stuck}")
            self.figures["ephemeral_queues_left"] = self.ephemeral_left(sqs, drain.prefix)
        return self.report()

    # -- the load and its faults ---------------------------------------------------------------
    def drive(self) -> None:
        """Queue the load at an even rate for ``--minutes`` (as fast as moto takes it, if
        slower); the faults run on a thread of their own, so a slow send never stretches one."""
        args, load = self.args, self.load
        duration = args.minutes * 60
        rate = args.tasks / duration
        self.held: list[Held] = []
        started = self.started = time.monotonic()
        faults = threading.Thread(target=self._faults, args=(duration,), name="soak-faults")
        faults.start()
        next_sample = next_print = 0.0
        while (
            (now := time.monotonic() - started) < duration or faults.is_alive() or self._resuming()
        ):
            due = min(args.tasks, int(rate * now) + 1, load.sent + SEND_CHUNK)
            if due > load.sent and now < duration:
                kinds = Counter(CYCLE[j % len(CYCLE)] for j in range(load.sent, due))
                load.send(
                    kinds["noop"], kinds["email"], kinds["image"], kinds["report"], 0.02, True
                )
            self._watch_resumes(now)
            if now >= next_sample:
                self.workers.sample()
                next_sample = now + SAMPLE
            if now >= next_print:
                self._progress(now)
                next_print = now + 30
            time.sleep(TICK)
        self.figures["load_seconds"] = round(time.monotonic() - started, 1)
        self.figures["planned"] = args.tasks

    def _faults(self, duration: float) -> None:
        """Hold the rotation's next fault every ``--every`` seconds, for ``--hold`` seconds."""
        every, hold = self.args.every, self.args.hold
        starts = [every / 2 + k * every for k in range(int(duration // every) + 1)]
        for start in [s for s in starts if s + hold <= duration]:
            fault = self.faults[len(self.held) % len(self.faults)]
            self._sleep_until(start)
            held = Held(fault.name, time.monotonic() - self.started)
            fault.begin()
            print(f"[{held.began:7.1f}s] fault {fault.name} on", flush=True)
            for third in (1, 2) if fault.pulse else ():
                self._sleep_until(start + hold * third / 3)
                fault.pulse()  # type: ignore[misc]
            self._sleep_until(start + hold)
            fault.end()
            held.offsets, held.lifted_at = self.workers.offsets(), time.time()
            held.resumed = [None] * len(self.workers.procs)
            held.lifted = time.monotonic() - self.started
            self.held.append(held)
            print(f"[{held.lifted:7.1f}s] fault {fault.name} off", flush=True)

    def _sleep_until(self, at: float) -> None:
        time.sleep(max(0.0, at - (time.monotonic() - self.started)))

    def _resuming(self) -> bool:
        """Whether the last fault was lifted and a worker has yet to resume (for up to
        ``RESUME_CAP`` seconds)."""
        last = self.held[-1:]
        now = time.monotonic() - self.started
        return any(h.lifted and None in h.resumed and now - h.lifted < RESUME_CAP for h in last)

    def _watch_resumes(self, now: float) -> None:
        for held in self.held:
            if not held.lifted:
                continue
            for i, resumed in enumerate(held.resumed):
                if resumed is not None or now - held.lifted >= RESUME_CAP:
                    continue
                if (at := self.workers.first_success_after(i, held.offsets[i])) is not None:
                    held.resumed[i] = round(max(0.0, at - held.lifted_at), 1)

    def _progress(self, now: float) -> None:
        exited = self.workers.exited()
        print(
            f"[{now:7.1f}s] sent {self.load.sent}, queued {self.load.queued()}, "
            f"load {_loadavg()}" + (f", EXITED {exited}" if exited else ""),
            flush=True,
        )

    # -- after the load ------------------------------------------------------------------------
    def settle(self) -> None:
        """Wait until every queue is empty (retries and delayed copies included), or --settle."""
        deadline = time.monotonic() + self.args.settle
        while (queued := self.load.queued()) and time.monotonic() < deadline:
            if not self.workers.exited():
                self.workers.sample()
            time.sleep(5)
        self.figures["queued_at_end"] = queued
        self.figures["drained_seconds"] = round(time.monotonic() - self.started, 1)

    def ledger(self) -> None:
        """Each task: done once, or a dead letter with a reason, or still queued; counts add up."""
        from tests.faults.mixed import GAVE_UP, QUEUES

        load = self.load
        ran = load.effects()
        reports = set(load.reports)
        dead: dict[str, str] = {}
        for queue in QUEUES:
            for letter in load.drain.read_dead_letters(queue):
                name = letter.task_id if letter.task_id in reports else letter.first_arg
                dead[name] = letter.reason
        twice = {name: n for name, n in ran.items() if n > 1}
        done = {name for name, n in ran.items() if n == 1}
        only_dead = {name for name in dead if not ran.get(name)}
        ours = {n: r for n, r in dead.items() if ran.get(n) and r != "max-receives"}
        queued = self.figures["queued_at_end"]
        missing = [n for n in load.names() if not ran.get(n) and n not in dead]
        lost = missing if queued == 0 else []
        ids = load.task_ids  # to find them in the workers' logs
        twice_ids = {name: (n, ids.get(name)) for name, n in list(twice.items())[:20]}
        self.check(not twice, f"effects more than once (count, task id): {twice_ids}")
        lost_ids = {name: ids.get(name) for name in lost[:20]}
        self.check(not lost, f"lost (neither ran, nor dead, nor queued; task id): {lost_ids}")
        self.check(not ours, f"ran and dead-lettered by the worker: {ours}")
        adds_up = len(done) + len(twice) + len(only_dead) + len(missing) == load.sent
        self.check(adds_up and len(missing) <= queued, "the counts do not add up")
        exited = self.workers.exited()
        self.check(not exited, f"worker(s) exited: {exited}")
        self.figures["worker_exits"] = len(exited)
        gave_up = [
            line
            for log in self.workers.logs
            for line in log.read_text(errors="replace").splitlines()
            if any(marker in line for marker in GAVE_UP)
        ]
        self.check(not gave_up, f"a worker gave up: {gave_up[:5]}")
        self.figures.update(
            sent=load.sent,
            sent_by_kind=dict(
                noop=len(load.noops),
                email=len(load.emails),
                image=len(load.images),
                report=len(load.reports),
            ),
            done=len(done) + len(twice),
            duplicated=len(twice),
            dead_letters=dict(Counter(dead.values())),
            ran_and_max_receives=sum(
                1 for n, r in dead.items() if ran.get(n) and r == "max-receives"
            ),
            lost=len(lost),
            still_queued=len(missing) if queued else 0,
        )

    def requests(self, prefix: str) -> dict[str, float]:
        """SQS and SNS requests on the run's prefix per task sent; ``worker_per_task`` leaves out
        the producer's one SendMessage per task and the soak's own depth and DLQ reads."""
        counts = self.moto.take_counts()
        sqs_total = sum(prefix_requests(counts, prefix).values())
        sent = self.load.sent
        worker = sqs_total - self.own_sqs_calls["n"] - sent
        return {
            "sqs_per_task": round(sqs_total / sent, 2),
            "worker_sqs_per_task": round(worker / sent, 2),
            "sns_per_task": round(sns_requests(counts, prefix) / sent, 2),
        }

    def ephemeral_left(self, sqs: Any, prefix: str) -> int:
        from taskapp.sqs.ephemeral import EPHEMERAL_INFIX

        listed = sqs.list_queues(QueueNamePrefix=prefix + EPHEMERAL_INFIX)
        return len(listed.get("QueueUrls", []))

    # -- figures ---------------------------------------------------------------------------------
    def report(self) -> int:
        from tests.faults.drain import WAIT_TIME_SECONDS

        figures, workers = self.figures, self.workers
        bound = 2 * WAIT_TIME_SECONDS
        figures["faults"] = [
            {
                "fault": h.name,
                "at_s": round(h.began),
                "held_s": round(h.lifted - h.began, 1),
                "resumed_s": h.resumed,
            }
            for h in self.held
        ]
        for held in self.held:
            slow = [r for r in held.resumed if r is None or r > bound]
            self.check(not slow, f"{held.name}: resumed after {held.resumed} s (bound {bound} s)")
        figures["tasks_per_s"] = round(figures["done"] / figures["drained_seconds"], 1)
        # Warm: every kind of task has run and imported what it needs (a tenth of the load in,
        # at least a minute), sampled every 5 s.
        warm = int(max(60, self.args.minutes * 6) // SAMPLE)
        figures["rss_mib"] = [
            {"warm": round(r[min(warm, len(r) - 1)]), "end": round(r[-1]), "max": round(max(r))}
            for r in workers.rss
            if r
        ]
        for rss in figures["rss_mib"]:
            self.check(rss["end"] <= rss["warm"] * (1 + RSS_GROWTH), f"RSS grew: {rss}")
        figures["pool_children_replaced"] = workers.replaced_children()
        # Renewals SQS refused (a handle no longer valid): each tick renews every request the
        # worker still lists as reserved, so a request never marked ready is refused for good.
        figures["longest_log_silence_s"] = [_longest_silence(log) for log in workers.logs]
        figures["heartbeat_refusals"] = [
            log.read_text(errors="replace").count("visibility heartbeat refused")
            for log in workers.logs
        ]
        injected = self.tmp / "injected.txt"
        codes = injected.read_text().split()[1::2] if injected.exists() else []
        figures["injected_errors"] = dict(Counter(codes))
        figures["load_average_end"] = _loadavg()
        figures["missed"] = self.missed
        self.check(figures["ephemeral_queues_left"] == 0, "ephemeral monitoring queues left")
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "soak.json").write_text(json.dumps(figures, indent=2))
        print(json.dumps(figures, indent=2))
        print("soak: " + ("PASS" if not self.missed else "MISSED: " + "; ".join(self.missed)))
        return 1 if self.missed else 0


if __name__ == "__main__":
    sys.exit(main())
