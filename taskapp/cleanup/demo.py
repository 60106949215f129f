"""Demo: seed the sample business, then run cleanup.run dry and for real through a worker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskapp.sample import seed

__all__ = ["run"]


def run() -> list[tuple[str, str]]:
    """Seed sample data, run ``cleanup.run`` dry and then for real; return the counts."""
    from taskapp.cleanup.tasks import run_cleanup

    seeded = seed(None, n_orders=2000, now=datetime.now(UTC))
    lines = [("sample data", ", ".join(f"{n} {table}" for table, n in seeded.items()))]
    dry = run_cleanup.delay(None, True).get(timeout=60)
    lines += _summary("dry run", dry)
    real = run_cleanup.delay(None, False).get(timeout=60)
    lines += _summary(f"cleanup run #{real['run_id']}", real)
    return lines


def _summary(label: str, report: dict[str, Any]) -> list[tuple[str, str]]:
    lines, idle = [], []
    for name, result in report["rules"].items():
        if result.get("skipped"):
            lines.append((f"{label}: {name}", f"skipped: {result['skipped']}"))
        elif result["count"]:
            value = f"{result['action']} {result['count']} {result['unit']}"
            lines.append((f"{label}: {name}", value))
        else:
            idle.append(name)
    if idle:
        lines.append((f"{label}: nothing due", ", ".join(idle)))
    lines.append((f"{label}: total", f"{report['total']} in {report['duration_s']:.2f}s"))
    return lines
