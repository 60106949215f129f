"""What the operating commands need to know about one environment, as a protocol.

The application passes its settings object (taskapp's ``config.settings.Settings`` has every
field); any other object with these attributes does as well. The extension never reads the
environment itself.
"""

from __future__ import annotations

from typing import Protocol

from taskapp.sqs.boto import Endpoint

__all__ = ["Environment"]


class Environment(Endpoint, Protocol):
    """One environment's queues: their name prefix and the attributes provisioning sets."""

    @property
    def queue_prefix(self) -> str: ...

    @property
    def max_receives(self) -> int: ...

    @property
    def wait_time_seconds(self) -> int: ...

    @property
    def sqs_kms_key(self) -> str | None: ...
