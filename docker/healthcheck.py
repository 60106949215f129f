"""Container healthchecks that need no curl or procps in the slim image.

python docker/healthcheck.py http URL      answers 2xx within 5 s (Flower's /healthcheck)
python docker/healthcheck.py beat          beat rewrote its schedule file (var/) recently
"""

from __future__ import annotations

import glob
import os
import sys
import time
import urllib.request

#: What ``celery beat --schedule=var/celerybeat-schedule`` writes: one file (gdbm) or several
#: (``.dat``/``.dir``/``.bak``, the stdlib's dumb dbm).
SCHEDULE_FILES = "var/celerybeat-schedule*"
#: A running beat sleeps at most ``max_interval`` (``celery.beat.DEFAULT_MAX_INTERVAL``, 300 s)
#: between ticks and, after a sleep, rewrites its schedule file once ``sync_every``
#: (``celery.beat.Scheduler.sync_every``, 180 s) has passed since the last write. So the file is
#: never older than 480 s while beat works; a hung or stopped beat lets it age past this bound.
BEAT_MAX_AGE = 180 + 300 + 120  # seconds, with two minutes of slack for a loaded host


def beat_is_alive(now: float | None = None) -> bool:
    """Whether beat's schedule file exists and was rewritten within ``BEAT_MAX_AGE`` seconds.

    Any file at all was not enough: a schedule file survives a hung beat, and the volume keeps it
    across restarts, so a beat that never got past start-up looked healthy.
    """
    mtimes = [os.stat(path).st_mtime for path in glob.glob(SCHEDULE_FILES)]
    now = time.time() if now is None else now
    return bool(mtimes) and now - max(mtimes) <= BEAT_MAX_AGE


def main(argv: list[str]) -> int:
    """Run the healthcheck named by ``argv``; 0 healthy, 1 not, 2 on a usage error."""
    if argv[:1] == ["http"] and len(argv) == 2:
        with urllib.request.urlopen(argv[1], timeout=5) as response:  # noqa: S310 - our URL
            return 0 if 200 <= response.status < 300 else 1
    if argv == ["beat"]:
        if beat_is_alive():
            return 0
        print(f"beat: no {SCHEDULE_FILES} written in the last {BEAT_MAX_AGE}s", file=sys.stderr)  # noqa: T201 - the healthcheck speaks on stderr
        return 1
    print(__doc__, file=sys.stderr)  # noqa: T201 - usage, on stderr
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
