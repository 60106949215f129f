"""Flower configuration (``celery -A taskapp flower --conf=config/flowerconfig.py``).

Flower runs this file in its own process before it builds its web app, so besides options it
hooks in what Flower lacks for SQS (``taskapp/sqs/flower_broker.py``): the Broker page and
``/api/queues/length`` with visible, in-flight and delayed counts of every queue and its DLQ.
Workers and tasks reach Flower as events over SNS fan-out (``taskapp/sqs/monitoring.py``).

Flower is never open without authentication outside loopback: binding any other address
requires ``TASKAPP_FLOWER_BASIC_AUTH`` (``user:password``). OAuth (Google, GitHub, GitLab, Okta)
is configured with Flower's own ``FLOWER_AUTH``, ``FLOWER_AUTH_PROVIDER``,
``FLOWER_OAUTH2_KEY``, ``FLOWER_OAUTH2_SECRET`` and ``FLOWER_OAUTH2_REDIRECT_URI``, on top of
basic auth (Flower checks both) or behind a loopback-bound reverse proxy.
Prometheus scrapes ``/metrics`` (Flower serves it without authentication).
Reference: https://flower.readthedocs.io/en/latest/config.html
"""

from __future__ import annotations

import ipaddress
import os
import sys

from config.settings import SettingError, load_settings
from taskapp.sqs.flower_broker import install

_settings = load_settings()
install()


def _cli_option(argv: list[str], name: str) -> str | None:
    # Flower applies command-line options after this file, so look at them here too.
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
        if arg == f"--{name}" and i + 1 < len(argv):
            return argv[i + 1]
    return None


address = _cli_option(sys.argv, "address") or os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("FLOWER_PORT", "5555"))
purge_offline_workers = 300
# Our workers always send events (-E). Flower would otherwise broadcast enable_events every 5 s:
# one SNS publish and one SQS delivery per worker, forever.
enable_events = False
# A remote-control reply crosses SNS and two SQS queues; Flower's default of 1 s is tight.
inspect_timeout = 3000.0

if _settings.flower_basic_auth:
    basic_auth = [_settings.flower_basic_auth.get_secret_value()]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if not _settings.flower_basic_auth and not _is_loopback(address):
    raise SettingError(
        "TASKAPP_FLOWER_BASIC_AUTH", "", f"user:password (required because Flower binds {address})"
    )
