"""Flower configuration (``celery -A taskapp flower --conf=config/flowerconfig.py``).

Flower is never open without authentication outside loopback: binding any other address
requires ``TASKAPP_FLOWER_BASIC_AUTH`` (``user:password``).
Reference: https://flower.readthedocs.io/en/latest/config.html
"""

from __future__ import annotations

import ipaddress
import os
import sys

from config.settings import SettingError, load_settings

_settings = load_settings()



def _cli_address(argv: list[str]) -> str | None:
    # Flower applies command-line options after this file, so look at them here too.
    for i, arg in enumerate(argv):
        if arg.startswith("--address="):
            return arg.split("=", 1)[1]
        if arg == "--address" and i + 1 < len(argv):
            return argv[i + 1]
    return None


address = _cli_address(sys.argv) or os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("FLOWER_PORT", "5555"))
# Prometheus scrapes /metrics; Flower serves it by default.
purge_offline_workers = 300

if _settings.flower_basic_auth:
    basic_auth = [_settings.flower_basic_auth.reveal()]


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
