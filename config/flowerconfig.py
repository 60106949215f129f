"""Our Flower defaults; ``celery -A taskapp flower`` applies them with or without ``--conf``.

Flower is started the way Celery users start it, ``celery -A taskapp flower [options]``;
importing ``taskapp`` hooks Flower (``taskapp/flower_setup.py``) so that, once Flower has parsed
its command line, environment (``FLOWER_*``) and any ``--conf`` file, each option below that none
of them set takes the value here. The hook also adds what Flower lacks for SQS
(``taskapp/sqs/admin/flower_broker.py``: the Broker page and ``/api/queues/length`` with visible,
in-flight and delayed counts of every queue and its DLQ) and the authentication guard.

Why a dict and not Flower's usual module-level option names: Flower applies a ``--conf`` file
*after* the ``FLOWER_*`` environment, so ``address = ...`` here would silently override
``FLOWER_ADDRESS``. Passing ``--conf=config/flowerconfig.py`` (Procfile, compose) still works and
changes nothing.

Flower is never open without authentication outside loopback: when what Flower *binds* (its
sockets, after all option parsing; an empty ``--address=`` is every interface) is not loopback,
Flower refuses to start unless ``TASKAPP_FLOWER_BASIC_AUTH`` (``user:password``) or Flower's own
``--basic-auth``/``--auth`` is set. OAuth (Google, GitHub, GitLab, Okta) is configured with
Flower's ``FLOWER_AUTH``, ``FLOWER_AUTH_PROVIDER``, ``FLOWER_OAUTH2_KEY``, ``FLOWER_OAUTH2_SECRET``
and ``FLOWER_OAUTH2_REDIRECT_URI``. Prometheus scrapes ``/metrics``, which Flower serves without
authentication even when auth is on.
Reference: https://flower.readthedocs.io/en/latest/config.html
"""

from __future__ import annotations

from typing import Any

DEFAULTS: dict[str, Any] = {
    # Flower's own default is "" (every interface); ours is loopback, so a plain
    # `celery -A taskapp flower` needs no auth. An explicit `--address=` is every interface.
    "address": "127.0.0.1",
    "purge_offline_workers": 300,
    # Our workers always send events (-E). Flower would otherwise broadcast enable_events every
    # 5 s: one SNS publish and one SQS delivery per worker, forever.
    "enable_events": False,
    # A remote-control reply crosses SNS and two SQS queues; Flower's default of 1 s is tight.
    "inspect_timeout": 3000.0,
}
