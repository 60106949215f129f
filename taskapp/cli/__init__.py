"""The ``taskapp`` command: provisioning, the local stack, the demo, and operations.

One module per command or group, each wired here with a plain import (``taskapp --help`` stays
fast: a module imports what its commands need inside them).
"""

from __future__ import annotations

import sys

import click

from config.settings import SettingError
from taskapp.cli import aws, cleanup, db, dlq, email, local, queues, reports, settings
from taskapp.cli.metrics import metrics
from taskapp.logs import configure_cli_logging

__all__ = ["main"]


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


for command in (
    queues.queues,
    settings.show_settings,
    db.db,
    local.demo,
    local.dev,
    cleanup.cleanup,
    email.email,
    reports.reports,
    dlq.dlq,
    aws.aws,
    metrics,
):
    main.add_command(command)
