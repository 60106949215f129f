"""Run Celery's inspect and control calls against one node; print the replies as JSON.

Run as a subprocess (``python -m tests.monitoring.remote_control NODE``): the calls are the
ones behind ``celery -A taskapp inspect ...`` and ``control ...``, made in one process so the
app is imported once instead of once per command.
"""

from __future__ import annotations

import json
import sys

from taskapp.app import app

INSPECT = ("ping", "active", "reserved", "stats", "registered")


def main(node: str, timeout: float = 5.0) -> None:
    inspect = app.control.inspect(destination=[node], timeout=timeout)
    replies: dict[str, object] = {name: getattr(inspect, name)() for name in INSPECT}
    control = {"destination": [node], "reply": True, "timeout": timeout}
    replies["rate_limit"] = app.control.rate_limit("tests.add", "10/m", **control)
    replies["pool_grow"] = app.control.pool_grow(1, **control)
    replies["pool_shrink"] = app.control.pool_shrink(1, **control)
    print(json.dumps(replies))  # noqa: T201 - the replies are this script's output


if __name__ == "__main__":
    main(sys.argv[1])
