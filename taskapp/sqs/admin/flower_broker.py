"""Flower's Broker page and ``/api/queues/length`` for SQS, hooked in by ``taskapp.flower_setup``.

Flower 2.2 knows only RabbitMQ and Redis (``flower.utils.broker.Broker`` dispatches on the URL
scheme and answers "'sqs' broker is not supported" otherwise). :func:`install` registers
:class:`SQSBroker` for ``sqs://`` in that dispatch and serves the Broker page from a template
with SQS's own counts. It runs inside Flower's process when Flower builds its app (with or
without ``--conf``), so Flower itself is not forked or patched on disk.

Each row is one SQS queue: every work queue (the ones workers consume and the ones the
application names in ``install(known_queues=...)``), each followed by its dead-letter queue,
with the ``visible``, ``in_flight`` and ``delayed`` counts of ``GetQueueAttributes``. Flower's
own keys (``messages``, ``messages_ready``, ``messages_unacknowledged``) are filled in too, so
existing API clients keep working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from taskapp.sqs.boto import client
from taskapp.sqs.naming import dlq_name, is_dlq
from taskapp.sqs.plumbing import queue_depth, queue_is_missing

__all__ = ["SQSBroker", "install", "is_sqs", "queue_depths"]

TEMPLATE = Path(__file__).with_name("templates") / "flower_broker.html"

#: The application's work queues, shown even before a worker consumes them (``install``).
_known_queues: Callable[[], Iterable[str]] = tuple


def queue_depths(sqs: Any, prefix: str, names: list[str]) -> list[dict[str, Any]]:
    """One row per queue in ``names`` and per DLQ of each, in that order (missing ones skipped)."""
    rows = []
    for name in names:
        for queue, dlq_of in ((name, None), (dlq_name(name), name)):
            try:
                url = sqs.get_queue_url(QueueName=prefix + queue)["QueueUrl"]
                depth = queue_depth(sqs, url)
            except ClientError as exc:
                if queue_is_missing(exc):
                    continue
                raise
            counts = {
                "visible": depth.visible,
                "in_flight": depth.in_flight,
                "delayed": depth.delayed,
            }
            rows.append(
                {
                    "name": queue,
                    "dlq_of": dlq_of,
                    **counts,
                    "messages": sum(counts.values()),
                    "messages_ready": counts["visible"],
                    "messages_unacknowledged": counts["in_flight"],
                }
            )
    return rows


class SQSBroker:
    """Flower broker client for ``sqs://``: queue depths from ``GetQueueAttributes``."""

    def __init__(self, broker_url: str, *_: Any, **kwargs: Any) -> None:
        options = kwargs.get("broker_options") or {}
        self.prefix = options.get("queue_name_prefix", "")
        self.region = options.get("region") or "us-east-1"

    async def queues(self, names: list[str]) -> list[dict[str, Any]]:
        known = list(dict.fromkeys([*_known_queues(), *sorted(names)]))
        wanted = [n for n in known if not is_dlq(n)]
        loop = asyncio.get_running_loop()
        try:
            # boto3 blocks; Flower's IO loop must not.
            return await loop.run_in_executor(
                None, queue_depths, client("sqs", self.region), self.prefix, wanted
            )
        except (ClientError, BotoCoreError) as exc:
            raise RuntimeError(f"could not read SQS queue depths: {exc}") from exc


def is_sqs(broker_url: str) -> bool:
    """Whether ``broker_url`` names an SQS transport (``sqs://`` or a subclass's path)."""
    from kombu.transport import resolve_transport

    scheme = broker_url.split("://", 1)[0]
    if scheme == "sqs":
        return True
    try:
        transport = resolve_transport(scheme)
    except (KeyError, ImportError, AttributeError, ValueError):
        return False
    return getattr(transport, "driver_type", None) == "sqs"


def _dispatching(base: type) -> type:
    class Broker(base):  # type: ignore[misc]  # a base class chosen at run time
        """Flower's broker factory, plus SQS."""

        def __new__(cls, broker_url: str, *args: Any, **kwargs: Any) -> Any:
            # With broker_transport set, Flower's URL starts with the transport's import path.
            if is_sqs(broker_url):
                return SQSBroker(broker_url, *args, **kwargs)
            return base.__new__(cls, broker_url, *args, **kwargs)

    return Broker


def _template_loader(root: str) -> Any:
    from tornado import template

    class Loader(template.Loader):
        """Flower's templates, with the Broker page replaced by the SQS one."""

        def _create_template(self, name: str) -> template.Template:
            if name == "broker.html":
                return template.Template(TEMPLATE.read_bytes(), name=name, loader=self)
            return super()._create_template(name)

    return Loader(root)


def install(known_queues: Callable[[], Iterable[str]] = tuple) -> None:
    """Register :class:`SQSBroker` and the SQS Broker page in this Flower process; the page
    also lists ``known_queues()`` (names without the prefix), consumed or not."""
    global _known_queues
    _known_queues = known_queues
    import flower.urls
    import flower.utils.broker
    import flower.views

    if not getattr(flower.utils.broker.Broker, "taskapp_sqs", False):
        broker = _dispatching(flower.utils.broker.Broker)
        broker.taskapp_sqs = True  # type: ignore[attr-defined]
        flower.utils.broker.Broker = broker
        # Flower's handlers call the name they imported, so register it there as well.
        flower.views.Broker = broker
    settings = flower.urls.settings
    settings["template_loader"] = _template_loader(settings["template_path"])
