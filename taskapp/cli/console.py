"""The one rich console every ``taskapp`` command prints its tables and progress to."""

from __future__ import annotations

from rich.console import Console

__all__ = ["console"]

console = Console()
