"""The sample tables come from the ``sample`` Alembic branch, which only the demo applies."""

from __future__ import annotations

from alembic import command

from taskapp import db

__all__ = ["install"]


def install(url: str | None = None) -> None:
    """Create the sample tables in the database at ``url`` (default: the configured one).

    Idempotent: on a database that has them (the demo ran before, or ``taskapp db upgrade``
    created them before they became the demo's own) it changes nothing.
    """
    command.upgrade(db.alembic_config(url), f"{db.SAMPLE_BRANCH}@head")
