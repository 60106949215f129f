"""Email tasks: the Celery-facing edge. Rendering and delivery live in ``taskapp.email.service``."""

from __future__ import annotations

from typing import Any

from celery import group

from config.settings import load_settings
from taskapp.app import app
from taskapp.email import bulk, service
from taskapp.email.request import EmailRequest
from taskapp.retry import retry_policy

__all__ = ["send_email", "send_bulk"]

SEND_TIME_LIMIT = 45
#: The cap of a send's claim: it outlives the hard time limit, so a running send is never
#: doubled (taskapp.idempotency); in a worker the claim is shorter and renewed by the heartbeat.
SEND_LEASE = SEND_TIME_LIMIT + 15


@app.task(
    bind=True,
    name="email.send",  # routed to the email queue by its "email." prefix (taskapp/queues.py)
    # 4xx and throttling usually clear in seconds to minutes; 10 retries with full jitter span
    # about half an hour at most, enough to ride out greylisting and a relay restart.
    **retry_policy(backoff=2, backoff_max=600, max_retries=10),
    soft_time_limit=30,
    time_limit=SEND_TIME_LIMIT,
    # service.send claims the key itself (taskapp.idempotency.held, as email.send:<key>):
    # the key also fixes the Message-ID, and the CLI calls the service without Celery.
    idempotent=False,
)
def send_email(
    self: Any,
    to: str | list[str],
    subject: str | None = None,
    *,
    body: str | None = None,
    html: str | None = None,
    template: str | None = None,
    context: dict[str, Any] | None = None,
    cc: str | list[str] | None = None,
    bcc: str | list[str] | None = None,
    reply_to: str | list[str] | None = None,
    attachments: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Render and deliver one email once; return its Message-ID and the provider's id."""
    request = EmailRequest.build(
        to,
        subject,
        body=body,
        html=html,
        template=template,
        context=context,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        attachments=attachments,
        headers=headers,
    )
    # A header (``apply_async(idempotency_key=...)``) wins over the argument, as for every task.
    key = self.resolve_idempotency_key(idempotency_key)
    # Under this run's token: the worker's heartbeat renews the claim while the send runs, so
    # after a crash the redelivery waits about three heartbeat intervals, not the whole lease.
    return service.send(
        request, idempotency_key=key, lease=self.claim_lease(SEND_LEASE), owner=self.run_token
    )


@app.task(
    bind=True,
    name="email.send_bulk",
    **retry_policy(backoff=2, backoff_max=300, max_retries=5),
    soft_time_limit=120,
    time_limit=150,
)
def send_bulk(
    self: Any,
    recipients: list[str | dict[str, Any]],
    subject: str | None = None,
    *,
    chunk_size: int | None = None,
    idempotency_key: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fan ``recipients`` out to one ``email.send`` each, in chunks paced at the send rate.

    ``options`` are ``email.send``'s (template, context, body, html, attachments, ...); a
    recipient's own ``context`` is merged over the shared one. A redelivered bulk task enqueues
    again, but every email's idempotency key is ``<bulk key>:<index>``, so none is sent twice.
    """
    people, shared, options = bulk.prepare(recipients, subject, options)
    base_key = self.resolve_idempotency_key(idempotency_key)
    chunks = bulk.plan(people, load_settings().email_send_rate, chunk_size)
    for chunk in chunks:
        group(
            send_email.s(
                person.to,
                subject,
                context={**shared, **person.context},
                idempotency_key=f"{base_key}:{person.index}",
                **options,
            )
            for person in chunk.recipients
        ).apply_async(countdown=chunk.countdown)
    return {
        "recipients": len(people),
        "chunks": len(chunks),
        "last_countdown": chunks[-1].countdown,
    }
