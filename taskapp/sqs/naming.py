"""Queue names the extension derives: a queue's dead-letter queue, FIFO names, a queue's plan.

Every work queue ``<q>`` has a DLQ ``<q>-dlq`` (``<q>-dlq.fifo`` for a FIFO queue ``<q>.fifo``,
as SQS requires a FIFO queue's DLQ to be FIFO too). Worker, provisioning, redrive and Flower's
Broker page all derive it here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DLQ_SUFFIX", "FIFO_SUFFIX", "QueueSpec", "dlq_name", "is_dlq", "source_of"]

DLQ_SUFFIX = "-dlq"
FIFO_SUFFIX = ".fifo"


def is_dlq(queue: str) -> bool:
    """Whether ``queue`` names a dead-letter queue (``email-dlq``, ``email-dlq.fifo``)."""
    return queue.removesuffix(FIFO_SUFFIX).endswith(DLQ_SUFFIX)


def dlq_name(queue: str) -> str:
    """The dead-letter queue of ``queue``: ``email-dlq``, or ``email-dlq.fifo`` for FIFO.

    A DLQ name is returned as it is.
    """
    if is_dlq(queue):
        return queue
    if queue.endswith(FIFO_SUFFIX):
        return queue.removesuffix(FIFO_SUFFIX) + DLQ_SUFFIX + FIFO_SUFFIX
    return queue + DLQ_SUFFIX


def source_of(dlq: str) -> str:
    """The work queue a dead-letter queue belongs to: ``email-dlq.fifo`` -> ``email.fifo``."""
    fifo = dlq.endswith(FIFO_SUFFIX)
    base = dlq.removesuffix(FIFO_SUFFIX).removesuffix(DLQ_SUFFIX)
    return base + FIFO_SUFFIX if fifo else base


@dataclass(frozen=True)
class QueueSpec:
    """What provisioning creates for one work queue."""

    name: str
    visibility_timeout: int
    hard_time_limit: int
    tasks: tuple[str, ...]

    @property
    def dlq(self) -> str:
        return dlq_name(self.name)

    @property
    def fifo(self) -> bool:
        return self.name.endswith(FIFO_SUFFIX)
