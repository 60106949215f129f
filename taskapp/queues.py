"""Queue names, priority lanes and routing: one queue per task family, plus a ``-high`` lane.

SQS has no message priorities, so ``priority="high"`` on a call routes the task to a separate
lane queue (``email-high``) that has its own worker. Routing is by the family prefix of the task
name, so a producer that knows only the name (``app.send_task("email.send")``) lands on the same
queue as ``send_email.delay()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from config.settings import load_settings

__all__ = [
    "Family",
    "HIGH",
    "DLQ_SUFFIX",
    "FIFO_SUFFIX",
    "dlq_name",
    "is_dlq",
    "source_of",
    "fifo_families",
    "QueueSpec",
    "family_of",
    "lane",
    "queue_names",
    "route_task",
    "plan_queues",
]

HIGH = "high"
DLQ_SUFFIX = "-dlq"
FIFO_SUFFIX = ".fifo"
#: Seconds added to a queue's longest hard time limit, so the worker kills a stuck task
#: (and dead-letters or retries it) before SQS would hand the message to someone else.
VISIBILITY_GRACE = 30


class Family(StrEnum):
    """A task family; its name is the task-name prefix and the queue name."""

    DEFAULT = "default"
    EMAIL = "email"
    IMAGES = "images"
    CLEANUP = "cleanup"
    REPORTS = "reports"

    @property
    def has_lane(self) -> bool:
        return self is not Family.DEFAULT


def family_of(task_name: str) -> Family:
    """The family a task name belongs to: ``email.send`` -> email; unknown -> default."""
    prefix = task_name.split(".", 1)[0]
    try:
        return Family(prefix)
    except ValueError:
        return Family.DEFAULT


@lru_cache(maxsize=8)
def _fifo_families(names: tuple[str, ...]) -> frozenset[Family]:
    return frozenset(map(Family, names))


def fifo_families() -> frozenset[Family]:
    """Families configured FIFO by ``TASKAPP_FIFO_QUEUES`` (``settings.fifo_queues``)."""
    return _fifo_families(load_settings().fifo_queues)


def lane(family: Family, priority: object = None) -> str:
    """The queue a call lands on: ``email`` or, with ``priority="high"``, ``email-high``.

    A family configured FIFO has ``.fifo`` queues, as SQS requires: ``email.fifo``.
    """
    name = f"{family.value}-{HIGH}" if priority == HIGH and family.has_lane else family.value
    return name + FIFO_SUFFIX if family in fifo_families() else name


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


def queue_names() -> list[str]:
    """Every work queue (without the environment prefix), lanes included; DLQs excluded."""
    names: list[str] = []
    for family in Family:
        names.append(lane(family))
        if family.has_lane:
            names.append(lane(family, HIGH))
    return names


def route_task(
    name: str, args: Any, kwargs: Any, options: Mapping[str, Any], task: Any = None, **kw: Any
) -> dict[str, str]:
    """Celery router: the task's family queue, or its high lane for ``priority="high"``."""
    return {"queue": lane(family_of(name), options.get("priority"))}


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


def plan_queues(time_limits: Mapping[str, int | None], default_time_limit: int) -> list[QueueSpec]:
    """Derive each queue's VisibilityTimeout from the hard time limits of the tasks routed to it.

    ``time_limits`` maps task name -> hard time limit (``None``: the app's default). A lane shares
    its family's tasks, so it gets the same timeout.
    """
    by_family: dict[Family, list[tuple[str, int]]] = {family: [] for family in Family}
    for name, limit in time_limits.items():
        by_family[family_of(name)].append((name, limit or default_time_limit))
    specs = []
    for family, entries in by_family.items():
        hard = max((limit for _, limit in entries), default=default_time_limit)
        names = tuple(sorted(name for name, _ in entries))
        for queue in _lanes(family):
            specs.append(QueueSpec(queue, hard + VISIBILITY_GRACE, hard, names))
    return specs


def _lanes(family: Family) -> Iterable[str]:
    yield lane(family)
    if family.has_lane:
        yield lane(family, HIGH)
