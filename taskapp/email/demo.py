"""``taskapp demo`` step for email: a templated welcome email with an S3 attachment.

It goes through the real path: ``send_email.delay`` -> SQS -> worker -> SMTP (the local sink
writes one ``.eml`` per message into ``TASKAPP_MAIL_DIR``), and prints the file it produced.
"""

from __future__ import annotations

import uuid
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from config.settings import load_settings

__all__ = ["run"]


def run() -> list[tuple[str, str]]:
    """Send one email and report its ids and the ``.eml`` file it became."""
    from taskapp.aws import client
    from taskapp.email.tasks import send_email

    settings = load_settings()
    key = f"demo/email/{uuid.uuid4().hex}/orders.csv"
    client("s3", settings).put_object(
        Bucket=settings.bucket,
        Key=key,
        Body=b"order,total\nA-1001,42.00\nA-1002,17.50\n",
        ContentType="text/csv",
    )
    result = send_email.delay(
        "Ada Lovelace <ada@example.com>",
        template="welcome",
        context={
            "name": "Ada",
            "steps": ["Confirm your address", "Invite your team", "Queue your first task"],
            "account_url": "https://taskapp.example/account",
        },
        attachments=[{"filename": "orders.csv", "s3_key": key}],
    )
    sent = result.get(timeout=60, interval=0.05)
    lines = [
        ("email.send", f"{sent['backend']}, {sent['size']} bytes, task {result.id}"),
        ("message id", str(sent["message_id"])),
    ]
    if sent["provider_message_id"]:
        lines.append(("provider id", str(sent["provider_message_id"])))
    eml = find_eml(Path(settings.mail_dir), str(sent["message_id"]))
    if eml is not None:
        lines.append((".eml", str(eml)))
    return lines


def find_eml(directory: Path, message_id: str) -> Path | None:
    """The newest ``.eml`` in ``directory`` whose Message-ID is ``message_id``."""
    files = sorted(directory.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in files:
        with path.open("rb") as handle:
            headers = BytesHeaderParser(policy=policy.default).parse(handle)
        if str(headers.get("Message-ID", "")).strip() == message_id:
            return path
    return None
