"""The delivery backends, chosen by ``TASKAPP_EMAIL_BACKEND``: ``smtp``, ``ses`` or ``file``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Protocol

from config.settings import Settings
from taskapp.email.compose import Composed
from taskapp.email.errors import DeliveryDeferred
from taskapp.email.smtp import Delivery, SmtpBackend, SmtpConfig

__all__ = ["Backend", "FileBackend", "backend_for"]


class Backend(Protocol):
    """Something that delivers a composed message or raises one of our two error kinds."""

    name: str
    max_recipients: int | None

    def send(self, composed: Composed) -> Delivery: ...


class FileBackend:
    """Development backend: write each message to ``TASKAPP_MAIL_DIR/<uuid>.eml``."""

    name = "file"
    max_recipients: int | None = None

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, composed: Composed) -> Delivery:
        name = uuid.uuid4().hex
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            partial = self.directory / f".{name}.tmp"
            partial.write_bytes(composed.data)
            partial.rename(self.directory / f"{name}.eml")  # readers never see half a file
        except OSError as exc:
            raise DeliveryDeferred(f"file: cannot write to {self.directory}: {exc}") from None
        return Delivery(name)


def backend_for(settings: Settings) -> Backend:
    """The backend ``settings`` select."""
    if settings.email_backend == "ses":
        from taskapp.aws import client
        from taskapp.email.ses import SesBackend

        return SesBackend(client("sesv2", settings))
    if settings.email_backend == "file":
        return FileBackend(Path(settings.mail_dir))
    return SmtpBackend(SmtpConfig.from_url(settings.smtp_url.get_secret_value()))
