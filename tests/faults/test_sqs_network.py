"""SQS network faults under a draining worker subprocess: it survives, resumes, runs each task once.

Each cell queues ``tests.record`` tasks, starts one worker whose AWS endpoint is the fault
proxy, switches a fault on once some tasks are done, lifts it, and then checks: the same
worker process drained everything, every task ran exactly once (or is a dead letter, or still
queued: the counts add up), and nothing in its log says it gave up.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.drain import Drain
from tests.integration.processes import worker_process
from tests.support.faultproxy import Mode
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: What a worker that gave up on a fault writes, and must never write here.
GAVE_UP = ("Unrecoverable error", "UNABLE TO RESTORE", "Traceback")
OUTAGE = 30  # the matrix: 30 s


def _fault(drain: Drain, mode: Mode, seconds: float) -> None:
    """Hold ``mode`` for at least ``seconds`` (the fault's length, not a wait for a result)."""
    drain.proxy.set(mode)
    time.sleep(seconds)
    drain.proxy.set(Mode.PASS)


def _check(drain: Drain, log: Path, pid: int, alive: bool) -> None:
    runs = drain.runs()
    twice = {tag: n for tag, n in runs.items() if n != 1}
    text = log.read_text()
    assert alive, f"worker {pid} exited:\n{text[-3000:]}"
    assert not twice, f"ran more than once: {twice}"
    queued, dead = drain.depth(), drain.dead_tags()
    # every task ran, or is queued, or is a dead letter: none is lost
    assert queued == 0
    lost = {f"{drain.run}-{i}" for i in range(drain.sent)} - runs.keys() - dead.keys()
    assert not lost, f"neither ran nor dead-lettered: {sorted(lost)}"
    # a dead letter of a task that ran is only SQS's copy after lost receives, never ours
    ours = {tag: reason for tag, reason in dead.items() if tag in runs and reason != "max-receives"}
    assert not ours, f"ran and dead-lettered by the worker: {ours}"
    if dead:
        print(f"{len(dead)} letter(s) moved by SQS after lost receives: {dead}")  # noqa: T201
    assert not [line for line in text.splitlines() if any(m in line for m in GAVE_UP)], text[-3000:]


def _resumed_after(drain: Drain, lifted_at: float, done_before: int, pid: int, log: Path) -> float:
    try:
        wait_for(
            lambda: drain.done() > done_before, "the worker to resume after the fault", 60, 0.1
        )
    except AssertionError:
        os.kill(pid, signal.SIGUSR1)  # celery logs every thread's stack: where it is stuck
        wait_for(lambda: "Thread" in log.read_text()[-20000:], "the stack dump", 10)
        raise AssertionError(log.read_text()[-15000:]) from None
    return time.monotonic() - lifted_at


def _cell(drain: Drain, tmp_path: Path, faults: list[tuple[Mode, float]]) -> None:
    """Drain 100 tasks; once 10 are done, hold each (mode, seconds) of ``faults`` in turn."""
    # given a worker draining 100 tasks through the proxy
    drain.send(100, sleep=0.02)
    log = tmp_path / "worker.log"
    with worker_process(drain.env, "faults", log) as worker:
        wait_for(lambda: drain.done() >= 10, "10 tasks done", timeout=60, interval=0.1)
        # when the faults hit mid-drain
        for mode, seconds in faults:
            _fault(drain, mode, seconds)
        lifted, before = time.monotonic(), drain.done()
        # then the same worker resumes and drains everything, each task once
        if before < drain.sent:
            resumed = _resumed_after(drain, lifted, before, worker.pid, log)
            print(f"resumed {resumed:.1f}s after the fault")  # noqa: T201 - the cell's figure
        wait_for(lambda: drain.done() == drain.sent, "every task done", timeout=120, interval=0.2)
        # acks given up during the fault come back and are absorbed by their claims
        wait_for(lambda: drain.depth() == 0, "the queue to empty", timeout=60, interval=0.2)
        alive = worker.poll() is None
        _check(drain, log, worker.pid, alive)


def test_reset_then_blackhole_mid_drain(drain: Drain, tmp_path: Path) -> None:
    _cell(drain, tmp_path, [(Mode.RESET, 10), (Mode.BLACKHOLE, 10)])


@pytest.mark.faults  # over a minute with the 30 s fault (72 s here beside other load)
def test_connections_refused_mid_drain(drain: Drain, tmp_path: Path) -> None:
    _cell(drain, tmp_path, [(Mode.REFUSE, OUTAGE)])


@pytest.mark.faults  # over a minute with the 30 s fault (74 s here beside other load)
def test_blackholed_mid_drain(drain: Drain, tmp_path: Path) -> None:
    _cell(drain, tmp_path, [(Mode.BLACKHOLE, OUTAGE)])
