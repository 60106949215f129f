"""``taskapp db``: the application database's migrations."""

from __future__ import annotations

import click

__all__ = ["db"]


@click.group()
def db() -> None:
    """The application database."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply every Alembic migration to TASKAPP_DATABASE_URL."""
    from taskapp.db import upgrade

    upgrade()
    click.echo("database is up to date")
