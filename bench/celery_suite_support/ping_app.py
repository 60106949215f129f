"""The app of the remote-control round trip in ``bench/celery_suite.py``: nothing but Celery,
configured by ``celery_suite_support.config`` (through ``CELERY_CONFIG_MODULE``) as the suite's
apps are, and ``taskapp.sqs.install`` when ``CELERY_SUITE_INSTALL=1``."""

from __future__ import annotations

import os

from celery import Celery


def make_app() -> Celery:
    """A new app on ``sqs://``: a new mailbox, so a new reply queue, as each CLI call has."""
    app = Celery("celery-suite-ping", broker="sqs://", loader="default")
    if os.environ.get("CELERY_SUITE_INSTALL") == "1":
        from taskapp.sqs import install  # type: ignore[attr-defined]

        install(app)
    return app


app = make_app()
