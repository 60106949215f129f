"""The worker tells the ack batcher how long each queue keeps a received message invisible."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kombu.transport import SQS

from config.settings import load_settings
from taskapp.app import _validate_queue_plan
from taskapp.queues import app_specs, effective_specs
from taskapp.sqs.acks import AckBatchMixin


def test_worker_init_records_every_queues_visibility_timeout(app: Any) -> None:
    # when a worker starts (worker_init)
    _validate_queue_plan()
    # then the transport options hold each planned queue's VisibilityTimeout, by queue name
    recorded = app.conf.broker_transport_options["visibility_timeouts"]
    planned = {
        s.name: s.visibility_timeout for s in effective_specs(app_specs(app), load_settings())
    }
    assert recorded == planned
    assert recorded["reports"] > recorded["default"]


class _Channel(AckBatchMixin, SQS.Channel):
    """Just what basic_ack reads: the delivery, the options and the batcher."""

    def __init__(self, options: dict[str, Any], routing_key: str) -> None:  # no connection
        self.connection = SimpleNamespace(client=SimpleNamespace(transport_options=options))
        self.added: list[tuple[Any, ...]] = []
        info = {
            "sqs_message": {"ReceiptHandle": "h", "Body": "{}"},
            "sqs_queue": "http://127.0.0.1:1/123/q",
            "routing_key": routing_key,
        }
        self._qos = type(
            "QoS", (), {"get": lambda _, tag: type("M", (), {"delivery_info": info})}
        )()

    def canonical_queue_name(self, name: str) -> str:
        return "p-" + name

    def _batcher(self) -> Any:
        return type("B", (), {"add": lambda _, *args: self.added.append(args)})()


@pytest.mark.parametrize(("routing_key", "lifetime"), [("reports", 930.0), ("unknown", 0.0)])
def test_an_ack_carries_its_queues_visibility_timeout(routing_key: str, lifetime: float) -> None:
    channel = _Channel({"visibility_timeouts": {"reports": 930}}, routing_key)
    # when a message is acknowledged (the virtual channel's release is not what this checks)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("kombu.transport.virtual.Channel.basic_ack", lambda *a, **k: None)
        channel.basic_ack("tag")
    # then the batcher is told how long the handle stays good
    assert channel.added == [("p-" + routing_key, "http://127.0.0.1:1/123/q", "h", lifetime)]
