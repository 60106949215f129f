"""The ``taskapp`` command: provisioning, the local stack, the demo, and operations."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from config.settings import SettingError, load_settings, settings_table
from taskapp.logs import configure_cli_logging

__all__ = ["main"]

console = Console()


class _Group(click.Group):
    """Turns a bad setting into one clear line and exit status 2, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SettingError as exc:
            click.echo(f"taskapp: configuration error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
def main() -> None:
    """taskapp: Celery task families on Amazon SQS."""
    configure_cli_logging()  # JSON log lines with TASKAPP_LOG_FORMAT=json


@main.group()
def queues() -> None:
    """Create and inspect the SQS queues."""


@queues.command("provision")
def queues_provision() -> None:
    """Create or update every queue, DLQ and redrive policy (idempotent)."""
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.sqs.provision import app_specs, provision

    settings = load_settings()
    table = Table("queue", "action", "attributes")
    for change in provision(client("sqs", settings), settings, app_specs(app)):
        table.add_row(change.queue, change.action, ", ".join(change.attributes))
    console.print(table)


@queues.command("status")
def queues_status() -> None:
    """Visible, in-flight and delayed messages, and the oldest message's age, per queue."""
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.sqs.provision import app_specs, queue_status

    settings = load_settings()
    table = Table("queue", "visible", "in flight", "delayed", "oldest")
    for row in queue_status(client("sqs", settings), settings, app_specs(app)):
        age = f"{row.oldest_age.total_seconds():.0f}s" if row.oldest_age else "-"
        table.add_row(row.queue, str(row.visible), str(row.in_flight), str(row.delayed), age)
    console.print(table)


README_MARKERS = ("<!-- settings:start -->\n", "<!-- settings:end -->")


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's settings table.")
@click.option(
    "--readme",
    type=click.Path(exists=True, path_type=Path),
    help="Rewrite the settings table between the markers of this README.",
)
def show_settings(markdown: bool, readme: Path | None) -> None:
    """Validate the environment's settings and print them (secrets masked)."""
    if markdown:
        click.echo(settings_table())
        return
    if readme:
        start, end = README_MARKERS
        text = readme.read_text()
        head, rest = text.split(start, 1)
        readme.write_text(head + start + settings_table() + "\n" + end + rest.split(end, 1)[1])
        return
    for name, value in load_settings():  # secrets, the database password too, print masked
        click.echo(f"{name} = {value!r}")


@main.group()
def db() -> None:
    """The application database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration to TASKAPP_DATABASE_URL."""
    from taskapp.db import upgrade

    upgrade()
    click.echo("database is up to date")


@main.command()
@click.option("--var-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
def demo(var_dir: Path) -> None:
    """Start the local stack, run one task of every family, print what they produced."""
    from taskapp.local.demo import run_demo

    sys.exit(run_demo(var_dir, console))


@main.command()
@click.option("--var-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
def dev(var_dir: Path) -> None:
    """Run moto, an SMTP sink, a worker, beat and Flower on 127.0.0.1 until Ctrl-C."""
    from taskapp.local.stack import Stack

    stack = Stack(var_dir, flower=True)
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):  # kill, or the terminal closed
        signal.signal(stop_signal, lambda *_: sys.exit(0))
    try:
        stack.start()
        for name, url in stack.urls.items():
            console.print(f"{name:>12}: {url}")
        console.print("Ctrl-C stops everything.")
        while not stack.dead_roles():
            time.sleep(0.5)
        dead = ", ".join(r.name for r in stack.dead_roles())
        console.print(f"[red]{dead} exited; see {stack.var_dir / 'log'}[/red]")
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the stop short.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        console.print("stopping ...")
        stack.stop()


# --- command groups (one line each) ---
main.add_command(__import__("taskapp.cleanup.cli", fromlist=["cleanup"]).cleanup)
main.add_command(__import__("taskapp.email.cli", fromlist=["email"]).email)
main.add_command(__import__("taskapp.reports.cli", fromlist=["reports"]).reports)
main.add_command(__import__("taskapp.dlq_cli", fromlist=["dlq"]).dlq)
main.add_command(__import__("taskapp.aws_cli", fromlist=["aws"]).aws)
# --- end of command groups ---
