"""``taskapp queues``: create the SQS queues and look at their depths."""

from __future__ import annotations

import click
from rich.table import Table

from config.settings import load_settings
from taskapp.cli.console import console

__all__ = ["queues"]


@click.group()
def queues() -> None:
    """Create and inspect the SQS queues."""


@queues.command("provision")
def queues_provision() -> None:
    """Create or update every queue, DLQ and redrive policy (idempotent)."""
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.queues import app_specs, effective_specs
    from taskapp.sqs.admin.provision import provision

    settings = load_settings()
    table = Table("queue", "action", "attributes")
    for change in provision(
        client("sqs", settings), settings, effective_specs(app_specs(app), settings)
    ):
        table.add_row(change.queue, change.action, ", ".join(change.attributes))
    console.print(table)


@queues.command("status")
def queues_status() -> None:
    """Visible, in-flight and delayed messages, and the oldest message's age, per queue."""
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.queues import app_specs
    from taskapp.sqs.admin.provision import queue_status

    settings = load_settings()
    table = Table("queue", "visible", "in flight", "delayed", "oldest")
    for row in queue_status(client("sqs", settings), settings, app_specs(app)):
        age = f"{row.oldest_age.total_seconds():.0f}s" if row.oldest_age else "-"
        table.add_row(row.queue, str(row.visible), str(row.in_flight), str(row.delayed), age)
    console.print(table)
