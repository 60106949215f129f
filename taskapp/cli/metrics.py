"""``taskapp metrics``: serve queue, dead-letter, claim-check, idempotency and worker metrics."""

from __future__ import annotations

import threading

import click

from config.settings import load_settings

__all__ = ["metrics"]


@click.command("metrics")
@click.option("--host", help="Address to listen on.  [default: TASKAPP_METRICS_HOST, 127.0.0.1]")
@click.option("--port", default=9808, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between two reads of SQS, S3 and the database: the scrape interval.",
)
def metrics(host: str | None, port: int, interval: float) -> None:
    """Serve Prometheus metrics on http://HOST:PORT/metrics until stopped."""
    from prometheus_client import CollectorRegistry, start_http_server

    from taskapp.metrics import Exporter

    settings = load_settings()
    host = host or settings.metrics_host
    exporter = Exporter(settings, interval)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(exporter)
    server, _ = start_http_server(port, addr=host, registry=registry)
    fewest, most, per_worker = exporter.cost()
    click.echo(
        f"taskapp metrics: http://{host}:{server.server_port}/metrics; one read per "
        f"{interval:g}s of {len(exporter.queues)} queues and DLQs costs {fewest:,} (DLQs empty) to "
        f"{most:,} (DLQs holding messages) SQS requests/hour, +{per_worker:,} per worker, and "
        f"{per_worker:,} S3 LIST requests/hour per 1,000 claim-check objects"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
