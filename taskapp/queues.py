"""Queue names, priority lanes and routing: one queue per task family, plus a ``-high`` lane.

SQS has no message priorities, so ``priority="high"`` on a call routes the task to a separate
lane queue (``email-high``) that has its own worker. Routing is by the family prefix of the task
name, so a producer that knows only the name (``app.send_task("email.send")``) lands on the same
queue as ``send_email.delay()``. DLQ names and ``QueueSpec`` are the SQS extension's
(``taskapp.sqs.naming``); they are named here as well because the application speaks of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from functools import lru_cache
from typing import Any

from config.settings import SettingError, Settings, load_settings
from taskapp.sqs.naming import DLQ_SUFFIX, FIFO_SUFFIX, QueueSpec, dlq_name, is_dlq, source_of

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
    "app_specs",
    "effective_specs",
]

HIGH = "high"
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


def app_specs(app: Any) -> list[QueueSpec]:
    """Queue plan of ``app``: every registered task's hard time limit, grouped by queue."""
    app.loader.import_default_modules()
    limits = {
        name: task.time_limit for name, task in app.tasks.items() if not name.startswith("celery.")
    }
    return plan_queues(limits, app.conf.task_time_limit)


def effective_specs(specs: Iterable[QueueSpec], settings: Settings) -> list[QueueSpec]:
    """Apply ``TASKAPP_VISIBILITY_TIMEOUT``, refusing one shorter than a queue's hard limit."""
    override = settings.visibility_timeout
    result = []
    for spec in specs:
        if override is None:
            result.append(spec)
            continue
        if override < spec.hard_time_limit:
            raise SettingError(
                "TASKAPP_VISIBILITY_TIMEOUT",
                override,
                f"at least {spec.hard_time_limit} (the hard time limit of queue "
                f"'{spec.name}'), or unset to derive it per queue",
            )
        result.append(QueueSpec(spec.name, override, spec.hard_time_limit, spec.tasks))
    return result
