"""``taskapp dlq``: look into, redrive and purge the dead-letter queues.

Like the AWS CLI: one verb per command, ``QUEUE`` names the work queue (``email``) or its DLQ
(``email-dlq``) without the environment prefix, ``--output table|json`` chooses rich tables or
JSON for scripts, and destructive commands ask for ``--yes``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import Any

import click
from botocore.exceptions import ClientError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from config.settings import load_settings
from taskapp.cli.console import console

__all__ = ["dlq"]

OUTPUT = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Rich table for people, JSON for scripts.",
)


def _sqs() -> tuple[Any, Any]:
    from taskapp.aws import client

    settings = load_settings()
    return client("sqs", settings), settings


def _fail(message: str) -> None:
    click.echo(f"taskapp dlq: {message}", err=True)
    sys.exit(1)


def _queue_errors(exc: ClientError, queue: str) -> None:
    from taskapp.aws.sqs import queue_is_missing

    code = exc.response.get("Error", {}).get("Code", "")
    if queue_is_missing(exc):
        _fail(f"no dead-letter queue for '{queue}' (run `taskapp queues provision`?)")
    if "PurgeQueueInProgress" in code:
        _fail("SQS allows one purge per queue every 60 seconds; try again in a minute")
    raise exc


@click.group()
def dlq() -> None:
    """Dead-letter queues: list, show, redrive, purge."""


@dlq.command("list")
@OUTPUT
def list_(output: str) -> None:
    """Messages waiting in each dead-letter queue."""
    from taskapp.sqs.admin.dlq import list_dlqs

    sqs, settings = _sqs()
    rows = list_dlqs(sqs, settings)
    if output == "json":
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    table = Table("dead-letter queue", "source", "visible", "in flight", "delayed")
    for row in rows:
        style = "bold red" if row.visible else None
        table.add_row(
            row.queue,
            row.source,
            str(row.visible),
            str(row.in_flight),
            str(row.delayed),
            style=style,
        )
    console.print(table)


@dlq.command("show")
@click.argument("queue")
@click.option("--max-items", default=50, show_default=True, help="Messages to show at most.")
@OUTPUT
def show(queue: str, max_items: int, output: str) -> None:
    """Dead letters of QUEUE with task, arguments and why they failed (nothing is consumed)."""
    from taskapp.sqs.admin.dlq import peek

    sqs, settings = _sqs()
    try:
        letters = peek(sqs, settings, queue, max_items)
    except ClientError as exc:
        _queue_errors(exc, queue)
        return
    if output == "json":
        rows = [{k: v for k, v in asdict(m).items() if k != "raw"} for m in letters]
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(
        "task",
        "id",
        "args",
        "reason",
        "error",
        "attempts",
        "first failure",
        title=f"{len(letters)} dead letter(s) in {queue}",
        title_justify="left",
    )
    for m in letters:
        first = m.first_failure.strftime("%Y-%m-%d %H:%M:%S") if m.first_failure else "-"
        table.add_row(
            m.task_name or "?",
            m.task_id,
            _short(m.args, 40),
            m.reason,
            _short(m.error, 60),
            str(m.attempts),
            first,
        )
    console.print(table)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@dlq.command("redrive")
@click.argument("queue")
@click.option("--task", "task_name", help="Only messages of this task name.")
@click.option("--limit", type=click.IntRange(min=1), help="Move at most this many messages.")
def redrive(queue: str, task_name: str | None, limit: int | None) -> None:
    """Move dead letters of QUEUE back to QUEUE (safe to interrupt with Ctrl-C).

    Exits 1 if SQS refused any message; each one is named, and stays in the dead-letter queue.
    """
    from taskapp.sqs.admin.dlq import dlq_name, list_dlqs
    from taskapp.sqs.admin.redrive import redrive as move

    sqs, settings = _sqs()
    depth = next((r for r in list_dlqs(sqs, settings) if r.queue == dlq_name(queue)), None)
    if depth is None:
        _fail(f"no dead-letter queue for '{queue}' (run `taskapp queues provision`?)")
        return
    total = min(depth.visible, limit) if limit else depth.visible
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"redrive {depth.queue} -> {depth.source}", total=total or None)
        result = move(
            sqs,
            settings,
            queue,
            task=task_name,
            limit=limit,
            on_progress=lambda n: progress.advance(bar, n),
        )
    console.print(
        f"moved {result.moved} message(s) to {depth.source} ({result.method})"
        + (f", left {result.skipped} in {depth.queue}" if result.skipped else "")
    )
    for failure in result.failed:
        click.echo(
            f"not moved: {failure.message_id} ({failure.task_name or '?'}): "
            f"{failure.code}: {failure.error}",
            err=True,
        )
    if result.failed:
        _fail(f"{len(result.failed)} message(s) not moved; they are back in {depth.queue}")


@dlq.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Confirm: the messages are deleted for good.")
def purge(queue: str, yes: bool) -> None:
    """Delete every message in QUEUE's dead-letter queue."""
    from taskapp.sqs.admin.dlq import dlq_name
    from taskapp.sqs.admin.dlq import purge as purge_queue

    if not yes:
        _fail(f"purging {dlq_name(queue)} deletes its messages for good; add --yes to confirm")
    sqs, settings = _sqs()
    try:
        count = purge_queue(sqs, settings, queue)
    except ClientError as exc:
        _queue_errors(exc, queue)
        return
    console.print(f"purged {dlq_name(queue)} ({count} message(s))")
