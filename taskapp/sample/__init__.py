"""A tiny demo business (customers, orders, events) that the cleanup and reports demos work on.

Only the demo creates its tables (``install``; ``seed`` calls it) and only the demo applies its
retention rules (``RETENTION_RULES``): ``taskapp db upgrade`` and the default rules leave it out.
"""

from pathlib import Path

from taskapp.sample.models import customers, events, orders
from taskapp.sample.schema import install
from taskapp.sample.seed import seed

__all__ = ["customers", "orders", "events", "seed", "install", "RETENTION_RULES"]

#: The demo's retention rules, a ``TASKAPP_RETENTION_RULES`` file holding the ``tables`` list.
RETENTION_RULES = Path(__file__).with_name("retention.toml")
