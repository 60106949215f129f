"""``taskapp cleanup``: run the retention rules now, or check them against the database."""

from __future__ import annotations

import json
import sys

import click

from taskapp import db
from taskapp.errors import PermanentError

__all__ = ["cleanup"]


@click.group()
def cleanup() -> None:
    """Retention rules: run them, or validate them."""


@cleanup.command("run")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
@click.option("--rule", "rules", multiple=True, help="Run only this rule (repeatable).")
@click.option("--enqueue", is_flag=True, help="Send cleanup.run to the workers and wait.")
def cleanup_run(dry_run: bool, rules: tuple[str, ...], enqueue: bool) -> None:
    """Apply the retention rules in this process (or, with --enqueue, on a worker)."""
    names = list(rules) or None
    try:
        if enqueue:
            from taskapp.cleanup.tasks import run_cleanup as task

            report = task.delay(names, dry_run).get(timeout=3600)
        else:
            from taskapp.cleanup.service import run_cleanup

            report = run_cleanup(names, dry_run)
    except PermanentError as exc:
        click.echo(f"taskapp cleanup: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(report, indent=2))


@cleanup.command("validate")
def cleanup_validate() -> None:
    """Check every rule against the database; exit 2 naming the first bad rule."""
    from taskapp.cleanup.rules import load_rules, validate_rules

    try:
        rules = validate_rules(db.engine(), load_rules())
    except PermanentError as exc:
        click.echo(f"taskapp cleanup: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{len(rules.names)} rules valid: {', '.join(rules.names)}")
