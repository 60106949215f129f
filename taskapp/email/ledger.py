"""The sent-email ledger: one row per idempotency key, so a redelivered task never sends twice.

A send first *claims* its key (a row in state ``sending``), then delivers, then records the
result (state ``sent``). A redelivery finds ``sent`` and returns the stored result. A claim left
behind by a crashed worker expires after ``lease`` seconds, so the email is not lost; the one
window that can still repeat a send is a crash between the provider's "accepted" and our record
of it, and such copies share a Message-ID.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    String,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from taskapp.db import metadata
from taskapp.email.errors import DeliveryDeferred, SendInProgress

__all__ = ["email_sends", "Claim", "claim"]

logger = logging.getLogger(__name__)

SENDING, SENT = "sending", "sent"

email_sends = Table(
    "email_sends",
    metadata,
    Column("idempotency_key", String(255), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("owner", String(36), nullable=False),
    Column("claimed_at", DateTime(), nullable=False),
    Column("sent_at", DateTime(), nullable=True, index=True),
    Column("result", JSON(), nullable=True),
)


@dataclass
class Claim:
    """The right to send under one key, or the result of the send that already happened."""

    key: str
    owner: str
    result: dict[str, Any] | None = None

    @property
    def already_sent(self) -> bool:
        return self.result is not None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC: same on SQLite and PostgreSQL


@contextmanager
def claim(engine: Engine, key: str, *, lease: float) -> Iterator[Claim]:
    """Claim ``key`` for one send; record the result on success, release the claim on error.

    The caller sets ``claim.result`` after delivering; a claim that comes back already sent
    carries the stored result and must not be delivered again.
    """
    try:
        current = _acquire(engine, key, lease)
    except OperationalError as exc:
        raise DeliveryDeferred(f"ledger: database unavailable: {exc.orig}") from None
    if current.already_sent:
        yield current
        return
    try:
        yield current
    except BaseException:
        _release(engine, current)
        raise
    if current.result is None:
        _release(engine, current)
        return
    _record(engine, current)


def _acquire(engine: Engine, key: str, lease: float) -> Claim:
    owner = uuid.uuid4().hex
    now = _now()
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(email_sends).values(
                    idempotency_key=key, status=SENDING, owner=owner, claimed_at=now
                )
            )
        return Claim(key, owner)
    except IntegrityError:
        pass
    with engine.begin() as conn:
        row = conn.execute(select(email_sends).where(email_sends.c.idempotency_key == key)).first()
        if row is None:  # released between our insert and this read: try once more
            return _acquire(engine, key, lease)
        if row.status == SENT:
            return Claim(key, row.owner, dict(row.result or {}))
        if row.claimed_at > now - timedelta(seconds=lease):
            raise SendInProgress(f"ledger: another delivery of {key!r} is sending it now")
        # The previous owner's lease ran out (its worker died): take the claim over, but only
        # if nobody else did in the meantime.
        taken = conn.execute(
            update(email_sends)
            .where(and_(email_sends.c.idempotency_key == key, email_sends.c.owner == row.owner))
            .values(owner=owner, claimed_at=now)
        )
        if taken.rowcount != 1:
            raise SendInProgress(f"ledger: another delivery of {key!r} took over the send")
    return Claim(key, owner)


def _record(engine: Engine, current: Claim) -> None:
    try:
        _write_sent(engine, current)
    except OperationalError as exc:
        # The email is out; failing the task now would only invite a resend. The claim row
        # stays "sending" and blocks duplicates for its lease.
        logger.warning("email ledger could not record key=%s: %s", current.key, exc.orig)


def _write_sent(engine: Engine, current: Claim) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(email_sends)
            .where(
                and_(
                    email_sends.c.idempotency_key == current.key,
                    email_sends.c.owner == current.owner,
                )
            )
            .values(status=SENT, sent_at=_now(), result=current.result)
        )


def _release(engine: Engine, current: Claim) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(
                delete(email_sends).where(
                    and_(
                        email_sends.c.idempotency_key == current.key,
                        email_sends.c.owner == current.owner,
                        email_sends.c.status == SENDING,
                    )
                )
            )
    except OperationalError:
        pass  # the claim expires after its lease anyway
