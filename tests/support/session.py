"""The test session's isolated world: one moto server, a queue prefix, a bucket, a SQLite file.

:func:`start` must run before anything configures ``taskapp`` (``tests/conftest.py`` calls it at
import, i.e. at collection), so the app, the worker and every client built from settings talk to
this session's moto server and queues.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from pathlib import Path

from taskapp.local.aws import LocalAWS

__all__ = ["start"]

#: ``taskapp.sample.RETENTION_RULES``, by path: importing taskapp.sample would configure taskapp.
SAMPLE_RULES = Path(__file__).resolve().parents[2] / "taskapp" / "sample" / "retention.toml"


def start() -> LocalAWS:
    """Start the session's moto server and point the environment at it; return the server."""
    session_id = uuid.uuid4().hex[:8]
    tmp = Path(tempfile.mkdtemp(prefix=f"taskapp-{session_id}-"))
    local_aws = LocalAWS().start()
    local_aws.export()
    os.environ.update(
        {
            "TASKAPP_QUEUE_PREFIX": f"t{session_id}-",
            "TASKAPP_BUCKET": f"t{session_id}-bucket",
            "TASKAPP_DATABASE_URL": f"sqlite:///{tmp}/taskapp.db",
            "TASKAPP_MAIL_DIR": str(tmp / "mail"),
            "TASKAPP_MAX_RECEIVES": "3",
            # Short polls keep the in-process worker responsive to shutdown at session end.
            "TASKAPP_WAIT_TIME_SECONDS": "1",
            "TASKAPP_FETCH_ALLOWLIST": "127.0.0.1",
            # Held messages are renewed every second, so tests can use 3 s visibility timeouts.
            "TASKAPP_HEARTBEAT_INTERVAL": "1",
            # The cleanup tests work on the demo business, under the demo's own rules.
            "TASKAPP_RETENTION_RULES": str(SAMPLE_RULES),
        }
    )
    for var in ("TASKAPP_VISIBILITY_TIMEOUT", "TASKAPP_PREDEFINED_QUEUES", "AWS_REGION"):
        os.environ.pop(var, None)
    # moto's request log and botocore's retries are noise in test output.
    for name in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return local_aws
