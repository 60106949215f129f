"""Worker subprocesses for fault tests: `celery -A taskapp worker`, ended by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(
    env: dict[str, str],
    name: str,
    log: Path,
    queue: str = "default",
    pool: str = "prefork",
    extra: tuple[str, ...] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker running one task at a time, consuming ``queue``; stopped by PID at exit.
    ``extra``: more ``celery worker`` options (``-E``)."""
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "taskapp",
        "worker",
        "--include=tests.tasks",
        "-P",
        pool,
        "-c",
        "1",
        "-Q",
        queue,
        "-n",
        f"{name}@%h",
        "--loglevel=INFO",
        *extra,
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        # A cap, not a wait: the loop ends as soon as the worker answers; at load 15 on 2 cores,
        # importing taskapp alone took 24 s.
        deadline = time.monotonic() + 120
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "worker did not become ready"
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, their children, ...), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (dead, waiting for whoever inherited it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def still_running(pids: list[int], timeout: float) -> list[int]:
    """The processes of ``pids`` still running once all have ended, or ``timeout`` seconds on."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def kill_all(pids: list[int]) -> None:
    """SIGKILL each of ``pids`` still running (clean-up after a failed test)."""
    for pid in pids:
        if running(pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
