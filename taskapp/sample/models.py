"""Tables of the demo business, declared on the shared ``taskapp.db.metadata``.

Timestamps are UTC. PostgreSQL stores them as ``timestamptz``; SQLite stores the UTC wall time
as text without an offset, so always write UTC values (``seed`` does).
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Integer, String, Table

from taskapp.db import metadata

__all__ = ["customers", "orders", "events", "REGIONS"]

#: Regions the seed spreads customers and orders over.
REGIONS = ("eu", "us", "apac", "latam")

customers = Table(
    "customers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
    Column("region", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    # Last order or login; the anonymize rule keys on it ("inactive for a year").
    Column("last_active_at", DateTime(timezone=True), nullable=False, index=True),
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id"), nullable=False, index=True),
    Column("region", String(32), nullable=False),
    Column("amount_cents", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("payload", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
)
