"""Worker subprocesses for fault tests: `celery -A taskapp worker`, ended by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(
    env: dict[str, str], name: str, log: Path, queue: str = "default", pool: str = "prefork"
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker running one task at a time, consuming ``queue``; stopped by PID at exit."""
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
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120  # a cap, not a wait: the loop ends as soon as the worker answers; at load 15 on 2 cores, importing taskapp alone took 24 s
        while b" ready." not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "worker did not become ready"
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
