"""A sweeper for the hygiene tests: records its calls and reports three leftovers."""

from __future__ import annotations

calls: list[bool] = []


def sweep(dry_run: bool) -> int:
    """Pretend to remove three leftover queues (or, dry, count them)."""
    calls.append(dry_run)
    return 3
