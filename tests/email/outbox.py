"""Where sent email can be seen: an SMTP test server, moto's SES, the file backend's directory."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.email.smtp_server import TestSMTPServer

__all__ = ["eml_files", "ses_sent", "use_smtp"]


def use_smtp(monkeypatch: pytest.MonkeyPatch, server: TestSMTPServer, **options: str) -> None:
    """Point the smtp backend (here and in the worker) at ``server``."""
    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "smtp")
    monkeypatch.setenv("TASKAPP_SMTP_URL", server.url(**options))


def ses_sent(settings: Any, message_id: str) -> list[dict[str, Any]]:
    """Raw messages moto's SES holds with ``message_id``, read through moto's own API."""
    with urllib.request.urlopen(f"{settings.aws_endpoint_url}/moto-api/data.json") as resp:
        data = json.load(resp)
    raw = data.get("ses", {}).get("RawMessage", [])
    return [m for m in raw if m.get("id") == message_id]


def eml_files(directory: Path) -> list[Path]:
    """The .eml files the file backend wrote to ``directory``, by name."""
    return sorted(directory.glob("*.eml"))
