"""``taskapp reports``: list the reports, or generate one on a worker and print where it is."""

from __future__ import annotations

import json
import sys

import click

from taskapp.errors import PermanentError

__all__ = ["reports"]


@click.group()
def reports() -> None:
    """Reports: list them, generate one."""


@reports.command("list")
def reports_list() -> None:
    """Print every report with its parameters."""
    from taskapp.reports.catalogue import get_report, report_names

    for name in report_names():
        report = get_report(name)
        params = ", ".join(f"{p.name}:{p.type}" for p in report.params)
        click.echo(f"{name:<16} {report.title} ({params})")


@reports.command("generate")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, help="NAME=VALUE (repeatable).")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv, xlsx, html or pdf.")
@click.option("--notify", multiple=True, help="Email the link to this address (repeatable).")
@click.option("--timeout", default=600, show_default=True, help="Seconds to wait for a worker.")
def reports_generate(
    name: str, params: tuple[str, ...], fmt: str, notify: tuple[str, ...], timeout: int
) -> None:
    """Send reports.generate to the workers, wait, and print the result as JSON."""
    from taskapp.reports.service import ReportRequest
    from taskapp.reports.tasks import generate_report

    values = {key: value for key, _, value in (p.partition("=") for p in params)}
    try:
        ReportRequest.build(name, values, fmt, list(notify) or None)  # fail fast, locally
        result = generate_report.delay(name, values, fmt, list(notify) or None).get(timeout=timeout)
    except PermanentError as exc:
        click.echo(f"taskapp reports: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(result, indent=2))
