"""A tiny demo business (customers, orders, events) that cleanup and reports work on."""

from taskapp.sample.models import customers, events, orders
from taskapp.sample.seed import seed

__all__ = ["customers", "orders", "events", "seed"]
