"""Demo: the orders-by-day report as CSV (a chord of parts) and HTML, through the worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from config.settings import load_settings
from taskapp import db
from taskapp.sample import orders, seed

__all__ = ["run"]

#: 90 days is three parts of TASKAPP_REPORT_PART_DAYS (31), so the CSV goes through the chord.
DAYS = 90
TIMEOUT = 60


def run() -> list[tuple[str, str]]:
    """Generate ``orders_by_day`` as CSV, HTML and PDF, ``task_activity`` as CSV; list them."""
    from taskapp.reports.tasks import generate_report

    lines = _ensure_orders()
    today = datetime.now(UTC).date()
    span = {"start": (today - timedelta(days=DAYS - 1)).isoformat(), "end": today.isoformat()}
    for fmt in ("csv", "html", "pdf"):
        result = generate_report.delay("orders_by_day", span, fmt).get(timeout=TIMEOUT)
        lines += _lines(f"orders_by_day.{fmt}", result)
    today_only = {"start": today.isoformat(), "end": today.isoformat()}
    activity = generate_report.delay("task_activity", today_only, "csv").get(timeout=TIMEOUT)
    lines += _lines("task_activity.csv", activity)
    return lines


def _ensure_orders() -> list[tuple[str, str]]:
    url = load_settings().database_url.get_secret_value()
    with db.engine(url).connect() as conn:
        count = int(conn.execute(select(func.count()).select_from(orders)).scalar_one())
    if count:
        return [("orders in the database", str(count))]
    seeded = seed(url, n_orders=2000, now=datetime.now(UTC))
    return [("orders seeded", str(seeded["orders"]))]


def _lines(label: str, result: dict[str, Any]) -> list[tuple[str, str]]:
    parts = f" from {result['parts']} parts" if result["parts"] > 1 else ""
    return [
        (label, f"{result['rows']} rows{parts}, {result['bytes']} bytes"),
        (f"{label} key", f"s3://{load_settings().bucket}/{result['key']}"),
        (f"{label} url", result["url"]),
    ]
