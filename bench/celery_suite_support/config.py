"""Celery configuration that puts Celery's integration suite on taskapp's SQS layer.

``bench/celery_suite.py`` sets ``CELERY_LOADER=default`` and ``CELERY_CONFIG_MODULE`` to this
module for the SQS run only. Celery's default loader reads it into *every* app the suite makes:
its session and per-test apps, and also ``Celery(broker=TEST_BROKER)`` and the ``celery worker``
subprocess of ``test_worker.py``, which no fixture (so no ``install``) reaches; so nothing in the
suite is edited. ``broker_url`` and ``result_backend`` come from ``TEST_BROKER``/``TEST_BACKEND``.

With ``CELERY_SUITE_INSTALL=1`` (the default run) the plugin also calls
``taskapp.sqs.install(app)`` on the suite's fixture apps; this module then sets only what any
SQS app sets (region, queue prefix, polling), plus the transport for the two apps install never
sees. Without it (``--transport-only``), this is all there is: the transport and the options
``config/celery.py`` gave it before the extension existed.
"""

from __future__ import annotations

import os
import sys
import weakref

from celery import signals
from celery.utils.dispatch.signal import Signal


def _detach_taskapp_app() -> list[str]:
    """Disconnect the process-wide receivers that importing the extension connected for taskapp's
    own app (today ``import taskapp.sqs`` runs ``taskapp/__init__.py``, which imports the whole
    app: its worker preflight would stop the suite's worker, which has no taskapp queues)."""
    import taskapp.sqs  # noqa: F401

    detached = []
    for name in dir(signals):
        signal = getattr(signals, name)
        if not isinstance(signal, Signal):
            continue
        with signal.lock:
            kept = []
            for key, receiver in signal.receivers:
                fn = receiver() if isinstance(receiver, weakref.ReferenceType) else receiver
                module = getattr(fn, "__module__", "") or ""
                if module.startswith("taskapp.") and not module.startswith("taskapp.sqs."):
                    detached.append(f"{name}:{module}.{getattr(fn, '__qualname__', fn)}")
                else:
                    kept.append((key, receiver))
            signal.receivers = kept
            signal.sender_receivers_cache.clear()
    return detached


DETACHED = _detach_taskapp_app()
if DETACHED and os.environ.get("CELERY_SUITE_QUIET") != "1":
    print(f"celery_suite: detached taskapp's own receivers: {', '.join(DETACHED)}", file=sys.stderr)
    os.environ["CELERY_SUITE_QUIET"] = "1"

# The transport install() selects; named here for the apps install never sees.
broker_transport = "taskapp.sqs.transport:Transport"
# https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.SQS.html
broker_transport_options: dict[str, object] = {
    "region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    "queue_name_prefix": os.environ.get("CELERY_SUITE_QUEUE_PREFIX", "suite-"),
    # As config/celery.py: long polls, a short sleep when prefetch slots are full.
    "wait_time_seconds": 20,
    "polling_interval": 0.1,
}
if os.environ.get("CELERY_SUITE_INSTALL") != "1":
    # install() sets this default itself: receive counts and our message attributes.
    broker_transport_options["fetch_message_attributes"] = {
        "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
        "MessageAttributeNames": [".*"],
    }
