"""kombu 5.7's SQS channel as taskapp's channel layers see it, for the type checker only.

Our layers (:mod:`~taskapp.sqs.delivery`, :mod:`~taskapp.sqs.monitoring`,
:mod:`~taskapp.sqs.kombu_fixes`, :mod:`~taskapp.sqs.acks`) override and call private methods of
``kombu.transport.SQS.Channel``. kombu leaves them unannotated and the celery-types stubs declare
only the public API, so here they are declared once, with the types kombu 5.7 passes and returns
(read from ``kombu/transport/SQS/__init__.py``). At run time :data:`SQSChannel` *is* kombu's
channel and :data:`ChannelMixin` is ``object``: nothing here changes behaviour. Check these
signatures when kombu is upgraded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from kombu.transport import SQS

__all__ = ["ChannelMixin", "Payload", "SQSChannel", "SQSMessage"]

#: A kombu message payload: ``{"body", "headers", "properties": {"delivery_info", ...}, ...}``.
Payload = dict[str, Any]
#: One entry of a ReceiveMessage response: ``{"Body", "ReceiptHandle", "Attributes", ...}``.
SQSMessage = dict[str, Any]

if TYPE_CHECKING:

    class SQSChannel(SQS.Channel):
        """The private kombu SQS channel API that taskapp's layers override or call."""

        @property
        def fanout(self) -> Any: ...  # kombu.transport.SQS.SNS.SnsFanout, not in the stubs
        def _new_boto_client(
            self,
            service: str,
            region: str | None,
            access_key_id: str | None,
            secret_access_key: str | None,
            session_token: str | None = None,
            config: Any = None,
        ) -> Any: ...
        def _resolve_queue_url(self, queue: str) -> str: ...
        def _update_queue_cache(self, queue_name_prefix: str) -> None: ...
        # The stubs say the virtual base returns None; kombu's SQS channel returns the URL.
        def _new_queue(self, queue: str, **kwargs: Any) -> str: ...  # type: ignore[override]
        def _create_queue(self, queue_name: str, attributes: dict[str, str]) -> dict[str, Any]: ...
        def _delete(
            self, queue: str, exchange: str | None = None, *args: Any, **kwargs: Any
        ) -> None: ...
        def _put(self, queue: str, message: Payload, **kwargs: Any) -> None: ...
        # kombu's SQS channel drops the virtual base's ``timeout``.
        def _get(self, queue: str) -> Payload: ...  # type: ignore[override]
        # None: taskapp's delivery layer leaves a message out (handed back or dropped).
        def _message_to_python(
            self, message: SQSMessage, queue_name: str, q_url: str
        ) -> Payload | None: ...
        def _messages_to_python(
            self, messages: list[SQSMessage], queue: str
        ) -> Sequence[Payload | None]: ...
        def _receive_message(self, queue: str, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
        def _loop1(self, queue: str, messages_fetched: int | None = None) -> None: ...
        def _schedule_queue(self, queue: str) -> None: ...
        def _get_async(
            self, queue: str, count: int = 1, callback: Callable[..., Any] | None = None
        ) -> Any: ...
        def _get_bulk_async(self, queue: str, callback: Any = None) -> Any: ...
        def _on_messages_ready(self, queue: str, qname: str, messages: dict[str, Any]) -> int: ...
        def _get_from_sqs(
            self,
            queue_name: str,
            queue_url: str,
            connection: Any,
            count: int = 1,
            callback: Any = None,
        ) -> Any: ...

        hub: Any  # kombu.asynchronous.Hub

        def _release_messages(self, queue: str, qname: str, messages: list[SQSMessage]) -> None: ...
        def _delete_message(self, queue_name: str, message: SQSMessage) -> None: ...
        def _delete_rejected_message(self, delivery_tag: str) -> None: ...
        def _has_redrive_policy(self, queue: str | None, queue_url: str) -> bool: ...
        def _get_exchange_for_queue(self, queue_name: str) -> str: ...
        def _decode_python_message_body(self, raw_body: str | bytes) -> bytes: ...
        def _prepare_json_payload(self, text: str) -> dict[str, Any]: ...
        def _envelope_payload(
            self, payload: Payload, raw_text: str, message: SQSMessage, q_url: str
        ) -> Payload: ...
        def _put_fanout(
            self, exchange: str, message: Payload, routing_key: str, **kwargs: Any
        ) -> None: ...

    #: Base of a channel mixin: typed as the channel it is mixed into.
    ChannelMixin = SQSChannel
else:
    SQSChannel = SQS.Channel
    ChannelMixin = object
