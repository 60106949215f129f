"""The bench's no-op task, the same for every Celery contender.

At its start the task sends one UDP datagram to the bench (``run index sent_at started_at``),
which is how the bench counts finished work and measures send->start latency without touching
any broker or result store. ``celery -A taskapp worker --include throughput_tasks`` registers it
on taskapp's app (imported as a module, it registers on ``taskapp.app``); the stock apps call
:func:`register` themselves.
"""

from __future__ import annotations

import socket
import time
from typing import Any

NAME = "bench.noop"
_sock: socket.socket | None = None


def report_start(port: int, run: str, index: int, sent_at: float) -> None:
    """Tell the bench, over UDP on loopback, that task ``index`` of ``run`` started now."""
    global _sock
    started = time.time()
    if _sock is None:
        _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _sock.sendto(f"{run} {index} {sent_at!r} {started!r}".encode(), ("127.0.0.1", port))


def register(app: Any, **options: Any) -> Any:
    """Register ``bench.noop`` on ``app`` (``options``: more task attributes)."""

    @app.task(name=NAME, soft_time_limit=5, time_limit=10, **options)
    def noop(port: int, run: str, index: int, sent_at: float) -> None:
        """Do nothing but report the start."""
        report_start(port, run, index, sent_at)

    return noop


if __name__ != "__main__":
    import os

    if os.environ.get("BENCH_REGISTER_ON_TASKAPP") == "1":
        from taskapp.app import app as _taskapp

        lean = os.environ.get("BENCH_TASKAPP_LEAN") == "1"
        noop = register(_taskapp, **({"ignore_result": True, "idempotent": False} if lean else {}))
