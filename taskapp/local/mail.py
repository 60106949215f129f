"""A local SMTP sink (aiosmtpd) that stores every message it receives as an ``.eml`` file."""

from __future__ import annotations

import threading
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from taskapp.local import LocalGroupMissing
from taskapp.local.net import LOOPBACK, free_port

try:
    from aiosmtpd.controller import Controller
except ModuleNotFoundError as missing:  # the 'local' dependency group
    raise LocalGroupMissing(missing.name) from missing

__all__ = ["MailSink"]


class _StoreHandler:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.lock = threading.Lock()
        self.paths: list[Path] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        path = self.directory / f"{uuid.uuid4().hex}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        with self.lock:
            self.paths.append(path)
        return "250 Message accepted for delivery"


class MailSink:
    """SMTP server on 127.0.0.1 writing each received message to ``directory/<uuid>.eml``."""

    def __init__(self, directory: Path | str, port: int | None = None) -> None:
        self.directory = Path(directory)
        self.port = port or free_port()
        self._handler = _StoreHandler(self.directory)
        self._controller = Controller(self._handler, hostname=LOOPBACK, port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://{LOOPBACK}:{self.port}"

    def start(self) -> MailSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def paths(self) -> list[Path]:
        """Files written by this sink, oldest first."""
        with self._handler.lock:
            return list(self._handler.paths)

    def messages(self) -> list[EmailMessage]:
        """Every received message, parsed."""
        return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in self.paths]
