"""A stand-in for a child of the local stack: ``python -m tests.support.program MARKER [OPTIONS]``.

It appends what happens to it to the file MARKER, one word a line: ``started``, then ``term``
when SIGTERM arrives, then ``atexit`` when Python runs its exit handlers. It runs until SIGTERM,
which ends it like Celery's processes end (``SystemExit``), unless:

* ``--ignore-term``: it notes SIGTERM and carries on (only SIGKILL ends it);
* ``--linger``: a non-daemon thread sleeps for an hour, as Flower's inspector threads wait on
  remote-control replies, so a plain ``python`` would not exit before it ends.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType


def main(argv: list[str]) -> None:
    marker = Path(argv[0])

    def note(word: str) -> None:
        with marker.open("a") as out:
            out.write(word + "\n")

    def on_term(signum: int, frame: FrameType | None) -> None:
        note("term")
        if "--ignore-term" not in argv:
            sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    atexit.register(note, "atexit")
    if "--linger" in argv:
        threading.Thread(target=time.sleep, args=(3600,), name="linger").start()
    note("started")
    while True:
        time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1:])
