"""Tasks the fuzzer's worker runs (loaded with ``--include=tests.fuzz.tasks``, never in pytest).

Each execution writes one row naming the tokens it carried, so the harness counts runs per
generated message in the database, and sees a run it cannot attribute.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from taskapp.app import app
from tests.fuzz.ledger import record_run, tokens_in


def _record(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    pause = kwargs.get("fuzz_sleep")
    if isinstance(pause, float) and 0 < pause < 3:
        # Keeps the pool busy, so the requests behind it wait for a slot (a path of its own).
        time.sleep(pause)
    text = json.dumps([repr(task.request.id), args, kwargs], default=repr)
    record_run(tokens_in(text), task.name, repr(task.request.id), os.getpid())
    return len(text)


@app.task(name="fuzz.record", bind=True, soft_time_limit=5, time_limit=10)
def record(self: Any, *args: Any, **kwargs: Any) -> int:
    """Record one execution of whatever it was called with."""
    return _record(self, args, kwargs)


@app.task(name="fuzz.record_other", bind=True, soft_time_limit=5, time_limit=10)
def record_other(self: Any, *args: Any, **kwargs: Any) -> int:
    """The same, under another name: a signed message re-addressed to it must never run."""
    return _record(self, args, kwargs)
