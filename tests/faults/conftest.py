"""Fault cells: a `celery -A taskapp worker` subprocess whose AWS endpoint is a fault proxy.

Each test gets its own queue prefix, proxy and worker environment (``drain``, built by
:func:`tests.faults.drain.open_drain`, which bench/soak.py uses too) and a
:class:`~tests.faults.drain.Drain` that queues ``tests.record`` tasks and reads the ledger (the
``test_effects`` rows) and the queues.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config.settings import Settings
from tests.faults.drain import Drain, open_drain


@pytest.fixture
def drain(app: Any, sqs: Any, settings: Settings, provisioned: Any) -> Iterator[Drain]:
    """A fresh prefix, a pass-mode proxy in front of moto, and the worker environment."""
    with open_drain(app, sqs, settings) as cell:
        yield cell
