"""Send one email: validate, render, compose, deliver once per idempotency key.

No Celery here: ``taskapp.email.tasks`` passes the task id as the default idempotency key.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError

from config.settings import Settings, load_settings
from taskapp import idempotency
from taskapp.db import engine
from taskapp.email import attachments as attachment_store
from taskapp.email.backends import Backend, backend_for
from taskapp.email.compose import compose, sender_address
from taskapp.email.errors import DeliveryDeferred, SendInProgress, TooManyRecipients
from taskapp.email.request import EmailRequest, check_idempotency_key
from taskapp.email.templates import render

__all__ = ["send", "deliver", "TASK_NAME"]

#: Sends are claimed in ``taskapp.idempotency`` under this task name, as the platform would for
#: the task; the email.send task opts out of the platform claim.
TASK_NAME = "email.send"

logger = logging.getLogger(__name__)


def send(
    request: EmailRequest,
    *,
    idempotency_key: str,
    lease: float,
    settings: Settings | None = None,
    backend: Backend | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Deliver ``request`` unless ``idempotency_key`` was already sent; return the send's result.

    ``lease`` is how long a claim blocks other deliveries of the same key: longer than the
    task's hard time limit, so a live send is never doubled and a dead one is eventually redone.
    """
    settings = settings or load_settings()
    key = check_idempotency_key(idempotency_key)
    try:
        with idempotency.held(
            engine(settings.database_url.get_secret_value()),
            idempotency.key_for(TASK_NAME, key),
            TASK_NAME,
            lease,
            owner,
        ) as claim:
            if claim.done:
                logger.info("email already sent, not sending again key=%s", key)
                return dict(claim.result or {})
            claim.result = deliver(request, idempotency_key=key, settings=settings, backend=backend)
    except idempotency.KeyBusy as exc:
        raise SendInProgress(f"another delivery of {key!r} is sending it now") from exc
    except OperationalError as exc:
        raise DeliveryDeferred(f"idempotency keys: database unavailable: {exc.orig}") from None
    return dict(claim.result)


def deliver(
    request: EmailRequest,
    *,
    idempotency_key: str,
    settings: Settings,
    backend: Backend | None = None,
) -> dict[str, Any]:
    """Render, compose and hand ``request`` to the backend (no idempotency claim): one delivery."""
    backend = backend or backend_for(settings)
    limit = backend.max_recipients
    if limit is not None and len(request.recipients) > limit:
        raise TooManyRecipients.at(
            "to",
            f"{len(request.recipients)} recipients is over the {backend.name} limit of {limit}",
        )
    rendered = render(request.template, request.context) if request.template else None
    files = _attachments(request, settings)
    composed = compose(
        request,
        rendered,
        files,
        sender=sender_address(settings.mail_from),
        idempotency_key=idempotency_key,
    )
    delivery = backend.send(composed)
    logger.info(
        "email sent backend=%s message_id=%s provider_id=%s recipients=%d",
        backend.name,
        composed.message_id,
        delivery.provider_message_id,
        len(composed.recipients),
    )
    return {
        "backend": backend.name,
        "message_id": composed.message_id,
        "provider_message_id": delivery.provider_message_id,
        "recipients": len(composed.recipients),
        "refused": delivery.refused,
        "size": len(composed.data),
    }


def _attachments(request: EmailRequest, settings: Settings) -> list[attachment_store.Attachment]:
    if not request.attachments:
        return []
    s3 = None
    if any(spec.s3_key for spec in request.attachments):
        from taskapp.aws import client

        s3 = client("s3", settings)
    return attachment_store.load(
        request.attachments,
        bucket=settings.bucket,
        max_bytes=settings.email_max_attachment_bytes,
        s3=s3,
    )
