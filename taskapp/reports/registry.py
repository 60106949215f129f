"""Reports by name: the lookup behind ``reports.generate``'s ``name`` and its error.

A leaf: it knows what a report is (``definitions``) but not which reports exist. ``catalogue``
builds the one registry of built-in reports when it is imported, so a lookup is a dict read.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

from taskapp.reports.definitions import Report, ReportParamError, shorten

__all__ = ["Registry"]


class Registry:
    """A fixed set of reports, each under its own name."""

    def __init__(self, reports: Iterable[Report]) -> None:
        by_name: dict[str, Report] = {}
        for report in reports:
            if report.name in by_name:
                raise ValueError(f"two reports are named {report.name!r}")
            by_name[report.name] = report
        self._reports = MappingProxyType(by_name)

    def get(self, name: object) -> Report:
        """The report called ``name``; ``ReportParamError`` on ``name`` if there is none."""
        if not isinstance(name, str) or name not in self._reports:
            known = ", ".join(sorted(self._reports))
            raise ReportParamError("name", f"unknown report {shorten(name)}; known: {known}")
        return self._reports[name]

    def names(self) -> list[str]:
        """Every report's name, sorted."""
        return sorted(self._reports)
