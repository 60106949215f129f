"""Alembic environment: runs migrations on the engine of the configured URL."""

from __future__ import annotations

from alembic import context

from taskapp.db import engine, metadata

url = context.config.get_main_option("sqlalchemy.url")
with engine(url).connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
